"""The live WebSocket endpoint ``/v1/stream`` and the live page ``/live``.

Protocol (docs/live.md has the full table):

* connect ``/v1/stream?sample_rate=R`` (integer 8000–48000; optional ``speaker_id``,
  ``num_speakers``, ``speakers_mode`` = ``auto`` | ``off``; ``channels`` is refused — mono);
* auth: the HTTP routes' API key as ``Authorization: Bearer KEY`` or the subprotocol
  ``vocalfusion.bearer.KEY`` offered together with ``vocalfusion`` (answered ``vocalfusion``);
  Host and Origin are checked before the handshake is accepted, with the same
  :func:`~fusion.server.origin.check_host_and_origin` as the HTTP routes (a refused handshake
  gets HTTP 403);
* client → server: binary frames of little-endian int16 mono PCM, each ≤ 1 s; the text
  ``{"type": "end"}`` to finish;
* server → client: ``{"type": "segment", "segment": {…}, "speaker": …, "reference": …,
  "warmup": …}`` per closed segment, ``{"type": "status", "lag_s": …, "received_s": …}`` about
  every second, ``{"type": "error", "code": …, "message": …}``, finally ``{"type": "session",
  "result": {…}}``;
* close codes: 1000 after the session, 1008 unauthorized / forbidden origin, 1009 too large /
  too long, 1013 capacity, 1011 internal, 4400 bad request, 4408 idle timeout.

Memory per stream is bounded: frames wait in a queue of at most ``max_queue_s`` seconds of
audio; when it is full the server stops reading the socket (TCP back-pressure), so a client
faster than real time is slowed down and told its lag, never buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from features.errors import AudioTooLongError, ParameterError, VocalfusionError
from fusion.server.api_models import APIError
from fusion.server.origin import OriginPolicy, check_host_and_origin

__all__ = ["LiveSettings", "install_live", "CLOSE_CODES", "SUBPROTOCOL"]

log = logging.getLogger("vocalfusion.server.live")

#: the subprotocol the server answers with when the client offered a bearer subprotocol
SUBPROTOCOL = "vocalfusion"
_BEARER_PREFIX = "vocalfusion.bearer."
#: WebSocket close code of each error code
CLOSE_CODES = {"bad_request": 4400, "unauthorized": 1008, "forbidden_origin": 1008,
               "too_large": 1009, "too_long": 1009, "idle_timeout": 4408, "capacity": 1013,
               "internal": 1011}
_SPEAKER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_QUERY_KEYS = {"sample_rate", "speaker_id", "num_speakers", "speakers_mode"}


class LiveSettings(BaseModel):
    """Limits of the live endpoint.

    Attributes
    ----------
    max_streams : int
        Concurrent live streams; the next one is refused with ``capacity`` (1013).
    max_session_s : float
        Longest stream (seconds of audio); beyond: ``too_long`` (1009).
    idle_timeout_s : float
        Longest wait for the next client message; beyond: ``idle_timeout`` (4408).
    max_queue_s : float
        Audio received but not analysed yet, at most (seconds); beyond, the socket is not read
        until the engine catches up (back-pressure).
    status_interval_s : float
        How often a ``status`` message reports the lag.
    """

    model_config = ConfigDict(extra="forbid")

    max_streams: int = Field(4, ge=1, le=1024)
    max_session_s: float = Field(4 * 3600.0, gt=0)
    idle_timeout_s: float = Field(30.0, gt=0, le=3600)
    max_queue_s: float = Field(30.0, gt=0, le=600)
    status_interval_s: float = Field(1.0, gt=0, le=60)


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Live:
    """Shared state of the live endpoint: the stream count and the analysis threads."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self.active = 0
        self.lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.settings.max_streams,
                                            thread_name_prefix="vf-live")
        return self._pool

    def admit(self) -> bool:
        with self.lock:
            if self.active >= self.settings.max_streams:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.active -= 1


def _page_html() -> str:
    return resources.files("fusion.server").joinpath("static/live.html").read_text("utf-8")


def _page_csp(html: str) -> str:
    import base64
    import hashlib

    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)

    def h(s: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"

    return ("default-src 'none'; "
            f"script-src {' '.join(h(s) for s in scripts)} blob:; worker-src blob:; "
            f"style-src {' '.join(h(s) for s in styles)}; connect-src 'self'; "
            "media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def install_live(app: FastAPI, server_settings: Any, live: LiveSettings | None = None) -> None:
    """Add ``/v1/stream`` (WebSocket) and ``/live`` (the page) to ``app``.

    Parameters
    ----------
    app : FastAPI
        The app of :func:`fusion.server.app.create_app` (its lifespan sets
        ``app.state.vocalfusion`` with the loaded analyzer).
    server_settings : ServerSettings
        ``api_key``, ``allow_unauthenticated_remote``, ``allowed_hosts``, ``allowed_origins``.
    live : LiveSettings, optional
    """
    state = _Live(live or LiveSettings())  # app.state.vocalfusion_live.settings may be replaced
    app.state.vocalfusion_live = state
    policy = OriginPolicy.from_settings(server_settings)
    key = (server_settings.api_key.get_secret_value().encode("ascii")
           if server_settings.api_key else None)

    @app.get("/live", response_class=HTMLResponse, include_in_schema=False)
    async def live_page() -> HTMLResponse:
        html = _page_html()
        return HTMLResponse(html, headers={"Content-Security-Policy": _page_csp(html),
                                           "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer"})

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        try:
            check_host_and_origin(ws.scope.get("headers", []), policy)
        except APIError as exc:
            # refused before the handshake is accepted: the client sees HTTP 403
            log.info("live stream refused: %s", exc.code)
            await ws.close(code=1008, reason=str(exc.code)[:100])
            return
        offered = list(ws.scope.get("subprotocols") or [])
        token = _token(ws, offered)
        # a client must offer "vocalfusion" beside "vocalfusion.bearer.KEY": RFC 6455 clients
        # (browsers) fail a handshake answered with a subprotocol they did not offer
        answer = SUBPROTOCOL if SUBPROTOCOL in offered else None
        await ws.accept(subprotocol=answer)
        sender = _Sender(ws)
        try:
            _check_auth(ws, token, key, server_settings)
            params = _parse_query(dict(ws.query_params), ws.query_params.multi_items())
            vf = getattr(ws.app.state, "vocalfusion", None)
            if vf is None or not vf.ready:
                raise _Refusal("capacity", "models are still loading; retry in a few seconds")
        except _Refusal as exc:
            await sender.fail(exc.code, exc.message)
            return
        if not state.admit():
            await sender.fail("capacity", f"all {state.settings.max_streams} live streams are "
                                          "in use; retry later")
            return
        try:
            await _serve(ws, sender, vf.analyzer, params, state)
        finally:
            state.release()


def _token(ws: WebSocket, offered: list[str]) -> str | None:
    auth = ws.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for p in offered:
        if p.startswith(_BEARER_PREFIX):
            return p[len(_BEARER_PREFIX):]
    return None


def _check_auth(ws: WebSocket, token: str | None, key: bytes | None, settings: Any) -> None:
    if key is None:
        if settings.allow_unauthenticated_remote:
            return
        from fusion.server.app import is_loopback_host

        client = ws.client
        if not is_loopback_host(client.host if client else None):
            raise _Refusal("unauthorized",
                           "this server has no API key and serves loopback clients only")
        return
    if token is None or not hmac.compare_digest(token.encode("latin-1", "replace"), key):
        raise _Refusal("unauthorized", "missing or invalid API key; send 'Authorization: Bearer "
                                       "<key>' or the subprotocol 'vocalfusion.bearer.<key>'")


def _parse_query(q: dict[str, str], items: list[tuple[str, str]]) -> dict[str, Any]:
    if "channels" in q:
        raise _Refusal("bad_request", "channels is not accepted: a live stream is mono (mix "
                                      "the channels before sending)")
    unknown = sorted({k for k, _ in items} - _QUERY_KEYS)
    if unknown:
        raise _Refusal("bad_request", f"unknown query parameter(s) {', '.join(unknown)}; valid: "
                                      f"{', '.join(sorted(_QUERY_KEYS))}")
    if len(items) != len(q):
        raise _Refusal("bad_request", "a query parameter is given more than once")
    raw = q.get("sample_rate")
    if raw is None or not raw.isdigit() or not 8000 <= int(raw) <= 48000:
        raise _Refusal("bad_request", "sample_rate must be an integer 8000–48000 (Hz) in the "
                                      f"query; got {raw!r}"[:200])
    out: dict[str, Any] = {"sample_rate": int(raw), "speaker_id": None, "num_speakers": None,
                           "speakers_mode": q.get("speakers_mode", "off")}
    if out["speakers_mode"] not in ("auto", "off"):
        raise _Refusal("bad_request", "speakers_mode must be 'auto' or 'off' (a live stream is "
                                      f"mono); got {out['speakers_mode']!r}"[:200])
    if "speaker_id" in q:
        if not _SPEAKER_ID.match(q["speaker_id"]):
            raise _Refusal("bad_request", "speaker_id must be 1–64 characters of A-Z a-z 0-9 "
                                          "_ . -")
        out["speaker_id"] = q["speaker_id"]
    if "num_speakers" in q:
        n = q["num_speakers"]
        if not n.isdigit() or not 1 <= int(n) <= 20:
            raise _Refusal("bad_request", f"num_speakers must be an integer 1–20; got {n!r}"[:200])
        out["num_speakers"] = int(n)
    return out


class _Sender:
    """Serialised sends (the reader and the analysis loop both send)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.closed = False

    async def send(self, obj: dict[str, Any]) -> None:
        async with self.lock:
            if self.closed:
                return
            await self.ws.send_text(json.dumps(obj, separators=(",", ":")))

    async def fail(self, code: str, message: str) -> None:
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.send_text(json.dumps(
                    {"type": "error", "code": code, "message": message}))
                await self.ws.close(code=CLOSE_CODES[code], reason=code)

    async def finish(self, obj: dict[str, Any]) -> None:
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.send_text(json.dumps(obj, separators=(",", ":")))
                await self.ws.close(code=1000)


_END = object()


async def _serve(ws: WebSocket, sender: _Sender, analyzer: Any, params: dict[str, Any],
                 live: _Live) -> None:
    settings = live.settings
    loop = asyncio.get_running_loop()
    sr = params["sample_rate"]
    max_frame_bytes = 2 * sr
    try:
        session = await loop.run_in_executor(
            live.pool, lambda: analyzer.stream(**params))
    except (ParameterError, VocalfusionError) as exc:
        await sender.fail("bad_request", str(exc))
        return
    session.max_duration_s = min(session.max_duration_s, settings.max_session_s)
    # the queue holds frames of ≤ 1 s each: max_queue_s seconds of audio at most
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(2, int(settings.max_queue_s)))
    counters = {"received": 0, "fed": 0, "sent": 0}
    last_status = [time.monotonic()]

    async def status(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last_status[0] >= settings.status_interval_s:
            last_status[0] = now
            await sender.send({"type": "status",
                               "lag_s": round((counters["received"] - counters["fed"]) / sr, 3),
                               "received_s": round(counters["received"] / sr, 3)})

    async def analyse() -> None:
        while True:
            item = await queue.get()
            chunks: list[bytes] = []
            end = item is _END
            if not end:
                chunks.append(item)
            # take what is already waiting, up to ~2 s, in one call (1,000 tiny frames/s)
            while not end and not queue.empty() and sum(map(len, chunks)) < 4 * sr:
                nxt = queue.get_nowait()
                if nxt is _END:
                    end = True
                else:
                    chunks.append(nxt)
            if chunks:
                data = b"".join(chunks)
                segs = await loop.run_in_executor(live.pool, session.feed, data)
                counters["fed"] += len(data) // 2
                await send_segments(segs)
                await status()
            if end:
                result = await loop.run_in_executor(live.pool, session.close)
                await send_segments(result.segments[counters["sent"]:])  # closed by close()
                await sender.finish({"type": "session",
                                     "result": result.model_dump(mode="json")})
                return

    async def send_segments(segs: list[Any]) -> None:
        for seg in segs:
            info = session.segment_info(seg.index)
            await sender.send({"type": "segment", "segment": seg.model_dump(mode="json"),
                               **info.to_dict()})
            counters["sent"] += 1

    async def read() -> None:
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=settings.idle_timeout_s)
            except TimeoutError:
                raise _Refusal("idle_timeout", f"no message for {settings.idle_timeout_s:.0f} s "
                                               "(send audio, or {\"type\": \"end\"})") from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data = msg.get("bytes")
            if data is not None:
                if len(data) > max_frame_bytes:
                    raise _Refusal("too_large", f"a frame holds at most 1 s of audio "
                                                f"({max_frame_bytes} bytes at {sr} Hz); got "
                                                f"{len(data)} bytes")
                if len(data) % 2:
                    raise _Refusal("bad_request", f"a frame must hold whole int16 samples (an "
                                                  f"even number of bytes); got {len(data)}")
                if (counters["received"] + len(data) // 2) / sr > session.max_duration_s:
                    raise _Refusal("too_long", f"the stream passed {session.max_duration_s:.0f} "
                                               "s of audio (the session length limit)")
                counters["received"] += len(data) // 2
                await queue.put(data)  # waits while the queue is full: back-pressure
                continue
            text = msg.get("text")
            try:
                parsed = json.loads(text) if text is not None else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("type") == "end":
                await queue.put(_END)
                return
            raise _Refusal("bad_request", "expected a binary frame of int16 PCM or the text "
                                          "{\"type\": \"end\"}; got another text message")

    reader = asyncio.create_task(read())
    worker = asyncio.create_task(analyse())
    try:
        while True:
            done, _ = await asyncio.wait({reader, worker}, timeout=settings.status_interval_s,
                                         return_when=asyncio.FIRST_EXCEPTION)
            if worker in done:
                worker.result()
                return
            if reader in done:
                reader.result()  # raises a refusal or a disconnect; else the end was queued
                await worker
                return
            await status()
    except _Refusal as exc:
        await sender.fail(exc.code, exc.message)
    except WebSocketDisconnect:
        log.info("live client disconnected after %.1f s of audio", counters["received"] / sr)
    except AudioTooLongError as exc:
        await sender.fail("too_long", str(exc))
    except ParameterError as exc:
        await sender.fail("bad_request", str(exc))
    except Exception:
        log.exception("live stream failed")
        await sender.fail("internal", "the live analysis failed; see the server log")
    finally:
        for t in (reader, worker):
            if not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
        if ws.application_state != WebSocketState.DISCONNECTED and not sender.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=1000)

