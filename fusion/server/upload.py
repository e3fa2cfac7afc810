"""Streaming multipart upload for the HTTP service, under our own byte and part counters.

The request body is read chunk by chunk from the ASGI stream and fed to python-multipart's
streaming :class:`~python_multipart.multipart.MultipartParser`; nothing is buffered in memory
beyond one chunk. The audio part goes straight into a file with a server-chosen name inside a
private per-request directory. Limits fail fast, while streaming:

* a declared ``Content-Length`` over the limit is refused before one body byte is read (413);
* the bytes actually received are counted whatever the headers say (chunked bodies, lying
  ``Content-Length``): 413 as soon as the count passes the limit;
* the audio part alone is bounded too (413);
* more parts than ``max_parts``, a second file, an unknown field or a duplicate field stop the
  parse at that part (413 / 400), so 10,000 fields cost one part's parsing, not 10,000;
* the whole upload must arrive within ``timeout_s`` (408), against slow-drip clients.

The client's file name is never used as a path: it is only sanitised (:func:`display_filename`)
and echoed in the response.
"""

from __future__ import annotations

import asyncio
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from fusion.server.api_models import APIError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["UploadLimits", "Upload", "ClientGone", "receive_upload", "display_filename",
           "UPLOAD_NAME"]

#: the only name an uploaded file ever gets on disk (inside its private directory)
UPLOAD_NAME = "upload"

_MAX_BOUNDARY = 200  # RFC 2046 allows 70; generous but bounded
_MAX_NAME_ECHO = 40


class ClientGone(Exception):
    """The client disconnected before the request was complete."""


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on one multipart upload.

    Attributes
    ----------
    max_file_bytes : int
        Size limit of the audio part, bytes.
    max_overhead_bytes : int
        Bytes allowed on top of the audio part for boundaries, part headers and option fields.
    max_parts : int
        Parts per request (the file plus option fields).
    max_field_bytes : int
        Size limit of one option field's value, bytes.
    max_header_bytes : int
        Size limit of one part-header line, bytes.
    max_headers_per_part : int
        Header lines per part.
    timeout_s : float
        The whole body must arrive within this many seconds.
    """

    max_file_bytes: int
    max_overhead_bytes: int = 64 * 1024
    max_parts: int = 8
    max_field_bytes: int = 1024
    max_header_bytes: int = 4096
    max_headers_per_part: int = 8
    timeout_s: float = 120.0

    @property
    def max_body_bytes(self) -> int:
        return self.max_file_bytes + self.max_overhead_bytes


@dataclass
class Upload:
    """An upload written to disk. ``path`` is server-chosen; ``filename`` is display only."""

    path: Path
    filename: str
    size_bytes: int
    content_type: str | None
    fields: dict[str, str] = field(default_factory=dict)


def display_filename(raw: str | None, *, max_chars: int = 120) -> str:
    """The client's file name made safe to echo: last path component, no control or
    bidirectional-format characters, NFC, at most ``max_chars`` characters (suffix kept).

    Never used to build a path. ``"../../etc/passwd.wav"`` → ``"passwd.wav"``;
    ``"a\\u202egnp.wav"`` → ``"agnp.wav"``; empty → ``"upload"``.
    """
    if not raw:
        return "upload"
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[\\/]", name)[-1]
    # C* = control, format (incl. RTL/LTR overrides, zero-width), surrogates, private, unassigned;
    # Zl/Zp = line/paragraph separators
    name = "".join(ch for ch in name
                   if unicodedata.category(ch)[0] != "C" and unicodedata.category(ch) not in
                   ("Zl", "Zp"))
    name = " ".join(name.split()).strip(". ")
    if not name:
        return "upload"
    if len(name) > max_chars:
        stem, dot, suffix = name.rpartition(".")
        if dot and 0 < len(suffix) <= 10 and stem:
            name = stem[: max_chars - len(suffix) - 2] + "…." + suffix
        else:
            name = name[: max_chars - 1] + "…"
    return name


def _echo(name: str) -> str:
    """A client-supplied field name, safe and short for an error message."""
    return repr(display_filename(name, max_chars=_MAX_NAME_ECHO))


class _Sink:
    """python-multipart callbacks: one file part to disk, small option fields to memory."""

    def __init__(self, dest_dir: Path, limits: UploadLimits, allowed_fields: frozenset[str],
                 file_field: str) -> None:
        self.dest_dir = dest_dir
        self.limits = limits
        self.allowed_fields = allowed_fields
        self.file_field = file_field
        self.parts = 0
        self.finished = False
        self.upload: Upload | None = None
        self.fields: dict[str, str] = {}
        self._fh: Any = None
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._field_name: str | None = None
        self._field_buf = bytearray()
        self._is_file = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    # ---------------------------------------------------------------- headers
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise APIError(413, "too_many_parts",
                           f"the form has more than {self.limits.max_parts} parts; send one "
                           f"'{self.file_field}' part and at most the documented option fields")
        self._headers = {}
        self._header_name.clear()
        self._header_value.clear()
        self._field_name = None
        self._field_buf.clear()
        self._is_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = bytes(self._header_name).decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in params:
            raise APIError(400, "malformed_multipart",
                           "every part needs 'Content-Disposition: form-data; name=...'")
        name = _decode_header(params[b"name"])
        has_filename = b"filename" in params
        if name == self.file_field:
            if self.upload is not None:
                raise APIError(400, "too_many_files",
                               f"send exactly one '{self.file_field}' part per request")
            raw_filename = _decode_header(params[b"filename"]) if has_filename else None
            ctype = self._headers.get("content-type")
            path = self.dest_dir / UPLOAD_NAME
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
            self._fh = os.fdopen(fd, "wb")
            self.upload = Upload(path=path, filename=display_filename(raw_filename), size_bytes=0,
                                 content_type=ctype.decode("latin-1")[:100] if ctype else None)
            self._is_file = True
            return
        if has_filename:
            raise APIError(400, "unexpected_file",
                           f"unexpected file part {_echo(name)}; the audio goes in "
                           f"'{self.file_field}'")
        if name not in self.allowed_fields:
            accepted = ", ".join(sorted({self.file_field, *self.allowed_fields}))
            raise APIError(400, "unknown_field",
                           f"unknown form field {_echo(name)}; accepted: {accepted}")
        if name in self.fields:
            raise APIError(400, "duplicate_field", f"form field {_echo(name)} given twice")
        self._field_name = name

    # ---------------------------------------------------------------- data
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._is_file:
            assert self.upload is not None
            self.upload.size_bytes += n
            if self.upload.size_bytes > self.limits.max_file_bytes:
                raise APIError(413, "payload_too_large",
                               f"the file is larger than the limit of "
                               f"{_human_bytes(self.limits.max_file_bytes)}")
            self._fh.write(data[start:end])
        elif self._field_name is not None:
            if len(self._field_buf) + n > self.limits.max_field_bytes:
                raise APIError(413, "field_too_large",
                               f"form field {_echo(self._field_name)} is longer than "
                               f"{self.limits.max_field_bytes} bytes")
            self._field_buf += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self._fh.close()
            self._fh = None
            self._is_file = False
        elif self._field_name is not None:
            try:
                self.fields[self._field_name] = bytes(self._field_buf).decode("utf-8")
            except UnicodeDecodeError:
                raise APIError(400, "malformed_multipart",
                               f"form field {_echo(self._field_name)} is not UTF-8") from None
            self._field_name = None

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _decode_header(value: bytes) -> str:
    # python-multipart decodes header bytes as latin-1; browsers send UTF-8
    try:
        return value.decode("latin-1").encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _human_bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f} KiB"
    return f"{n} bytes"


async def receive_upload(request: Request, dest_dir: Path, limits: UploadLimits, *,
                         allowed_fields: frozenset[str] = frozenset(),
                         file_field: str = "file") -> Upload:
    """Stream a ``multipart/form-data`` body into ``dest_dir`` under the limits.

    Parameters
    ----------
    request : starlette.requests.Request
        Its body must not have been read yet.
    dest_dir : Path
        A private directory owned by this request; the file is written as
        ``dest_dir / UPLOAD_NAME``.
    limits : UploadLimits
    allowed_fields : frozenset of str
        Names of the non-file fields accepted; any other name is a 400.
    file_field : str
        Name of the file part.

    Raises
    ------
    APIError
        415 not multipart; 400 malformed; 408 too slow; 413 too large / too many parts.
    ClientGone
        The client disconnected mid-upload.
    """
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data":
        raise APIError(415, "unsupported_media_type",
                       f"send the audio as multipart/form-data with a '{file_field}' part "
                       f"(e.g. curl -F {file_field}=@speech.wav)")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > _MAX_BOUNDARY:
        raise APIError(400, "malformed_multipart", "the multipart boundary is missing or invalid")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limits.max_body_bytes:
            raise APIError(413, "payload_too_large",
                           f"the request body ({_human_bytes(int(declared))}) is larger than "
                           f"the limit of {_human_bytes(limits.max_body_bytes)}")
    sink = _Sink(dest_dir, limits, allowed_fields, file_field)
    parser = MultipartParser(boundary, sink.callbacks(),
                             max_header_count=limits.max_headers_per_part,
                             max_header_size=limits.max_header_bytes)
    received = 0
    try:
        async with asyncio.timeout(limits.timeout_s):
            async for chunk in request.stream():
                if not chunk:
                    continue
                received += len(chunk)
                if received > limits.max_body_bytes:
                    raise APIError(413, "payload_too_large",
                                   f"the request body is larger than the limit of "
                                   f"{_human_bytes(limits.max_body_bytes)}")
                parser.write(chunk)
            parser.finalize()
    except TimeoutError:
        raise APIError(408, "upload_timeout",
                       f"the upload did not complete within {limits.timeout_s:.0f} s") from None
    except MultipartParseError:
        raise APIError(400, "malformed_multipart", "the multipart body is malformed") from None
    except ClientDisconnect:
        raise ClientGone() from None
    finally:
        sink.close()
    if not sink.finished:
        raise APIError(400, "malformed_multipart", "the multipart body ended early")
    if sink.upload is None:
        raise APIError(422, "missing_file",
                       f"no '{file_field}' part: send the audio as multipart/form-data "
                       f"(e.g. curl -F {file_field}=@speech.wav)")
    sink.upload.fields = dict(sink.fields)
    return sink.upload
