"""The stream registry: one typed :class:`StreamSpec` per analysis stream, registered once.

Everything that lists streams reads this registry: the engine config (one section per stream),
the segment result (one field per stream, typed by the row model), the model inventory
(``vocalfusion models list``), the segment table's columns and the report's titles. Adding a
stream is its module plus one :func:`register_stream` call (see ``docs/streams.md``).

Streams are created only by the factories registered here (an allow-list): nothing is ever
imported by a name read from a config file.

Examples
--------
>>> [spec.name for spec in stream_specs()]
['prosody', 'emotion', 'transcript', 'sentiment', 'egemaps']
>>> stream_spec("sentiment").requires
('transcript',)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from features.egemaps.stream import EgemapsConfig, EgemapsFeatures, EgemapsStream
from features.emotion.stream import EmotionConfig, EmotionMeasures, EmotionStream
from features.errors import ParameterError
from features.prosody.stream import ProsodyConfig, ProsodyMeasures, ProsodyStream
from features.sentiment.stream import SentimentConfig, SentimentMeasures, SentimentStream
from features.stream import Stream
from features.transcript.stream import SegmentTranscript, TranscriptConfig, TranscriptStream

__all__ = [
    "ModelNeed",
    "StreamSpec",
    "register_stream",
    "unregister_stream",
    "stream_spec",
    "stream_specs",
    "stream_names",
    "prefixed_columns",
]

#: section names the engine config uses for things that are not streams
RESERVED_NAMES: frozenset[str] = frozenset(
    {"audio", "segments", "fusion", "runtime", "index", "start_s", "end_s", "scores"})


@dataclass(frozen=True)
class ModelNeed:
    """One model a stream section would load (a row of ``vocalfusion models list``).

    Attributes
    ----------
    spec : str
        Model spec: hub id, local path, ``bundled:<name>`` or ``builtin:<name>``.
    resolve : tuple of (str, object) pairs
        Keyword arguments for :func:`features.sources.resolve_model` (``kind``, ``revision``,
        ``allow_pickle``, ``setting``); ``kind = "openai-whisper"`` and ``builtin:`` specs are
        checked by the inventory itself.
    """

    spec: str
    resolve: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.resolve)


def _num(v: Any) -> Any:
    return math.nan if v is None else v


def prefixed_columns(name: str) -> Callable[[BaseModel], dict[str, Any]]:
    """The default table columns of a row: every scalar field as ``<name>_<field>``."""

    def columns(row: BaseModel) -> dict[str, Any]:
        return {f"{name}_{k}": _num(v) for k, v in row.model_dump().items()
                if v is None or isinstance(v, (int, float, str, bool))}

    return columns


@dataclass(frozen=True)
class StreamSpec:
    """Everything the engine needs to know about one stream.

    Attributes
    ----------
    name : str
        Stable identifier: the config section (``[name]``), the segment result field and the
        key in ``SessionResult.streams``. Lower case letters, digits and ``_``.
    config_model : type of BaseModel
        The section's pydantic model; it must have ``enabled: bool`` and default values for
        every field.
    row_model : type of BaseModel
        One segment's measurements (``StreamOutput[row_model].rows``).
    factory : callable ``(section, num_threads) -> Stream``
        Builds the stream from its config section (usually the stream class itself).
    title, short_title : str
        The report's section title and its short label.
    requires : tuple of str
        Streams whose output this one reads; the engine runs it after them.
    models : callable ``(section) -> list of ModelNeed``
        The models this section would load (for the inventory); default none.
    columns : callable ``(row) -> dict``
        The row's columns in the segment table (``SessionResult.to_dataframe``); default
        :func:`prefixed_columns`.
    """

    name: str
    config_model: type[BaseModel]
    row_model: type[BaseModel]
    factory: Callable[..., Stream]
    title: str
    short_title: str
    requires: tuple[str, ...] = ()
    models: Callable[[Any], list[ModelNeed]] | None = None
    columns: Callable[[Any], dict[str, Any]] | None = None

    def create(self, section: Any, *, num_threads: int) -> Stream:
        """A new stream for this config section."""
        return self.factory(section, num_threads=num_threads)

    def model_needs(self, section: Any) -> list[ModelNeed]:
        """The models ``section`` would load (none when the stream is disabled)."""
        if not getattr(section, "enabled", False) or self.models is None:
            return []
        return self.models(section)

    def row_columns(self, row: Any) -> dict[str, Any]:
        """The segment-table columns of one row (missing values are NaN)."""
        return (self.columns or prefixed_columns(self.name))(row)


_REGISTRY: dict[str, StreamSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register_stream(spec: StreamSpec) -> StreamSpec:
    """Add ``spec`` to the registry (after the streams registered before it).

    Raises
    ------
    ParameterError
        The name is taken, reserved or malformed, a requirement is not registered, or the
        config model has no ``enabled`` field.
    """
    if not _NAME.match(spec.name):
        raise ParameterError(f"stream name {spec.name!r} must match {_NAME.pattern}")
    if spec.name in RESERVED_NAMES:
        raise ParameterError(f"stream name {spec.name!r} is reserved; reserved: "
                             f"{', '.join(sorted(RESERVED_NAMES))}")
    if spec.name in _REGISTRY:
        raise ParameterError(f"a stream named {spec.name!r} is already registered")
    missing = [r for r in spec.requires if r not in _REGISTRY]
    if missing:
        raise ParameterError(f"stream {spec.name!r} requires {missing}, which are not "
                             f"registered; registered: {', '.join(_REGISTRY)}")
    if "enabled" not in spec.config_model.model_fields:
        raise ParameterError(f"stream {spec.name!r}: {spec.config_model.__name__} needs an "
                             "'enabled: bool' field")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_stream(name: str) -> None:
    """Remove a stream added by :func:`register_stream` (tests; built-ins stay)."""
    if name in BUILTIN_STREAMS:
        raise ParameterError(f"the built-in stream {name!r} cannot be unregistered")
    dependants = [s.name for s in _REGISTRY.values() if name in s.requires]
    if dependants:
        raise ParameterError(f"stream {name!r} is required by {dependants}")
    _REGISTRY.pop(name, None)


def stream_specs() -> tuple[StreamSpec, ...]:
    """Every registered stream, in registration order (requirements first)."""
    return tuple(_REGISTRY.values())


def stream_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def stream_spec(name: str) -> StreamSpec:
    """The spec of stream ``name``; :class:`ParameterError` naming the valid ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(f"unknown stream {name!r}; valid: {', '.join(_REGISTRY)}") from None


# --------------------------------------------------------------------------------------------
# the built-in streams
# --------------------------------------------------------------------------------------------

def _prosody_models(section: ProsodyConfig) -> list[ModelNeed]:
    return [ModelNeed("builtin:praat")]


def _emotion_models(em: EmotionConfig) -> list[ModelNeed]:
    return [ModelNeed(em.model, (("kind", "transformers"), ("revision", em.revision),
                                 ("allow_pickle", em.allow_pickle_weights),
                                 ("setting", "emotion.model")))]


def _transcript_models(tr: TranscriptConfig) -> list[ModelNeed]:
    if tr.backend == "openai-whisper":
        return [ModelNeed(tr.model, (("kind", "openai-whisper"),))]
    return [ModelNeed(tr.model, (("kind", "faster-whisper"),
                                 ("revision", getattr(tr, "revision", None)),
                                 ("setting", "transcript.model")))]


def _sentiment_models(se: SentimentConfig) -> list[ModelNeed]:
    if se.backend == "vader":
        return [ModelNeed("bundled:vader", (("kind", "lexicon"),))]
    from features.sentiment import stream as sentiment

    spec = se.model or getattr(sentiment, "DEFAULT_TRANSFORMER_MODEL", None)
    return [ModelNeed(spec or "", (("kind", "transformers"),
                                   ("revision", getattr(se, "revision", None)),
                                   ("allow_pickle", bool(getattr(se, "allow_pickle_weights",
                                                                 False))),
                                   ("setting", "sentiment.model")))]


def _prosody_columns(row: ProsodyMeasures) -> dict[str, Any]:
    return {k: _num(v) for k, v in row.model_dump(exclude={"missing"}).items()}


def _emotion_columns(row: EmotionMeasures) -> dict[str, Any]:
    rec: dict[str, Any] = {f"emotion_{label}": p for label, p in row.probabilities.items()}
    rec["emotion_unmapped"] = _num(row.unmapped_probability)
    rec["emotion_top"] = row.top_label
    rec["emotion_entropy_bits"] = _num(row.entropy_bits)
    for dim in ("arousal", "valence", "dominance"):
        val = getattr(row, dim)
        if val is not None:
            rec[f"emotion_{dim}"] = val
    return rec


def _transcript_columns(row: SegmentTranscript) -> dict[str, Any]:
    return {"text": row.text, "word_count": row.word_count,
            "words_per_min": _num(row.words_per_min)}


def _sentiment_columns(row: SentimentMeasures) -> dict[str, Any]:
    return {f"sentiment_{k}": (_num(v) if k != "label" else v)
            for k, v in row.model_dump().items() if k != "word_count"}


BUILTIN_STREAMS: tuple[str, ...] = ("prosody", "emotion", "transcript", "sentiment", "egemaps")

register_stream(StreamSpec(
    name="prosody", config_model=ProsodyConfig, row_model=ProsodyMeasures,
    factory=ProsodyStream, title="Prosody", short_title="Prosody",
    models=_prosody_models, columns=_prosody_columns))
register_stream(StreamSpec(
    name="emotion", config_model=EmotionConfig, row_model=EmotionMeasures,
    factory=EmotionStream, title="Acoustic emotion", short_title="Emotion",
    models=_emotion_models, columns=_emotion_columns))
register_stream(StreamSpec(
    name="transcript", config_model=TranscriptConfig, row_model=SegmentTranscript,
    factory=TranscriptStream, title="Transcript", short_title="Transcript",
    models=_transcript_models, columns=_transcript_columns))
register_stream(StreamSpec(
    name="sentiment", config_model=SentimentConfig, row_model=SentimentMeasures,
    factory=SentimentStream, title="Text sentiment", short_title="Sentiment",
    requires=("transcript",), models=_sentiment_models, columns=_sentiment_columns))
register_stream(StreamSpec(
    name="egemaps", config_model=EgemapsConfig, row_model=EgemapsFeatures,
    factory=EgemapsStream, title="openSMILE functionals (eGeMAPS)", short_title="eGeMAPS",
    models=lambda section: [ModelNeed(f"builtin:opensmile-{section.feature_set}")]))
