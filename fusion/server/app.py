"""The vocalfusion HTTP service (FastAPI): ``vocalfusion serve`` or :func:`create_app`.

Routes (pydantic v2 models; ``/openapi.json`` is the contract)::

    GET    /healthz                 liveness
    GET    /readyz                  models loaded (503 until then)
    GET    /v1/models               each stream's status and provenance
    POST   /v1/analyze              multipart upload → SessionResult JSON
    POST   /v1/report               multipart upload → self-contained HTML report
    POST   /v1/jobs                 multipart upload → 202 + job (for long audio)
    GET    /v1/jobs/{job_id}        job state
    GET    /v1/jobs/{job_id}/result the job's SessionResult
    DELETE /v1/jobs/{job_id}        forget a job (cancels it if still queued)

Models load once (lifespan). Uploads stream under our own byte counter into a private
per-request directory (mode 0700, server-chosen file name) that is removed when the request's
work is over — on success, on error and when the client goes away. Analyses run in a bounded
thread pool (``workers``) behind a bounded queue that a request enters only once its whole body
has arrived; beyond it the answer is 429 with ``Retry-After``. Connections are capped per client
and in all, with header and body read timeouts (:mod:`fusion.server.connections`); health checks
never wait for the work gate. A keyless server refuses foreign ``Host`` and ``Origin`` headers
(:mod:`fusion.server.origin`). Every error is ``{"error": {"code", "message", "request_id"}}``.

Examples
--------
>>> from fusion.server.app import create_app
>>> app = create_app()              # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import importlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import (
    AudioError,
    ConfigError,
    ModelUnavailable,
    ParameterError,
)
from fusion.config import Config, load_config
from fusion.schema import SessionResult
from fusion.server.access_log import RequestContextMiddleware
from fusion.server.api_models import (
    OPTION_FIELDS,
    AnalyzeOptions,
    APIError,
    ErrorBody,
    ErrorResponse,
    Health,
    JobInfo,
    JobState,
    ModelsResponse,
    Readiness,
)
from fusion.server.connections import ConnectionGuard, guarded_h11_protocol
from fusion.server.origin import OriginPolicy, check_host_and_origin, normalise_host, parse_origin
from fusion.server.runtime import Job, JobStore, TempDirs, WorkGate
from fusion.server.upload import ClientGone, Upload, UploadLimits, receive_upload

__all__ = ["ServerSettings", "create_app", "check_bind_safety", "is_loopback_host",
           "run_server", "scrub_message", "uvicorn_config"]

log = logging.getLogger("vocalfusion.server")

_MiB = 1 << 20

#: HTTP status of each AudioError code
_AUDIO_STATUS = {
    "not_audio": 415,
    "too_long": 413,
    "empty_file": 422,
    "corrupt_audio": 422,
    "zero_length": 422,
    "invalid_samples": 422,
    "decode_timeout": 422,
}

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout",
               409: "conflict", 411: "length_required", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "busy",
               500: "internal_error", 503: "unavailable"}


# ------------------------------------------------------------------------------------ settings
class ServerSettings(BaseModel):
    """Limits and security of the service (everything has a safe default).

    Attributes
    ----------
    host, port : str, int
        Where ``vocalfusion serve`` binds. Only used by :func:`run_server` and
        :func:`check_bind_safety`.
    api_key : SecretStr or None
        Bearer token required on ``/v1/*``. Without one the service answers loopback clients
        only, and refuses to start on a non-loopback host, unless
        ``allow_unauthenticated_remote`` is set.
    max_upload_bytes : int
        Size limit of one uploaded file (bytes); 413 while streaming when passed.
    max_duration_s : float
        Audio duration limit of ``/v1/analyze`` and ``/v1/report`` (seconds; probed before
        decoding); 413 beyond. The config's ``audio.max_duration_s`` also applies.
    job_max_duration_s : float
        Duration limit of ``/v1/jobs``.
    workers : int or None
        Analyses that run at the same time. None: available CPUs // ``runtime.num_threads``
        (at least 1), so the thread budget fits the machine (2 cores, 2 threads → 1 worker).
    max_queue : int
        Admitted requests that may wait for a worker; beyond: 429 + ``Retry-After``.
    request_timeout_s : float
        Longest wait (queue + analysis) of a synchronous request; 504 beyond.
    upload_timeout_s : float
        The whole upload must arrive within this time; 408 beyond.
    body_idle_timeout_s : float
        Longest silence between two pieces of an upload's body; 408 beyond.
    header_timeout_s : float
        A connection must send a complete request head within this time of opening (and of
        its previous response); else it is closed (408 if a request had begun).
    keep_alive_s : float
        An idle kept-alive connection is closed after this many seconds.
    max_connections, max_connections_per_client : int
        Open connections in all and from one client IP address. Over a cap, the oldest idle
        connection is closed to make room; if every one is busy the newcomer gets 503 / 429.
    allowed_hosts : list of str or None
        ``Host`` names accepted besides the loopback names (``localhost``, ``127.0.0.1``,
        ``[::1]``) and the bound host; ``"*"`` = any. Checked on a keyless server always, on a
        server with a key only when set (400 ``invalid_host``).
    allowed_origins : list of str or None
        Web origins (``scheme://host[:port]``, ``:*`` = any port; ``"*"`` = any) accepted
        besides the request's own origin and loopback origins. Checked like ``allowed_hosts``
        (403 ``forbidden_origin``). The WebSocket endpoint shares both.
    max_parts : int
        Multipart parts per request.
    max_jobs, job_ttl_s : int, float
        Job store size and how long a finished job's result is kept.
    temp_dir : Path or None
        Parent of the service's private temp root; None = the system temp dir.
    docs : bool
        Serve ``/docs`` (Swagger UI loads its scripts from a CDN, hence off by default).
        ``/openapi.json`` is always served.
    load_models : "startup" or "background"
        Load models before accepting requests, or in the background with ``/readyz`` 503
        until they are loaded.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    allow_unauthenticated_remote: bool = False
    max_upload_bytes: int = Field(100 * _MiB, ge=1024)
    max_duration_s: float = Field(600.0, gt=0)
    job_max_duration_s: float = Field(4 * 3600.0, gt=0)
    workers: int | None = Field(None, ge=1, le=64)
    max_queue: int = Field(4, ge=0, le=1024)
    request_timeout_s: float = Field(300.0, gt=0)
    upload_timeout_s: float = Field(120.0, gt=0)
    body_idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    keep_alive_s: float = Field(default=5.0, gt=0, le=600)
    max_connections: int = Field(default=256, ge=1, le=100_000)
    max_connections_per_client: int = Field(default=32, ge=1, le=100_000)
    allowed_hosts: list[str] | None = Field(default=None, max_length=256)
    allowed_origins: list[str] | None = Field(default=None, max_length=256)
    max_parts: int = Field(8, ge=1, le=64)
    max_jobs: int = Field(32, ge=1, le=10_000)
    job_ttl_s: float = Field(3600.0, gt=0)
    temp_dir: Path | None = None
    docs: bool = False
    load_models: Literal["startup", "background"] = "startup"

    @field_validator("api_key")
    @classmethod
    def _key_ok(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        if len(raw) < 16 or not raw.isascii() or not raw.isprintable() or " " in raw:
            raise ValueError("the API key must be at least 16 printable ASCII characters "
                             "without spaces (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`)")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_ok(cls, v: list[str] | None) -> list[str] | None:
        for h in v or ():
            if h.strip() != "*" and normalise_host(h) is None:
                raise ValueError(f"allowed_hosts: {h[:80]!r} is not a host name or IP address "
                                 "(e.g. vf.lab.example, 10.0.0.5, [fd00::5], or * for any)")
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins_ok(cls, v: list[str] | None) -> list[str] | None:
        for o in v or ():
            if o.strip() != "*" and parse_origin(o, allow_wildcard_port=True) is None:
                raise ValueError(f"allowed_origins: {o[:80]!r} is not a web origin "
                                 "scheme://host[:port] (http or https, no path; :* = any port; "
                                 "or * for any)")
        return v


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def check_bind_safety(settings: ServerSettings) -> None:
    """Refuse a non-loopback bind without an API key unless explicitly allowed.

    Raises
    ------
    ConfigError
    """
    if settings.api_key is None and not settings.allow_unauthenticated_remote \
            and not is_loopback_host(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host!r} without an API key: set one with "
            "--api-key-env VAR (the variable holds the key), bind to 127.0.0.1, or pass "
            "--allow-unauthenticated-remote if a proxy in front does authentication")


# ------------------------------------------------------------------------------------ state
@dataclasses.dataclass
class _Outcome:
    result: SessionResult
    html: str | None = None


class _ServerState:
    """Everything the routes share; built in the lifespan."""

    def __init__(self, config: Config | None, settings: ServerSettings,
                 analyzer: Any = None) -> None:
        self.settings = settings
        self.config = config if config is not None else load_config()
        n_threads = max(1, self.config.runtime.num_threads)
        self.workers = settings.workers or max(1, _available_cpus() // n_threads)
        self.executor = ThreadPoolExecutor(max_workers=self.workers,
                                           thread_name_prefix="vf-infer")
        self.gate = WorkGate(self.workers, settings.max_queue)
        self.tempdirs = TempDirs(settings.temp_dir)
        self.jobs = JobStore(settings.max_jobs, settings.job_ttl_s)
        self.limits = UploadLimits(max_file_bytes=settings.max_upload_bytes,
                                   max_parts=settings.max_parts,
                                   timeout_s=settings.upload_timeout_s,
                                   idle_timeout_s=settings.body_idle_timeout_s)
        self.analyzer = analyzer
        self.ready = False
        self.load_failed = False
        self.models: ModelsResponse | None = None
        self._job_futures: dict[str, Future[Any]] = {}

    # ---------------------------------------------------------------- models
    def load(self) -> None:
        from fusion._version import package_version
        from fusion.engine.analyzer import Analyzer

        t0 = time.perf_counter()
        try:
            if self.analyzer is None:
                self.analyzer = Analyzer(self.config)
            else:
                self.config = self.analyzer.config_
            self.analyzer.load()
            self.models = ModelsResponse(
                package_version=package_version(), config_hash=self.config.config_hash(),
                segment_policy=self.config.segments.policy,
                streams=self.analyzer.stream_infos(), fusion=self.analyzer.fusion_info())
        except Exception:
            self.load_failed = True
            log.exception("loading the models failed")
            raise
        self.ready = True
        log.info("models loaded", extra={"fields": {
            "seconds": round(time.perf_counter() - t0, 2), "workers": self.workers,
            "queue": self.settings.max_queue,
            "streams": {k: str(v.status) for k, v in self.models.streams.items()}}})

    def require_ready(self) -> None:
        if not self.ready:
            msg = ("model loading failed; see the server log" if self.load_failed
                   else "models are still loading")
            raise APIError(503, "not_ready", msg, headers={"Retry-After": "5"})

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.tempdirs.close()

    # ---------------------------------------------------------------- analysis (worker thread)
    def analyze_upload(self, upload: Upload, options: AnalyzeOptions, max_duration_s: float,
                       *, render: bool = False) -> _Outcome:
        from features.audio.load import load_audio

        t0 = time.perf_counter()
        overrides = options.overrides()
        try:
            cfg = self.config.with_overrides(overrides) if overrides else self.config
        except ConfigError as exc:
            raise APIError(422, "invalid_option", _scrub_text(str(exc), upload, self)) from None
        limit_s = min(max_duration_s, cfg.audio.max_duration_s)
        try:
            # untrusted media: decoded in a child process with a hard timeout, so a decoder
            # that hangs or crashes costs this request only
            audio = load_audio(upload.path, max_duration_s=limit_s,
                               timeout_s=cfg.audio.decode_timeout_s, isolate=True)
        except AudioError as exc:
            status = _AUDIO_STATUS.get(exc.code, 422)
            problem = _scrub_text(exc.problem, upload, self)
            if exc.code == "too_long":
                problem = (f"the audio is longer than this route's limit of {limit_s:.0f} s"
                           + (" (use POST /v1/jobs for long audio)"
                              if limit_s < self.settings.job_max_duration_s else ""))
            raise APIError(status, exc.code, f"{upload.filename}: {problem}") from None
        audio = dataclasses.replace(
            audio, source=dataclasses.replace(audio.source, path=upload.filename))
        try:
            from fusion.engine.speakers import parse_speaker_ids

            ids = parse_speaker_ids([v for v in (options.speaker_id or "").split(",")
                                     if v.strip()]) or None
            channels = None
            if cfg.speakers.mode == "channels" and audio.source.channels > 1:
                from features.audio.load import load_channels

                channels = load_channels(upload.path, max_duration_s=limit_s,
                                         timeout_s=cfg.audio.decode_timeout_s)
            result = self.analyzer.process_audio(audio, segments=cfg.segments,
                                                 speakers=cfg.speakers, channels=channels,
                                                 speaker_ids=ids)
        except (ParameterError, ConfigError) as exc:
            raise APIError(422, "invalid_option", _scrub_text(str(exc), upload, self)) from None
        except ModelUnavailable as exc:
            raise APIError(503, "model_unavailable",
                           _scrub_text(str(exc), upload, self)) from None
        result = _scrub_result(result, upload, self)
        html = _render_report(result) if render else None
        self.gate.record_duration(time.perf_counter() - t0)
        return _Outcome(result=result, html=html)

    # ---------------------------------------------------------------- request plumbing
    def _release_after(self, fut: Future[Any] | None, tmp: Path | None,
                       admitted: bool) -> None:
        """Free the slot (if taken) and the temp dir once the work is over (now, or when it
        finishes)."""

        def done(_: object = None) -> None:
            if tmp is not None:
                self.tempdirs.remove(tmp)
            if admitted:
                self.gate.release()

        if fut is None:
            done()
        else:
            fut.add_done_callback(done)  # runs at once if already done or cancelled

    def _busy(self) -> APIError:
        return APIError(429, "busy", "the server is at capacity; retry later",
                        headers={"Retry-After": str(self.gate.retry_after_s())})

    def _precheck(self) -> None:
        """Before the body is read: ready, and the gate not already full (fail fast, so a
        client does not upload 100 MB to be refused). Takes no slot."""
        self.require_ready()
        if self.gate.in_flight >= self.gate.capacity:
            raise self._busy()

    def _admit(self) -> None:
        """After the body is in: take a slot of the gate (a stalled upload never holds one)."""
        if not self.gate.try_acquire():
            raise self._busy()

    async def run_sync(self, request: Request, query: AnalyzeOptions, *,
                       render: bool = False) -> _Outcome:
        self._precheck()
        tmp: Path | None = None
        fut: Future[_Outcome] | None = None
        admitted = False
        try:
            tmp = self.tempdirs.create()
            upload = await receive_upload(request, tmp, self.limits,
                                          allowed_fields=OPTION_FIELDS)
            options = _merge_options(query, upload.fields)
            self._admit()
            admitted = True
            fut = self.executor.submit(self.analyze_upload, upload, options,
                                       self.settings.max_duration_s, render=render)
            return await self._wait(fut, request)
        finally:
            self._release_after(fut, tmp, admitted)

    async def _wait(self, fut: Future[_Outcome], request: Request) -> _Outcome:
        wrapped = asyncio.wrap_future(fut)
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            waiting: set[asyncio.Future[Any]] = {wrapped, watcher}
            done, _ = await asyncio.wait(waiting,
                                         timeout=self.settings.request_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if wrapped in done:
            return wrapped.result()
        wrapped.cancel()  # cancels the work if it has not started; else it finishes unseen
        if watcher in done:
            raise ClientGone()
        raise APIError(504, "timeout", f"the analysis did not finish within "
                                       f"{self.settings.request_timeout_s:.0f} s; use "
                                       "POST /v1/jobs for long audio")

    async def create_job(self, request: Request, query: AnalyzeOptions) -> Job:
        self._precheck()
        tmp: Path | None = None
        fut: Future[None] | None = None
        admitted = False
        try:
            tmp = self.tempdirs.create()
            upload = await receive_upload(request, tmp, self.limits,
                                          allowed_fields=OPTION_FIELDS)
            options = _merge_options(query, upload.fields)
            self._admit()
            admitted = True
            job = self.jobs.add(upload.filename)
            if job is None:
                wait_s = self.jobs.retry_after_s() or self.gate.retry_after_s()
                raise APIError(429, "too_many_jobs",
                               f"the job store holds {self.settings.max_jobs} jobs that are "
                               "unfinished or whose results have not expired; fetch and DELETE "
                               "finished jobs, or retry later",
                               headers={"Retry-After": str(wait_s)})
            rid = getattr(request.state, "request_id", None)
            fut = self.executor.submit(self._run_job, job, upload, options, rid)
            self._job_futures[job.id] = fut
            jid = job.id
            fut.add_done_callback(lambda _f: self._job_futures.pop(jid, None))
            return job
        finally:
            self._release_after(fut, tmp, admitted)

    def _run_job(self, job: Job, upload: Upload, options: AnalyzeOptions,
                 request_id: str | None) -> None:
        self.jobs.mark_running(job)
        try:
            outcome = self.analyze_upload(upload, options, self.settings.job_max_duration_s)
        except APIError as exc:
            self.jobs.finish(job, error=ErrorBody(code=exc.code,
                                                  message=scrub_message(exc.message),
                                                  request_id=request_id),
                             error_status=exc.status_code)
        except Exception:
            log.exception("job failed", extra={"fields": {"request_id": request_id,
                                                          "job_id": job.id}})
            self.jobs.finish(job, error=ErrorBody(
                code="internal_error", message="internal server error; quote the request id "
                "when you report it", request_id=request_id), error_status=500)
        else:
            self.jobs.finish(job, result=outcome.result)

    def cancel_job(self, job_id: str) -> bool:
        fut = self._job_futures.get(job_id)
        if fut is not None:
            fut.cancel()
        return self.jobs.delete(job_id) is not None


def _available_cpus() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells us)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _merge_options(query: AnalyzeOptions, fields: dict[str, str]) -> AnalyzeOptions:
    if not fields:
        return query
    data: dict[str, Any] = query.model_dump(exclude_none=True)
    both = sorted(set(data) & set(fields))
    if both:
        raise APIError(422, "invalid_option",
                       f"option(s) {', '.join(both)} given both as query and as form field")
    data.update(fields)
    try:
        return AnalyzeOptions.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "invalid_option", _validation_message(exc.errors())) from None


def _validation_message(errors: Any) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return ("invalid request: " + "; ".join(parts))[:500]


_CONTEXT_ADDRESS = re.compile(r"\s*@\s*0x[0-9a-fA-F]+")  # ffmpeg's "[mp3float @ 0x7f3a...]"
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,}\b")


def scrub_message(text: str) -> str:
    """A message without memory addresses (ffmpeg's log prefix ``[demuxer @ 0x55df...]``
    names a heap address, which helps an attacker defeat ASLR): ``[mp3 @ 0x7f..] x`` →
    ``[mp3] x``; any other hex number of 8+ digits → ``<addr>``. Short hex values stay."""
    return _ADDRESS.sub("<addr>", _CONTEXT_ADDRESS.sub("", text))


def _scrub_text(text: str, upload: Upload, state: _ServerState) -> str:
    """Replace server paths (the upload's path and temp dirs) and addresses in a message."""
    text = text.replace(str(upload.path), upload.filename)
    text = text.replace(str(upload.path.parent), "<upload>")
    return scrub_message(text.replace(str(state.tempdirs.root), "<tmp>"))


def _scrub_result(result: SessionResult, upload: Upload, state: _ServerState) -> SessionResult:
    """The result with no trace of the server's temp paths (only rebuilt when one occurs),
    and the server config's ``privacy`` settings applied (paths, transcript, voiceprints)."""
    root = str(state.tempdirs.root)
    if root not in result.model_dump_json():
        return result.with_privacy()

    def walk(obj: Any) -> Any:
        if isinstance(obj, str):
            return _scrub_text(obj, upload, state)
        if isinstance(obj, dict):
            return {walk(k): walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return SessionResult.model_validate(walk(result.model_dump(mode="json"))).with_privacy()


def _report_renderer() -> Callable[[SessionResult], str] | None:
    try:
        mod = importlib.import_module("fusion.report")
    except ImportError:
        return None
    for name in ("render_session", "render_html", "render"):
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn
    return None


def _render_report(result: SessionResult) -> str:
    render = _report_renderer()
    if render is None:
        raise APIError(503, "report_unavailable",
                       "the HTML report renderer is not available in this installation")
    return render(result)


def _report_csp() -> str:
    """The report page's own CSP (only its hashed inline script may run), and no framing."""
    from fusion.report.render import page_assets

    return page_assets()["csp"] + "; frame-ancestors 'none'"


# ------------------------------------------------------------------------------------ app
JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                 description="job id from POST /v1/jobs")]

def _err(*codes: int, explicit_json: bool = False) -> dict[int | str, dict[str, Any]]:
    text = {400: "malformed request, or a Host this server does not answer to",
            401: "missing or invalid API key",
            403: "keyless server: loopback clients only; or a foreign web Origin",
            404: "no such job",
            408: "upload too slow", 409: "job not finished",
            413: "upload or audio too large, or too many parts",
            415: "not multipart, or not audio", 422: "invalid option or undecodable audio",
            429: "at capacity (see Retry-After)", 500: "internal error",
            503: "models not loaded (see Retry-After)", 504: "analysis timed out"}
    if explicit_json:  # for routes whose own media type is not JSON (the HTML report)
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        return {c: {"description": text.get(c, "error"),
                    "content": {"application/json": {"schema": ref}}} for c in codes}
    return {c: {"model": ErrorResponse, "description": text.get(c, "error")} for c in codes}


def _upload_body(description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": description},
            "segment_policy": {"type": "string", "enum": ["vad", "fixed"]},
            "window_s": {"type": "number", "minimum": 0.5, "maximum": 60.0},
            "max_segment_s": {"type": "number", "minimum": 1.0, "maximum": 60.0},
        },
        "additionalProperties": False,
    }}}}}


_AUDIO_DOC = ("the audio file (WAV, FLAC, OGG, MP3, M4A, WebM ...; recognised by content); its "
              "name is only echoed, sanitised")


def _state(request: Request) -> _ServerState:
    state = getattr(request.app.state, "vocalfusion", None)
    if state is None:
        raise APIError(503, "not_ready", "the service is not started (lifespan not run)",
                       headers={"Retry-After": "5"})
    return state


_bearer = HTTPBearer(auto_error=False, description="API key, when the server has one "
                     "(`--api-key-env`); a keyless server answers loopback clients only")


def _auth_dependency(settings: ServerSettings) -> Callable[..., Any]:
    key = settings.api_key.get_secret_value().encode("ascii") if settings.api_key else None
    policy = OriginPolicy.from_settings(settings)

    async def require_auth(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        # the one Host/Origin check, shared with the WebSocket endpoint (its handshake scope)
        check_host_and_origin(request.scope["headers"], policy)
        if key is None:
            if settings.allow_unauthenticated_remote:
                return
            client = request.client
            if not is_loopback_host(client.host if client else None):
                raise APIError(403, "forbidden",
                               "this server has no API key and serves loopback clients only")
            return
        token = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(token.strip().encode("latin-1", "replace"), key):
            raise APIError(401, "unauthorized",
                           "missing or invalid API key; send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": 'Bearer realm="vocalfusion"'})

    return require_auth


def create_app(config: Config | None = None, *, settings: ServerSettings | None = None,
               analyzer: Any = None) -> FastAPI:
    """Build the FastAPI application.

    Parameters
    ----------
    config : Config, optional
        Engine configuration; default ``configs/default.toml``.
    settings : ServerSettings, optional
        Limits and security; defaults are safe for a loopback service.
    analyzer : fusion.engine.analyzer.Analyzer, optional
        An analyzer to serve instead of building one from ``config`` (it is loaded in the
        lifespan if it is not loaded yet; its config wins).

    Returns
    -------
    FastAPI
        Models load in the app's lifespan (run by uvicorn or ``with TestClient(app)``).
    """
    settings = settings or ServerSettings()
    from fusion._version import package_version

    version = package_version()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = _ServerState(config, settings, analyzer)
        app.state.vocalfusion = state
        loading: Future[None] | None = None
        try:
            if settings.load_models == "startup":
                await asyncio.wrap_future(state.executor.submit(state.load))
            else:
                loading = state.executor.submit(state.load)
            yield
        finally:
            if loading is not None:
                loading.cancel()
            state.close()
            app.state.vocalfusion = None

    app = FastAPI(
        title="vocalfusion",
        version=version,
        summary="Time-aligned vocal-biomarker measurements from recorded speech",
        description="Research measurements, not a diagnosis. Scores from the shipped prior "
                    "are uncalibrated. Every error is {\"error\": {code, message, request_id}}.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_middleware(RequestContextMiddleware)
    _install_error_handlers(app)

    # ---------------------------------------------------------------- health
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(version=version)

    @app.get("/readyz", response_model=Readiness, tags=["health"], responses=_err(503))
    async def readyz(request: Request) -> Readiness:
        """Readiness: models are loaded and requests will be served."""
        state = _state(request)
        state.require_ready()
        return Readiness(workers=state.workers, queue=state.settings.max_queue,
                         in_flight=state.gate.in_flight)

    # ---------------------------------------------------------------- v1
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_auth_dependency(settings))])
    auth_errors = (400, 401, 403)  # 400/403: a foreign Host/Origin on a keyless server

    @v1.get("/models", response_model=ModelsResponse, tags=["models"],
            responses=_err(*auth_errors, 503))
    async def models(request: Request) -> ModelsResponse:
        """Each stream's status (ok / skipped / failed, with the reason) and provenance."""
        state = _state(request)
        state.require_ready()
        assert state.models is not None
        return state.models

    upload_errors = (*auth_errors, 400, 408, 413, 415, 422, 429, 503)

    @v1.post("/analyze", response_model=SessionResult, tags=["analysis"],
             responses=_err(*upload_errors, 504), openapi_extra=_upload_body(_AUDIO_DOC))
    async def analyze(request: Request,
                      options: Annotated[AnalyzeOptions, Query()]) -> Response:
        """Analyse one uploaded file; the SessionResult JSON (as ``vocalfusion analyze``)."""
        outcome = await _state(request).run_sync(request, options)
        return Response(outcome.result.to_json(indent=None), media_type="application/json")

    @v1.post("/report", response_class=HTMLResponse, tags=["analysis"],
             responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                              "description": "HTML report"},
                        **_err(*upload_errors, 504, explicit_json=True)},
             openapi_extra=_upload_body(_AUDIO_DOC))
    async def report(request: Request,
                     options: Annotated[AnalyzeOptions, Query()]) -> HTMLResponse:
        """Analyse one uploaded file; a self-contained HTML report (no external requests)."""
        state = _state(request)
        if _report_renderer() is None:
            raise APIError(503, "report_unavailable",
                           "the HTML report renderer is not available in this installation")
        outcome = await state.run_sync(request, options, render=True)
        return HTMLResponse(outcome.html or "", headers={"Content-Security-Policy": _report_csp()})

    @v1.post("/jobs", response_model=JobInfo, status_code=202, tags=["jobs"],
             responses=_err(*upload_errors), openapi_extra=_upload_body(_AUDIO_DOC))
    async def create_job(request: Request,
                         options: Annotated[AnalyzeOptions, Query()]) -> JSONResponse:
        """Queue an analysis (for long audio); poll ``GET /v1/jobs/{id}``."""
        job = await _state(request).create_job(request, options)
        return JSONResponse(job.info().model_dump(mode="json"), status_code=202,
                            headers={"Location": f"/v1/jobs/{job.id}"})

    @v1.get("/jobs/{job_id}", response_model=JobInfo, tags=["jobs"],
            responses=_err(*auth_errors, 404, 422, 503))
    async def job_status(request: Request, job_id: JobId) -> JobInfo:
        """State of a job: queued, running, succeeded or failed (with the error)."""
        job = _get_job(request, job_id)
        return job.info()

    @v1.get("/jobs/{job_id}/result", response_model=SessionResult, tags=["jobs"],
            responses=_err(*auth_errors, 404, 409, 413, 415, 422, 500, 503))
    async def job_result(request: Request, job_id: JobId) -> Response:
        """The job's SessionResult; 409 while it runs; a failed job answers with its error."""
        job = _get_job(request, job_id)
        if job.status in (JobState.QUEUED, JobState.RUNNING):
            raise APIError(409, "job_not_finished", f"the job is {job.status}; retry later",
                           headers={"Retry-After": "5"})
        if job.status == JobState.FAILED:
            assert job.error is not None
            body = ErrorResponse(error=job.error.model_copy(
                update={"request_id": getattr(request.state, "request_id", None)}))
            return JSONResponse(body.model_dump(mode="json"), status_code=job.error_status or 500)
        assert job.result is not None
        return Response(job.result.to_json(indent=None), media_type="application/json")

    @v1.delete("/jobs/{job_id}", status_code=204, tags=["jobs"],
               responses=_err(*auth_errors, 404, 422, 503))
    async def delete_job(request: Request, job_id: JobId) -> Response:
        """Forget a job and its result; a queued job is cancelled."""
        state = _state(request)
        state.require_ready()
        if not state.cancel_job(job_id):
            raise APIError(404, "not_found", "no such job (finished jobs expire)")
        return Response(status_code=204)

    app.include_router(v1)
    from fusion.server.live_ws import install_live

    install_live(app, settings)  # /v1/stream (WebSocket) and /live (docs/live.md)
    return app


def _get_job(request: Request, job_id: str) -> Job:
    state = _state(request)
    state.require_ready()
    job = state.jobs.get(job_id)
    if job is None:
        raise APIError(404, "not_found", "no such job (finished jobs expire)")
    return job


# ------------------------------------------------------------------------------------ errors
def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _envelope(request: Request, status: int, code: str, message: str,
              headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=scrub_message(message),
                                         request_id=_rid(request)))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _envelope(request, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        # nobody is listening; the status is for the access log
        return _envelope(request, 499, "client_closed_request", "the client disconnected")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 \
            else "internal server error"
        return _envelope(request, exc.status_code, code, message,
                         dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _envelope(request, 422, "invalid_request", _validation_message(exc.errors()))

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": _rid(request)}})
        return _envelope(request, 500, "internal_error",
                         "internal server error; quote the request id when you report it")


# ------------------------------------------------------------------------------------ running
def uvicorn_config(app: Any, settings: ServerSettings) -> Any:
    """The :class:`uvicorn.Config` that :func:`run_server` serves ``app`` with.

    h11 with :func:`~fusion.server.connections.guarded_h11_protocol` (connection caps per
    client and in all, header timeout) instead of uvicorn's ``limit_concurrency``, which
    counted idle connections and answered 503 to every request, health checks included.
    """
    import uvicorn

    guard = ConnectionGuard(settings.max_connections, settings.max_connections_per_client,
                            settings.header_timeout_s)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                          access_log=False, server_header=False, proxy_headers=False,
                          http=guarded_h11_protocol(guard), limit_concurrency=None,
                          timeout_keep_alive=int(max(1, round(settings.keep_alive_s))),
                          timeout_graceful_shutdown=30, h11_max_incomplete_event_size=16 * 1024,
                          lifespan="on")


def run_server(config: Config | None = None, settings: ServerSettings | None = None, *,
               max_connections: int | None = None) -> None:
    """Serve with uvicorn (one process: models are loaded once), after the bind safety check.

    ``max_connections``, when given, replaces ``settings.max_connections``.
    """
    import uvicorn

    settings = settings or ServerSettings()
    if max_connections is not None:
        settings = settings.model_copy(update={"max_connections": max_connections})
    check_bind_safety(settings)
    app = create_app(config, settings=settings)
    uvicorn.Server(uvicorn_config(app, settings)).run()
