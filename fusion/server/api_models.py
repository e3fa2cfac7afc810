"""HTTP API models of ``vocalfusion serve`` (pydantic v2; they are the OpenAPI contract).

Results reuse :class:`fusion.schema.SessionResult` unchanged; this module holds the envelope,
health, model-status, job and option models, and :class:`APIError`, the one exception the
service turns into an error response.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fusion.schema import FusionInfo, StreamInfo

__all__ = [
    "APIError",
    "ErrorBody",
    "ErrorResponse",
    "Health",
    "Readiness",
    "ModelsResponse",
    "AnalyzeOptions",
    "OPTION_FIELDS",
    "JobState",
    "JobInfo",
]

_STRICT = ConfigDict(extra="forbid", protected_namespaces=())


class APIError(Exception):
    """An error the service answers with ``{"error": {code, message, request_id}}``.

    Parameters
    ----------
    status_code : int
        HTTP status.
    code : str
        Stable machine-readable code (``payload_too_large``, ``not_audio``, ``busy`` ...).
    message : str
        Plain words for a person; never a server path or a stack trace.
    headers : dict, optional
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status_code: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers or {}


class ErrorBody(BaseModel):
    model_config = _STRICT

    code: str = Field(description="stable machine-readable error code", examples=["not_audio"])
    message: str = Field(description="what went wrong, in plain words")
    request_id: str | None = Field(None, description="the X-Request-ID of the request")


class ErrorResponse(BaseModel):
    """The one error envelope every route uses."""

    model_config = _STRICT

    error: ErrorBody


class Health(BaseModel):
    model_config = _STRICT

    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    model_config = _STRICT

    status: Literal["ready"] = "ready"
    workers: int = Field(description="analyses that run at the same time")
    queue: int = Field(description="further requests that may wait for a worker")
    in_flight: int = Field(description="requests now running or waiting")


class ModelsResponse(BaseModel):
    """Status and provenance of every stream the service was started with."""

    model_config = _STRICT

    package_version: str
    config_hash: str
    segment_policy: str
    streams: dict[str, StreamInfo]
    fusion: FusionInfo | None = None


class AnalyzeOptions(BaseModel):
    """Per-request options (query or form fields). Only these keys are accepted; no other
    config key can be changed from a request."""

    model_config = _STRICT

    segment_policy: Literal["vad", "fixed"] | None = Field(
        None, description="segmentation: 'vad' (Silero speech regions) or 'fixed' windows; "
                          "default: the server's config")
    window_s: float | None = Field(
        None, ge=0.5, le=60.0, description="window length of the 'fixed' policy, seconds")
    max_segment_s: float | None = Field(
        None, ge=1.0, le=60.0, description="longer VAD regions are split, seconds")
    speakers_mode: Literal["off", "auto", "channels"] | None = Field(
        None, description="who is talking: 'off', 'auto' (by voice) or 'channels'")
    num_speakers: int | None = Field(None, ge=1, le=10, description="fixed speaker count")
    speaker_id: str | None = Field(
        None, max_length=200, pattern=r"^[^\x00-\x1f]*$",
        description="'P01' names the focus speaker; 'S2=P01,S1=INT' names labels")

    def overrides(self) -> dict[str, Any]:
        """Dotted config overrides for :meth:`fusion.config.Config.with_overrides`."""
        out: dict[str, Any] = {}
        if self.segment_policy is not None:
            out["segments.policy"] = self.segment_policy
        if self.window_s is not None:
            out["segments.window_s"] = self.window_s
        if self.max_segment_s is not None:
            out["segments.max_segment_s"] = self.max_segment_s
        if self.speakers_mode is not None:
            out["speakers.mode"] = self.speakers_mode
        if self.num_speakers is not None:
            out["speakers.num_speakers"] = self.num_speakers
        return out


#: names accepted as multipart form fields besides ``file``
OPTION_FIELDS: frozenset[str] = frozenset(AnalyzeOptions.model_fields)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobInfo(BaseModel):
    """State of one analysis job."""

    model_config = _STRICT

    id: str
    status: JobState
    filename: str = Field(description="the client's file name, sanitised (display only)")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(
        None, description="when a finished job and its result are dropped")
    error: ErrorBody | None = None
    result_url: str | None = Field(None, description="where the result is, once succeeded")
