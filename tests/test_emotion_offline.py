"""The offline emotion backend (measures head), its JSON file, the hub fallback, manifests.

Audio: synthetic espeak-ng speech (labelled synthetic) and numpy-generated WAVs named like the
corpora; no corpus is needed.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from features.audio.load import load_audio
from features.emotion.measures_head import (
    DEFAULT_HEAD_PATH,
    MeasuresHead,
    SpeakerReference,
    canonical_json_sha256,
)
from features.emotion.stream import EmotionConfig, EmotionStream
from features.errors import ModelUnavailable, UnsafeModelFileError
from features.prosody.stream import ProsodyConfig, ProsodyStream
from features.segments.vad import Segment

ROOT = Path(__file__).resolve().parents[1]


def _datasets() -> Any:
    spec = importlib.util.spec_from_file_location("vf_bench_datasets",
                                                  ROOT / "benchmarks" / "datasets.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def speech(speech_factory: Any) -> Any:
    """Synthetic espeak-ng speech, two segments."""
    path = speech_factory("The weather was calm this morning, so we walked to the market. "
                          "Later we talked about the garden and the long summer ahead.")
    audio = load_audio(path)
    dur = audio.duration_s
    return audio, [Segment(0.0, dur / 2), Segment(dur / 2, dur)]


def _check_rows(rows: list[Any]) -> None:
    assert rows and all(r is not None for r in rows)
    for r in rows:
        assert set(r.probabilities) == {"angry", "bored", "disgust", "fearful", "happy",
                                        "neutral", "sad"}
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in r.probabilities.values())
        assert r.arousal is not None and 0.0 <= r.arousal <= 1.0
        assert r.valence is None
        assert r.top_label == max(r.probabilities, key=r.probabilities.__getitem__)


def test_shipped_head_loads_and_states_its_licence() -> None:
    head = MeasuresHead.load()
    assert head.path == DEFAULT_HEAD_PATH
    assert "CC0" in head.spec.licence["file"]
    assert "EmoDB" in head.spec.training["corpus"]
    assert {"raw", "speaker"} <= set(head.spec.variants)
    assert "cross_corpus_raw" in head.spec.evaluation
    assert head.spec.valence["value"] is None and head.spec.valence["reason"]


def test_measures_backend_on_synthetic_speech(speech: Any) -> None:
    audio, segs = speech
    stream = EmotionStream(EmotionConfig(backend="measures")).load()
    out = stream.run(audio, segs, {})  # no prosody in the context: measured by the stream
    _check_rows(out.rows)
    assert out.provenance is not None and out.provenance.backend == "measures-head"
    assert out.provenance.options["variant"] == "raw"
    assert any("measured them itself" in w for w in out.warnings)


def test_measures_backend_uses_context_and_speaker_reference(speech: Any) -> None:
    audio, segs = speech
    pro = ProsodyStream(ProsodyConfig(run_praat_in="this-process")).run(audio, segs, {})
    stream = EmotionStream(EmotionConfig(backend="measures")).load()
    raw = stream.run(audio, segs, {"prosody": pro})
    assert not any("measured them itself" in w for w in raw.warnings)
    _check_rows(raw.rows)
    stream.set_speaker_reference(SpeakerReference.from_rows([r for r in pro.rows if r]))
    spk = stream.run(audio, segs, {"prosody": pro})
    _check_rows(spk.rows)
    assert spk.provenance is not None and spk.provenance.options["variant"] == "speaker"
    # a different model: the numbers differ
    assert spk.rows[0].probabilities != raw.rows[0].probabilities


def test_speaker_normalisation_moves_arousal_the_right_way() -> None:
    """Louder, higher, more variable speech than the speaker's reference → higher arousal."""
    head = MeasuresHead.load()
    var = head.spec.variants["speaker"]
    rng = np.random.default_rng(0)
    base = {name: float(c) for name, c in zip(var.features, rng.normal(size=len(var.features)),
                                               strict=True)}
    ref = SpeakerReference(means=base, sds={k: 1.0 for k in base}, n_segments=4)
    aroused = dict(base, f0_mean_st=base["f0_mean_st"] + 4, f0_sd_st=base["f0_sd_st"] + 2,
                   intensity_mean_db=base["intensity_mean_db"] + 6,
                   hammarberg_index_db=base["hammarberg_index_db"] - 4,
                   alpha_ratio_db=base["alpha_ratio_db"] + 4)
    p = head.predict_proba([base, aroused], ref)
    a = head.arousal(p)
    assert a[1] > a[0]


def _copy_head(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    content = json.loads(DEFAULT_HEAD_PATH.read_text(encoding="utf-8"))
    path = tmp_path / "head.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path, content


def test_head_file_round_trip_and_tamper_refused(tmp_path: Path) -> None:
    path, content = _copy_head(tmp_path)
    assert MeasuresHead.load(path).sha256 == content["sha256"]
    content["variants"]["raw"]["coef"][0][0] += 0.5
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ModelUnavailable, match="sha256"):
        MeasuresHead.load(path)
    # re-signed but malformed: validation refuses it
    content["variants"]["raw"]["coef"][0].append(1.0)
    content["sha256"] = canonical_json_sha256(content)
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ModelUnavailable, match="not a valid head file"):
        MeasuresHead.load(path)


def test_pickle_head_refused(tmp_path: Path) -> None:
    path = tmp_path / "head.pkl"
    path.write_bytes(pickle.dumps({"format": "vocalfusion-emotion-measures-head"}))
    with pytest.raises(UnsafeModelFileError, match="pickle"):
        MeasuresHead.load(path)
    with pytest.raises(UnsafeModelFileError):
        EmotionStream(EmotionConfig(backend="measures", measures_model=str(path))).load()


def test_fallback_when_hub_model_unavailable(speech: Any, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    audio, segs = speech
    cfg = EmotionConfig(model="vocalfusion-test/no-such-emotion-model", fallback="measures")
    stream = EmotionStream(cfg, offline=True, cache_dir=tmp_path)
    with caplog.at_level("WARNING", logger="features.emotion.stream"):
        stream.load()
    notes = [r.getMessage() for r in caplog.records if "measures head" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "vocalfusion-test/no-such-emotion-model" in notes[0]
    out = stream.run(audio, segs, {})
    _check_rows(out.rows)
    assert out.warnings[0] == notes[0]
    prov = out.provenance
    assert prov is not None and prov.backend == "measures-head"
    assert prov.options["fallback_from"] == "vocalfusion-test/no-such-emotion-model"


def test_no_fallback_by_default(tmp_path: Path) -> None:
    """Opt-in: the head missed the 0.75 cross-corpus arousal UAR needed to be the default."""
    cfg = EmotionConfig(model="vocalfusion-test/no-such-emotion-model")
    assert cfg.fallback == "none"
    with pytest.raises(ModelUnavailable, match="not available offline"):
        EmotionStream(cfg, offline=True, cache_dir=tmp_path).load()


def test_segment_without_measures_gets_none(speech: Any) -> None:
    audio, segs = speech
    stream = EmotionStream(EmotionConfig(backend="measures", min_segment_s=0.25)).load()
    short = [Segment(0.0, 0.1), *segs]
    out = stream.run(audio, short, {})
    assert out.rows[0] is None
    assert any("too short" in w for w in out.warnings)
    _check_rows(out.rows[1:])


def _wav(path: Path, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.2 * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)


def test_manifest_builders_on_fake_folders(tmp_path: Path) -> None:
    ds = _datasets()
    emo = tmp_path / "emodb" / "wav"
    for name in ("03a01Wa.wav", "08b02Tb.wav", "16a05Lc.wav", "notes.wav", "03a01Xa.wav"):
        _wav(emo / name)
    rows = ds.emodb_manifest(emo)
    assert [(r.speaker, r.sex, r.emotion) for r in rows] == [
        ("emodb03", "male", "angry"), ("emodb08", "female", "sad"),
        ("emodb16", "female", "bored")]
    assert all(r.licence == "CC0-1.0" and "sylaschacko/voice-emotion-analysis" in r.source
               for r in rows)
    rav = tmp_path / "audio_speech_actors_01-24"
    for name in ("Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-02-01-02-02-02.wav",
                 "Actor_02/03-02-05-01-01-01-02.wav"):  # the last: song channel, skipped
        _wav(rav / name)
    rrows = ds.ravdess_manifest(rav)
    assert [(r.speaker, r.sex, r.emotion, r.intensity) for r in rrows] == [
        ("ravdess01", "male", "angry", "strong"), ("ravdess02", "female", "calm", "normal")]
    assert all(r.licence == "CC-BY-NC-SA-4.0" for r in rrows)
    out = ds.write_manifest(rows + rrows, tmp_path / "m.csv")
    assert ds.read_manifest(out) == rows + rrows
    with pytest.raises(FileNotFoundError):
        ds.emodb_manifest(tmp_path / "missing")


def test_engine_runs_measures_backend_on_real_speech(jfk_path: Path) -> None:
    """The bundled real-speech example with the measures head: every segment has emotion."""
    from fusion.config import load_config
    from fusion.engine.analyzer import Analyzer

    cfg = load_config(overrides=["emotion.backend=measures", "fusion.enabled=false"])
    res = Analyzer(cfg, streams=["prosody", "emotion"]).load().process_file(jfk_path)
    assert res.segments
    _check_rows([seg.emotion for seg in res.segments])
    prov = res.streams["emotion"].provenance
    assert prov is not None and prov.backend == "measures-head"
    assert prov.revision == f"sha256:{MeasuresHead.load().sha256}"


def test_shipped_head_reads_the_prosody_stream_in_its_own_orientation(jfk_path: Path) -> None:
    """The head was fitted on the prosody stream's measures; if a measure's definition flips
    sign (as ``alpha_ratio_db`` did for openSMILE's orientation), the head must be refitted or
    reparametrised. Guard: on real speech (jfk.flac), every measure whose training mean is
    clearly off zero (|center| > 2 SD) lies nearer that mean than its negative does."""
    from features.prosody.stream import measure_segment
    from features.segments.vad import SegmentsConfig, segment_audio

    audio = load_audio(str(jfk_path))
    segs = segment_audio(audio.y, 16_000, SegmentsConfig())
    rows = [measure_segment(audio.y[int(s.start_s * 16_000):int(s.end_s * 16_000)], 16_000)
            for s in segs]
    var = MeasuresHead.load().spec.variants["raw"]
    checked = []
    for j, name in enumerate(var.features):
        center, scale = var.center[j], var.scale[j]
        vals = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        if abs(center) <= 2 * scale or not vals:
            continue
        med = float(np.median(vals))
        assert abs(med - center) < abs(-med - center), (name, med, center)
        checked.append(name)
    assert "alpha_ratio_db" in checked
