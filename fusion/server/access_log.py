"""Structured logs and the per-request context of the HTTP service.

:class:`RequestContextMiddleware` (pure ASGI, no body buffering) gives every request an id
(``X-Request-ID``: the client's if it is short and plain, else a fresh one), writes exactly one
JSON access-log line per request (id, method, route template, status, duration, bytes), adds
safe default headers, and turns any exception that escaped the app into the generic 500
envelope — the stack trace goes to the server log, never to the client. Logs never hold audio,
transcripts or upload file names.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JsonFormatter", "configure_json_logging", "RequestContextMiddleware",
           "ACCESS_LOGGER", "error_envelope"]

ACCESS_LOGGER = "vocalfusion.server.access"
_RID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts, level, logger, msg`` plus the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_json_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """Send every log record (ours, uvicorn's) to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we write our own access line


def error_envelope(code: str, message: str, request_id: str | None) -> bytes:
    return json.dumps({"error": {"code": code, "message": message,
                                 "request_id": request_id}}).encode()


class RequestContextMiddleware:
    """Request id, one access-log line per request, default headers, last-resort 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.access = logging.getLogger(ACCESS_LOGGER)
        self.log = logging.getLogger("vocalfusion.server")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _RID_OK.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        info: dict[str, Any] = {"status": None, "bytes_in": 0, "bytes_out": 0}

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                info["bytes_in"] += len(message.get("body", b""))
            return message

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = rid
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("cache-control", "no-store")
                headers.setdefault("referrer-policy", "no-referrer")
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_counted, send_wrapped)
        except Exception:
            self.log.exception("unhandled error", extra={"fields": {"request_id": rid}})
            if info["status"] is None:
                body = error_envelope("internal_error", "internal server error; quote the "
                                      "request id when you report it", rid)
                await send_wrapped({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send_wrapped({"type": "http.response.body", "body": body})
            else:
                info["status"] = info["status"] or 500
        finally:
            route = scope.get("route")
            self.access.info("request", extra={"fields": {
                "request_id": rid,
                "method": scope.get("method"),
                "route": getattr(route, "path", None) or "<unmatched>",
                "status": info["status"] if info["status"] is not None else 499,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 1),
                "bytes_in": info["bytes_in"],
                "bytes_out": info["bytes_out"],
            }})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            try:
                return v.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
                return None
    return None
