"""No shared per-call state: each analysis call returns its own run object; analyze()'s cache
keys on the whole config; scoring and training share one standardisation rule.

Audio is numpy-made (tones); the prosody stream (Praat) runs for real.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from fusion.config import load_config
from fusion.engine import analyzer as analyzer_mod
from fusion.engine.analyzer import AnalysisRun, Analyzer, analyze
from fusion.training.estimator import FusionModel

SR = 16_000
ONLY_PROSODY = {"emotion.enabled": False, "transcript.enabled": False,
                "sentiment.enabled": False, "segments.policy": "fixed",
                "segments.window_s": 2.0, "segments.min_segment_s": 0.5}


def _voice(f0_hz: float, seconds: float = 4.0) -> np.ndarray:
    """A harmonic tone (voiced for Praat) at ``f0_hz``."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 6))
    return (0.2 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture
def clean_cache():
    analyzer_mod._ANALYZERS.clear()
    yield
    analyzer_mod._ANALYZERS.clear()


def test_analyze_cache_keys_on_the_whole_config(clean_cache) -> None:
    """runtime.num_threads changes no number, so it is out of config_hash; an Analyzer built
    with 1 thread must still not be reused for a call asking for 2."""
    y = _voice(150.0)
    a = analyze(y, sr=SR, overrides={**ONLY_PROSODY, "runtime.num_threads": 1})
    first = next(iter(analyzer_mod._ANALYZERS.values()))
    b = analyze(y, sr=SR, overrides={**ONLY_PROSODY, "runtime.num_threads": 2})
    second = next(iter(analyzer_mod._ANALYZERS.values()))
    assert second is not first
    assert second.config_.runtime.num_threads == 2
    assert len(analyzer_mod._ANALYZERS) == 1  # still one set of models per process
    assert a.config_hash == b.config_hash
    analyze(y, sr=SR, overrides={**ONLY_PROSODY, "runtime.num_threads": 2})
    assert next(iter(analyzer_mod._ANALYZERS.values())) is second  # same config: reused


def test_run_object_carries_timings_and_no_state_is_kept() -> None:
    cfg = load_config(overrides={**ONLY_PROSODY, "fusion.enabled": False})
    analyzer = Analyzer(cfg).load()
    run = analyzer.run_signal(_voice(150.0), SR)
    assert isinstance(run, AnalysisRun)
    assert {"segments", "streams", "stream:prosody", "fusion", "total"} <= set(run.timings)
    assert run.timings["total"] >= run.timings["streams"] > 0
    assert run.embeddings == {}  # prosody makes none
    assert not hasattr(analyzer, "last_embeddings") and not hasattr(analyzer, "last_timings")
    assert run.result.segments[0].prosody is not None


def test_one_analyzer_serves_threads_each_call_gets_its_own_result() -> None:
    cfg = load_config(overrides={**ONLY_PROSODY, "fusion.enabled": False,
                                 "runtime.parallel_streams": False})
    analyzer = Analyzer(cfg).load()
    voices = {f0: _voice(f0) for f0 in (110.0, 160.0, 220.0, 300.0)}
    serial = {f0: analyzer.process_signal(y, SR, name=str(f0)) for f0, y in voices.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip(voices, pool.map(lambda kv: analyzer.run_signal(kv[1], SR,
                                                                          name=str(kv[0])),
                                         voices.items()), strict=True))
    for f0, run in runs.items():
        assert run.result.source.path == str(f0)
        got = [s.prosody.f0_mean_hz for s in run.result.segments]
        want = [s.prosody.f0_mean_hz for s in serial[f0].segments]
        assert got == pytest.approx(want, rel=1e-9)
        assert got[0] == pytest.approx(f0, rel=0.02)


def test_training_and_scoring_share_one_rule() -> None:
    """decision_function (training's matrix path) equals LinearHead.linear (scoring's
    per-feature path) on rows with missing values and values beyond z_clip."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"speaker_z.f0_mean_st": rng.normal(size=120),
                      "speaker_z.hnr_db": rng.normal(size=120)})
    y = (X["speaker_z.f0_mean_st"] + rng.normal(size=120) > 0).astype(int).to_numpy()
    model = FusionModel(cv=3, z_clip=2.0, calibration=None).fit(X, y)
    probe = pd.DataFrame({"speaker_z.f0_mean_st": [0.3, 50.0, np.nan, -40.0],
                          "speaker_z.hnr_db": [np.nan, 1.0, -0.5, 90.0]})
    matrix = model.decision_function(probe)
    head = model.head_
    for i, row in enumerate(probe.to_dict("records")):
        lin, _, _ = head.linear(row)
        assert lin == pytest.approx(matrix[i], abs=1e-9)
    # clipping bites: 50 and -40 give the same logit as ±z_clip
    edge = pd.DataFrame({"speaker_z.f0_mean_st": [50.0, 3.0],
                         "speaker_z.hnr_db": [1.0, 1.0]})
    big, clipped = model.decision_function(edge)
    assert big == pytest.approx(clipped)
