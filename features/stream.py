"""The contract every analysis stream implements.

A stream is a plug-in with one job. The pipeline calls :meth:`Stream.load` once per process
(heavy work: models) and then :meth:`Stream.run` once per file. ``run`` returns one row per
segment, in segment order, so that everything a segment reports is measured inside
``[start_s, end_s)`` of that segment.

A stream whose model cannot be loaded raises :class:`features.errors.ModelUnavailable` from
``load``; the pipeline then records it as *skipped* with the message, and the other streams go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from features.audio.load import Audio
    from features.segments.vad import Segment

__all__ = ["Stream", "StreamOutput", "StreamStatus", "Provenance", "RowT"]

#: the row model of a stream (e.g. ``ProsodyMeasures``)
RowT = TypeVar("RowT")


class StreamStatus(StrEnum):
    """Outcome of one stream on one file."""

    OK = "ok"
    SKIPPED = "skipped"  # model unavailable or stream disabled: not an error of the input
    FAILED = "failed"  # the stream raised while running on this input


class Provenance(BaseModel):
    """Where a stream's numbers come from."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    backend: str = Field(description="Implementation, e.g. 'parselmouth', 'faster-whisper'.")
    model_id: str | None = Field(default=None, description="Hub id, local path or bundled name.")
    revision: str | None = Field(default=None, description="Model revision or content hash.")
    library_version: str | None = Field(default=None, description="Version of the backend library.")
    options: dict[str, Any] = Field(default_factory=dict, description="Effective options.")


class StreamOutput(BaseModel, Generic[RowT]):
    """What one stream produced for one file.

    ``rows`` has exactly one entry per input segment, in order. An entry is ``None`` when the
    stream has nothing for that segment (the stream says why in ``warnings`` or ``session``).
    Parametrise with the row model: ``StreamOutput[ProsodyMeasures | None]`` validates that
    every row is a ``ProsodyMeasures`` or ``None``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    name: str
    status: StreamStatus = StreamStatus.OK
    reason: str | None = None
    provenance: Provenance | None = None
    rows: list[RowT] = Field(default_factory=list)
    #: file-level output (e.g. the transcript's detected language); stream specific, JSON-ready
    session: dict[str, Any] = Field(default_factory=dict)
    #: per-segment embeddings, shape (n_segments, dim), NaN rows where a segment has none;
    #: ``None`` when the stream made none. Never written into the JSON result.
    embeddings: np.ndarray | None = None
    warnings: list[str] = Field(default_factory=list)
    elapsed_s: float | None = None

    @classmethod
    def skipped(cls, name: str, reason: str, n_segments: int,
                provenance: Provenance | None = None) -> StreamOutput[Any]:
        """An output that says the stream did not run, with one empty row per segment."""
        rows: list[Any] = [None] * n_segments
        return cls(name=name, status=StreamStatus.SKIPPED, reason=reason,
                   provenance=provenance, rows=rows)


@runtime_checkable
class Stream(Protocol):
    """One analysis stream (prosody, emotion, transcript, sentiment, ...).

    Attributes
    ----------
    name : str
        Stable identifier, also the key of the stream's config section and result field.
    requires : tuple of str
        Names of streams whose output this stream reads from ``context`` (e.g. sentiment
        requires transcript). The pipeline runs a stream after its requirements.
    """

    name: str
    requires: tuple[str, ...]

    def load(self) -> object:
        """Load models once (the return value, often ``self``, is ignored). Raises
        ``ModelUnavailable`` with a remedy when it cannot."""
        ...

    def provenance(self) -> Provenance:
        """Backend, model id and revision this stream will report."""
        ...

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput[Any]]) -> StreamOutput[Any]:
        """Measure every segment; return exactly one row (or ``None``) per segment."""
        ...
