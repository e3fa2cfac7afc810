"""Configuration: pydantic models, TOML loading, dotted overrides.

Config is data: it serialises, round-trips exactly, and unknown keys are errors. Components
are chosen from allow-lists (``Literal`` fields), never imported by a string from the file.

There is one section per registered stream (:mod:`features.registry`). The built-in streams'
sections are also declared on :class:`Config` so that type checkers see
``config.prosody.enabled``; a test checks those declarations against the registry. A stream
registered later gets its section from :func:`config_model`, which extends :class:`Config`.

Examples
--------
>>> cfg = load_config(overrides=["segments.max_segment_s=8"])
>>> cfg.segments.max_segment_s
8.0
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from features.egemaps.stream import EgemapsConfig
from features.emotion.stream import EmotionConfig
from features.errors import ConfigError, InputFileError
from features.prosody.stream import ProsodyConfig
from features.registry import StreamSpec, stream_specs
from features.regular_file import read_capped
from features.segments.vad import SegmentsConfig
from features.sentiment.stream import SentimentConfig
from features.speakers.config import SpeakersConfig
from features.transcript.stream import TranscriptConfig

__all__ = [
    "AudioConfig",
    "FusionConfig",
    "RuntimeConfig",
    "PrivacyConfig",
    "Config",
    "config_model",
    "load_config",
    "config_dir",
    "default_config_path",
    "parse_override",
]


#: settings that change speed only, left out of :meth:`Config.config_hash`
SPEED_ONLY_SETTINGS: tuple[str, ...] = (
    "runtime.num_threads", "runtime.parallel_streams", "prosody.run_praat_in")


#: largest config file read (bytes)
MAX_CONFIG_BYTES = 1 << 20

#: bounds of config numbers beyond what each section's model states (``None`` = no bound on
#: that side; the lower bound is inclusive). Every number, in every section (streams
#: registered later included), must also be finite. These refuse values that crash, hang the
#: decode watchdog or eat memory (``segments.window_s=1e-6`` would make 10⁶ windows a second).
NUMBER_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "audio.max_duration_s": (None, 7 * 24 * 3600.0),
    "audio.decode_timeout_s": (0.1, 24 * 3600.0),
    "audio.min_speech_s": (None, 24 * 3600.0),
    "segments.min_speech_ms": (None, 3_600_000),
    "segments.min_silence_ms": (None, 3_600_000),
    "segments.speech_pad_ms": (None, 60_000),
    "segments.merge_gap_s": (None, 3600.0),
    "segments.min_segment_s": (None, 3600.0),
    "segments.max_segment_s": (0.1, 3600.0),
    "segments.window_s": (0.1, 3600.0),
    "segments.hop_s": (0.05, 3600.0),
    "prosody.min_pause_s": (None, 60.0),
    "prosody.min_segment_s": (None, 3600.0),
    "prosody.silence_threshold_db": (-200.0, None),
    "prosody.min_dip_db": (None, 200.0),
    "emotion.min_window_s": (None, 60.0),
    "emotion.min_segment_s": (None, 3600.0),
    "transcript.max_span_s": (None, 24 * 3600.0),
    "transcript.compression_ratio_threshold": (None, 1000.0),
    "transcript.log_prob_threshold": (-1000.0, 1000.0),
    "transcript.hallucination_silence_threshold_s": (None, 3600.0),
}


def config_dir() -> Path:
    """The project's ``configs/`` folder (shipped inside the package as ``fusion/configs``)."""
    return Path(__file__).resolve().parent / "configs"


def default_config_path() -> Path:
    return config_dir() / "default.toml"


class AudioConfig(BaseModel):
    """Audio input limits (config section ``[audio]``)."""

    model_config = ConfigDict(extra="forbid")

    max_duration_s: float = Field(4 * 3600.0, gt=0, description="longer files are refused")
    decode_timeout_s: float = Field(120.0, gt=0, description="hard limit for ffmpeg decoding")
    min_speech_s: float = Field(
        1.0, ge=0, description="less detected speech → status 'insufficient speech', no scores "
        "(floor justified in docs/scores.md, 'Short utterances')")


class FusionConfig(BaseModel):
    """Fusion model and score summaries (config section ``[fusion]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    model: str = Field("prior", description="'prior' (the literature prior) or a model JSON path")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="'time above threshold' cut-off")
    speaker_profile: str | None = Field(
        None, description="speaker baseline JSON (vocalfusion baseline build); None = session")
    population_norms: str | None = Field(
        None, description="population reference JSON; None = the bundled norms")
    speaker_sex: Literal["female", "male"] | None = Field(
        None, description="selects sex-specific population norms; None = sex-independent")


class RuntimeConfig(BaseModel):
    """Threads and parallelism (config section ``[runtime]``)."""

    model_config = ConfigDict(extra="forbid")

    num_threads: int = Field(2, ge=1, le=256, description="thread budget for the whole process")
    parallel_streams: bool = Field(True, description="run independent streams concurrently")
    offline: bool | None = Field(
        None, description="never contact a model hub; None = honour HF_HUB_OFFLINE")


class PrivacyConfig(BaseModel):
    """What results may carry when they leave the machine (config section ``[privacy]``).

    Applied whenever a result is serialised (JSON files, batch tables, the server's answers,
    the HTML report); see ``docs/privacy.md`` for what each output contains.
    """

    model_config = ConfigDict(extra="forbid")

    paths: Literal["as_given", "name", "hashed"] = Field(
        "as_given", description="input and model paths: as given; the file name only; or "
                                "'sha256:' + the first 16 hex digits of the sha256 of the path")
    redact_transcript: bool = Field(
        False, description="replace the words by counts and timings (no text anywhere)")
    voiceprints: bool = Field(
        False, description="keep speaker voiceprints (biometric) in results; off = removed")


class Config(BaseModel):
    """The whole engine configuration. Every field has a default; see ``configs/default.toml``.

    The stream sections (``prosody`` … ``sentiment``) are the registry's built-in streams,
    declared here for static typing; :func:`config_model` adds any stream registered since.
    """

    model_config = ConfigDict(extra="forbid")

    audio: AudioConfig = Field(default_factory=AudioConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    prosody: ProsodyConfig = Field(default_factory=ProsodyConfig)
    emotion: EmotionConfig = Field(default_factory=EmotionConfig)
    transcript: TranscriptConfig = Field(default_factory=TranscriptConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    egemaps: EgemapsConfig = Field(default_factory=EgemapsConfig)
    # off by default: diarization adds about 4 % on a 10-min file, beyond what the default
    # pipeline's time budget has left (docs/speakers.md)
    speakers: SpeakersConfig = Field(default_factory=lambda: SpeakersConfig(mode="off"))
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the settings that can change
        results: the settings in :data:`SPEED_ONLY_SETTINGS` change speed only and are left
        out, so a batch rerun with another ``--workers`` resumes instead of redoing."""
        data = self.to_dict()
        for dotted in SPEED_ONLY_SETTINGS:
            section, key = dotted.split(".")
            data[section] = {k: v for k, v in data[section].items() if k != key}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_overrides(self, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
        """A new config with dotted-key overrides applied (``"segments.max_segment_s=8"``)."""
        data = self.to_dict()
        items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override,
                                                                             overrides)
        for key, value in items:
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")

    def stream_section(self, name: str) -> BaseModel:
        """The config section of stream ``name`` (its registered config model)."""
        section = getattr(self, name, None)
        if not isinstance(section, BaseModel):
            raise ConfigError(f"this config has no section for stream {name!r}; build it with "
                              "load_config() or config_model() after registering the stream")
        return section


def config_model() -> type[Config]:
    """The config class with one section per registered stream.

    :class:`Config` itself while only the built-in streams are registered; otherwise a subclass
    of it with a ``<name>: <config model>`` section (default: the model's defaults) for every
    stream registered later.
    """
    extra = tuple(s for s in stream_specs() if s.name not in Config.model_fields)
    return _extended_config(extra) if extra else Config


@lru_cache(maxsize=16)
def _extended_config(extra: tuple[StreamSpec, ...]) -> type[Config]:
    fields: dict[str, Any] = {
        spec.name: (spec.config_model, Field(default_factory=spec.config_model))
        for spec in extra}
    model: type[Config] = create_model("Config", __base__=Config, __module__=__name__,
                                       **fields)
    return model


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` → ``("a.b", value)``; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r} in override "
                              f"{key!r}; valid sections: {', '.join(sorted(data))}")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        valid = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"unknown config key {key!r}; valid keys here: {valid}")
    node[parts[-1]] = value


def _check_numbers(cfg: Config, *, source: str) -> None:
    """Every number finite; those in :data:`NUMBER_BOUNDS` within their bounds."""
    problems = []
    for section, values in cfg.to_dict().items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            dotted = f"{section}.{key}"
            lo, hi = NUMBER_BOUNDS.get(dotted, (None, None))
            if not math.isfinite(value):
                problems.append(f"{dotted}: must be a finite number (got {value!r})")
            elif (lo is not None and value < lo) or (hi is not None and value > hi):
                problems.append(f"{dotted}: {value!r} is outside the valid range "
                                f"[{'-' if lo is None else f'{lo:g}'}, "
                                f"{'-' if hi is None else f'{hi:g}'}]")
    if problems:
        raise ConfigError(f"{source}: invalid configuration: " + "; ".join(problems))


def _validate(data: Mapping[str, Any], *, source: str) -> Config:
    try:
        cfg = config_model().model_validate(data)
        _check_numbers(cfg, source=source)
        return cfg
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {loc!r}")
            else:
                problems.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: invalid configuration: " + "; ".join(problems)) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> Config:
    """Load a TOML config (default: ``configs/default.toml``) and apply overrides.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; sections and keys not given keep their defaults; unknown keys are errors.
    overrides : iterable of "section.key=value" or mapping of dotted key → value, optional

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error, unknown key or invalid value (named in the message).
    """
    p = Path(path) if path is not None else default_config_path()
    if p.suffix.lower() not in (".toml",):
        raise ConfigError(f"{p}: config files are TOML (.toml); got {p.suffix or 'no suffix'!r}")
    try:
        text = read_capped(p, max_bytes=MAX_CONFIG_BYTES, what="config").decode("utf-8")
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: config file is not UTF-8 ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{p}: config file nests tables/arrays too deeply") from None
    cfg = _validate(data, source=str(p))
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def _check_builtin_sections() -> None:
    """The declared stream sections of :class:`Config` are the registry's config models."""
    for spec in stream_specs():
        field = Config.model_fields.get(spec.name)
        if field is not None and field.annotation is not spec.config_model:
            raise TypeError(f"Config.{spec.name} is {field.annotation}, the registry says "
                            f"{spec.config_model}")


_check_builtin_sections()
