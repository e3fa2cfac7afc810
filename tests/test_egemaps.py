"""The optional ``egemaps`` stream (openSMILE functionals per segment and per session).

Audio: the bundled JFK recording (real speech) and a numpy harmonic complex (synthetic). The
tests that run openSMILE are skipped when the ``egemaps`` extra is not installed (CI installs
it); the "not installed" path is tested by hiding the package from the import system.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from features.audio.load import audio_from_signal, load_audio
from features.egemaps.stream import EgemapsConfig, EgemapsFeatures, EgemapsStream
from features.errors import ModelUnavailable
from features.segments.vad import Segment
from fusion.config import load_config
from fusion.schema import SessionResult

SR = 16_000
ONLY_EGEMAPS = {"egemaps.enabled": True, "emotion.enabled": False,
                "transcript.enabled": False, "sentiment.enabled": False,
                "fusion.enabled": False}
F0_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"


@pytest.fixture(scope="module")
def result(jfk_path: Path) -> SessionResult:
    pytest.importorskip("opensmile")
    import fusion

    return fusion.analyze(jfk_path, overrides=ONLY_EGEMAPS)


def test_off_by_default() -> None:
    cfg = load_config()
    assert cfg.egemaps.enabled is False and cfg.egemaps.feature_set == "eGeMAPSv02"


def test_segments_carry_opensmile_functionals(result: SessionResult, jfk_path: Path) -> None:
    import opensmile

    assert result.streams["egemaps"].status == "ok"
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    audio = load_audio(jfk_path)
    for seg in result.segments:
        row = seg.egemaps
        assert isinstance(row, EgemapsFeatures)
        values = row.values()
        assert len(values) == 88 and F0_MEAN in values
        ref = smile.process_signal(audio.crop(seg.start_s, seg.end_s), audio.sr).iloc[0]
        assert list(values) == list(ref.index)  # openSMILE's own names, in its order
        np.testing.assert_allclose([values[k] for k in ref.index], ref.to_numpy(), rtol=1e-6)
    session = result.streams["egemaps"].session
    assert session["feature_set"] == "eGeMAPSv02" and len(session["functionals"]) == 88
    # the session's F0 mean lies between its segments' (speech joined in order)
    seg_f0 = [s.egemaps.values()[F0_MEAN] for s in result.segments if s.egemaps]
    assert min(seg_f0) - 0.5 <= session["functionals"][F0_MEAN] <= max(seg_f0) + 0.5


def test_table_and_json_round_trip(result: SessionResult) -> None:
    df = result.to_dataframe()
    assert f"egemaps_{F0_MEAN}" in df.columns
    assert sum(c.startswith("egemaps_") for c in df.columns) == 88
    again = SessionResult.from_json(result.to_json())
    first = again.segments[0].egemaps
    assert first is not None and first.values() == result.segments[0].egemaps.values()  # type: ignore[union-attr]
    assert result.to_dict()["segments"][0]["egemaps"][F0_MEAN] is not None


def test_compare_feature_set_and_short_segments() -> None:
    pytest.importorskip("opensmile")
    t = np.arange(SR) / SR
    y = 0.1 * sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 10))
    audio = audio_from_signal(y.astype(np.float32), SR, name="synthetic")
    stream = EgemapsStream(EgemapsConfig(enabled=True, feature_set="ComParE_2016",
                                         session=False)).load()
    out = stream.run(audio, [Segment(0.0, 1.0), Segment(0.5, 0.55)], {})
    assert len(out.rows[0].values()) == 6373
    assert out.rows[1] is None and "shorter than" in out.warnings[0]
    assert "functionals" not in out.session
    assert out.provenance is not None and out.provenance.model_id == "ComParE_2016"


def test_enabled_without_opensmile_is_skipped_with_the_install_line(
        monkeypatch: pytest.MonkeyPatch, jfk_path: Path) -> None:
    from fusion.engine.analyzer import Analyzer

    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now fails
    with pytest.raises(ModelUnavailable, match=r'pip install "vocalfusion\[egemaps\]"'):
        EgemapsStream(EgemapsConfig(enabled=True)).load()
    cfg = load_config(overrides={**ONLY_EGEMAPS, "prosody.enabled": False})
    analyzer = Analyzer(cfg)
    info = analyzer.stream_infos()["egemaps"]
    assert info.status == "skipped"
    assert info.reason is not None and 'pip install "vocalfusion[egemaps]"' in info.reason
    assert "\n" not in info.reason
