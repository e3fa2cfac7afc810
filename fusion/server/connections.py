"""Connection-level guard of the HTTP service: caps per client and in all, header timeouts.

uvicorn's own ``limit_concurrency`` counts idle connections and answers 503 to *every*
request once they pass the limit, so 130 idle sockets starved even ``/healthz``; and uvicorn
has no timeout for a request's headers, so a client that trickles header lines holds a
connection for ever. :func:`guarded_h11_protocol` makes uvicorn's h11 protocol class enforce
instead:

* **per-client cap** (``max_per_client`` open connections from one IP address) and a **global
  cap** (``max_connections``). A connection over a cap first pushes out the oldest *idle*
  connection (no request in progress) of that client, or of anyone for the global cap, so idle
  sockets can never lock out a fresh request such as a health check; only when every
  connection is busy is the newcomer refused (429 ``too_many_connections`` / 503
  ``server_full``, then closed);
* **header timeout**: a connection must deliver a complete request head within
  ``header_timeout_s`` of opening, and again of its previous response (keep-alive), however
  slowly the bytes trickle; otherwise 408 (if it had begun a request) and closed.

Bodies have their own timeouts (:mod:`fusion.server.upload`). Everything here runs on the
event loop thread: no locks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

__all__ = ["ConnectionGuard", "guarded_h11_protocol"]


def _raw_response(status: int, reason: str, code: str, message: str,
                  extra: tuple[str, ...] = ()) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message,
                                 "request_id": uuid.uuid4().hex}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class ConnectionGuard:
    """Open connections of one server, by client address.

    Parameters
    ----------
    max_connections : int
        Open connections in all.
    max_per_client : int
        Open connections from one client IP address.
    header_timeout_s : float
        Time a connection has to send a complete request head.
    """

    def __init__(self, max_connections: int, max_per_client: int,
                 header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.header_timeout_s = header_timeout_s
        self._open: dict[Any, None] = {}
        self._by_client: dict[str, dict[Any, None]] = {}
        self.evicted = 0
        self.refused = 0

    @property
    def open(self) -> int:
        return len(self._open)

    @staticmethod
    def _oldest_idle(conns: dict[Any, None]) -> Any:
        idle = [c for c in conns if c.idle_since is not None]
        return min(idle, key=lambda c: c.idle_since) if idle else None

    def admit(self, conn: Any) -> tuple[int, str, str, str] | None:
        """Register ``conn`` (pushing out idle ones as needed); the refusal, if any."""
        peers = self._by_client.get(conn.client_host, {})
        if len(peers) >= self.max_per_client:
            victim = self._oldest_idle(peers)
            if victim is None:
                self.refused += 1
                return (429, "Too Many Requests", "too_many_connections",
                        f"more than {self.max_per_client} connections from one client are "
                        "busy; reuse a connection or retry later")
            self._evict(victim)
        if len(self._open) >= self.max_connections:
            victim = self._oldest_idle(self._open)
            if victim is None:
                self.refused += 1
                return (503, "Service Unavailable", "server_full",
                        "the server has no free connection; retry later")
            self._evict(victim)
        self._open[conn] = None
        self._by_client.setdefault(conn.client_host, {})[conn] = None
        return None

    def _evict(self, conn: Any) -> None:
        self.evicted += 1
        self.forget(conn)
        conn.close_idle()

    def forget(self, conn: Any) -> None:
        self._open.pop(conn, None)
        peers = self._by_client.get(conn.client_host)
        if peers is not None:
            peers.pop(conn, None)
            if not peers:
                del self._by_client[conn.client_host]


def guarded_h11_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class, bound to ``guard`` (pass it as ``uvicorn.Config(http=)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.client_host = "?"
            self.idle_since: float | None = None  # None while a request is in progress
            self._started = False                 # bytes of the next request have arrived
            self._seen_cycle: Any = None
            self._header_timer: asyncio.TimerHandle | None = None

        # ---------------------------------------------------------------- lifecycle
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.client_host = self.client[0] if self.client else "?"
            self.idle_since = time.monotonic()
            refusal = guard.admit(self)
            if refusal is not None:
                status, reason, code, message = refusal
                self.idle_since = None
                transport.write(_raw_response(status, reason, code, message,
                                              ("retry-after: 1",)))
                transport.close()
                return
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            guard.forget(self)
            self._cancel_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if data and self.idle_since is not None:
                self._started = True
            super().data_received(data)
            self._note_request()

        def handle_websocket_upgrade(self, event: Any) -> None:
            # the socket now belongs to the WebSocket protocol (its own ping/close timeouts):
            # stop the head timer and leave the guard's books, which count HTTP connections
            self._cancel_timer()
            self.idle_since = None
            guard.forget(self)
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self._note_request():  # no pipelined request began: wait for the next head
                self._await_head()

        # ---------------------------------------------------------------- guard
        def _note_request(self) -> bool:
            """True when a new request's head has been parsed (the connection is busy)."""
            if self.cycle is not None and self.cycle is not self._seen_cycle:
                self._seen_cycle = self.cycle
                self.idle_since = None
                self._started = False
                self._cancel_timer()
                return True
            return False

        def _await_head(self) -> None:
            self._cancel_timer()
            if self.transport.is_closing():
                return
            self.idle_since = time.monotonic()
            self._started = False
            self._header_timer = self.loop.call_later(guard.header_timeout_s,
                                                      self._head_timeout)

        def _cancel_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _head_timeout(self) -> None:
            self._header_timer = None
            if self.idle_since is None or self.transport.is_closing():
                return
            if self._started:
                self.transport.write(_raw_response(
                    408, "Request Timeout", "request_timeout",
                    f"the request head did not arrive within {guard.header_timeout_s:g} s"))
            self.transport.close()

        def close_idle(self) -> None:
            """Close this idle connection to make room for a new one."""
            self._cancel_timer()
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
