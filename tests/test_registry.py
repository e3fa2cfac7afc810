"""The stream registry: a stream is its module plus one registration.

The toy stream below is defined here, in the test, and registered once; the engine config,
the segment result (JSON and DataFrame), the Analyzer, the model inventory and the report pick
it up without any other edit. Audio is numpy-made (a tone with a step in loudness).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from features.audio.load import Audio
from features.errors import ConfigError, ParameterError
from features.registry import (
    BUILTIN_STREAMS,
    ModelNeed,
    StreamSpec,
    register_stream,
    stream_names,
    stream_spec,
    stream_specs,
    unregister_stream,
)
from features.segments.vad import Segment
from features.stream import Provenance, StreamOutput
from fusion.config import Config, config_model, default_config_path, load_config
from fusion.engine.analyzer import Analyzer
from fusion.engine.inventory import list_models
from fusion.report.render import render_session
from fusion.schema import SegmentResult, SessionResult, result_models

SR = 16_000


# ------------------------------------------------------------------------------ the toy stream
class ToyConfig(BaseModel):
    """``[toy]``: level of each segment, in dB relative to ``reference``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    reference: float = Field(1.0, gt=0.0)


class ToyRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    level_db: float
    peak: float


class ToyStream:
    name = "toy"
    requires: tuple[str, ...] = ()

    def __init__(self, config: ToyConfig, *, num_threads: int = 1) -> None:
        self.config = config

    def load(self) -> ToyStream:
        return self

    def provenance(self) -> Provenance:
        return Provenance(backend="numpy", options={"reference": self.config.reference})

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput[Any]]) -> StreamOutput[ToyRow | None]:
        rows: list[ToyRow | None] = []
        emb = np.full((len(segments), 2), np.nan, dtype=np.float32)
        for k, seg in enumerate(segments):
            x = audio.y[int(seg.start_s * audio.sr):int(seg.end_s * audio.sr)].astype(float)
            rms = float(np.sqrt(np.mean(x ** 2)))
            rows.append(ToyRow(level_db=20 * np.log10(rms / self.config.reference),
                               peak=float(np.max(np.abs(x)))))
            emb[k] = (rms, float(np.max(np.abs(x))))
        return StreamOutput[ToyRow | None](name=self.name, provenance=self.provenance(),
                                           rows=rows, embeddings=emb,
                                           session={"n_segments": len(segments)})


TOY = StreamSpec(name="toy", config_model=ToyConfig, row_model=ToyRow, factory=ToyStream,
                 title="Toy loudness", short_title="Toy",
                 models=lambda section: [ModelNeed("bundled:silero-vad", (("kind", "onnx"),))])


@pytest.fixture
def toy() -> Iterator[StreamSpec]:
    spec = register_stream(TOY)  # the one registration
    try:
        yield spec
    finally:
        unregister_stream("toy")


def _signal() -> np.ndarray:
    """4 s: a 220 Hz tone at amplitude 0.1 for 2 s, then 0.4 for 2 s."""
    t = np.arange(2 * SR) / SR
    tone = np.sin(2 * np.pi * 220 * t)
    return np.concatenate([0.1 * tone, 0.4 * tone]).astype(np.float32)


def _config(**extra: Any) -> Config:
    return load_config(overrides={"segments.policy": "fixed", "segments.window_s": 2.0,
                                  "segments.min_segment_s": 0.5, "runtime.num_threads": 1,
                                  **extra})


# ------------------------------------------------------------------------------ tests
def test_toy_stream_end_to_end_from_one_registration(toy: StreamSpec) -> None:
    cfg = _config(**{"toy.reference": 0.5})
    assert isinstance(cfg, Config) and cfg.stream_section("toy") == ToyConfig(reference=0.5)
    run = Analyzer(cfg, streams=["toy"]).load().run_signal(_signal(), SR, name="toy.wav")
    result = run.result
    assert [s.toy.level_db for s in result.segments] == pytest.approx(  # type: ignore[attr-defined]
        [20 * np.log10(0.1 / np.sqrt(2) / 0.5), 20 * np.log10(0.4 / np.sqrt(2) / 0.5)],
        abs=0.01)
    assert result.streams["toy"].status == "ok"
    assert result.streams["toy"].session == {"n_segments": 2}
    assert set(result.streams) == {"toy"}  # the Analyzer was restricted to it
    # embeddings come back with the run, by stream, never in the JSON
    assert run.embeddings["toy"].shape == (2, 2)
    assert run.embeddings["toy"][1, 1] == pytest.approx(0.4, abs=1e-3)
    data = json.loads(result.to_json())
    assert data["schema_version"] == "1.2.0"
    assert data["segments"][1]["toy"]["peak"] == pytest.approx(0.4, abs=1e-3)
    assert data["config"]["toy"] == {"enabled": True, "reference": 0.5}
    assert "embeddings" not in json.dumps(data["streams"])
    # round trip: the row comes back typed
    back = SessionResult.from_json(result.to_json())
    assert isinstance(back.segments[0].toy, ToyRow)  # type: ignore[attr-defined]
    assert back == result
    df = result.to_dataframe()
    assert list(df["toy_level_db"].round(2)) == [round(s.toy.level_db, 2)  # type: ignore
                                                 for s in result.segments]
    assert "toy_peak" in df.columns


def test_toy_stream_reaches_config_inventory_and_report(toy: StreamSpec) -> None:
    with pytest.raises(ConfigError, match="toy.colour"):
        _config(**{"toy.colour": 3})
    with pytest.raises(ConfigError, match="toy.reference"):
        _config(**{"toy.reference": -1})
    cfg = _config()
    assert [r.stream for r in list_models(cfg)] .count("toy") == 1
    off = cfg.with_overrides({"toy.enabled": False})
    assert "toy" not in [r.stream for r in list_models(off)]
    result = Analyzer(cfg, streams=["toy"]).load().process_signal(_signal(), SR)
    html = render_session(result)
    assert "Toy loudness" in html


def test_config_made_before_registration_gets_the_default_section() -> None:
    cfg = _config()
    assert "toy" not in type(cfg).model_fields
    register_stream(TOY)
    try:
        analyzer = Analyzer(cfg, streams=["toy"]).load()
        assert analyzer.config_.stream_section("toy") == ToyConfig()
        assert analyzer.process_signal(_signal(), SR).segments[0].toy is not None  # type: ignore
    finally:
        unregister_stream("toy")
    assert config_model() is Config and result_models() == (SegmentResult, SessionResult)


def test_builtin_declarations_match_the_registry() -> None:
    """Config and SegmentResult declare the built-ins for type checkers; they must be the
    registry's models, and the shipped TOML has exactly one section per stream."""
    assert stream_names() == BUILTIN_STREAMS
    for spec in stream_specs():
        assert Config.model_fields[spec.name].annotation is spec.config_model
        assert SegmentResult.model_fields[spec.name].annotation == spec.row_model | None
    stream_fields = [n for n in SegmentResult.model_fields if n not in
                     ("index", "start_s", "end_s", "speaker", "overlap", "scores")]
    assert stream_fields == list(BUILTIN_STREAMS)
    sections = tomllib.loads(default_config_path().read_text())
    assert [s for s in sections if s not in ("audio", "segments", "speakers", "fusion",
                                                  "runtime", "privacy")] == \
        list(BUILTIN_STREAMS)
    assert stream_spec("sentiment").requires == ("transcript",)


def test_registration_errors_name_the_problem() -> None:
    with pytest.raises(ParameterError, match="already registered"):
        register_stream(stream_spec("prosody"))
    with pytest.raises(ParameterError, match="reserved"):
        register_stream(StreamSpec(name="fusion", config_model=ToyConfig, row_model=ToyRow,
                                   factory=ToyStream, title="x", short_title="x"))
    with pytest.raises(ParameterError, match="requires"):
        register_stream(StreamSpec(name="toy2", config_model=ToyConfig, row_model=ToyRow,
                                   factory=ToyStream, title="x", short_title="x",
                                   requires=("nothere",)))
    with pytest.raises(ParameterError, match="built-in"):
        unregister_stream("prosody")
    with pytest.raises(ParameterError, match="valid: prosody"):
        stream_spec("toy")
    assert stream_names() == BUILTIN_STREAMS
