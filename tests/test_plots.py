"""Plots from Python: ``result.plot()`` and ``fusion.plot.trend`` render non-empty figures.

Rendered with the Agg backend (no display). Skipped when matplotlib (the ``plot`` extra) is not
installed. Audio: the bundled JFK recording (real speech), prosody and fusion only.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fusion.schema import SessionResult

ROOT = Path(__file__).resolve().parents[1]
PROSODY_ONLY = {"emotion.enabled": False, "transcript.enabled": False,
                "sentiment.enabled": False}


def _pixels(fig: object) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # type: ignore[arg-type]
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float)


def _assert_drawn(img: np.ndarray) -> None:
    assert img.std() > 10.0  # not a blank canvas
    assert np.mean(img.sum(axis=2) < 600) > 0.01  # more than a frame of non-white pixels


@pytest.fixture(scope="module")
def result(jfk_path: Path) -> SessionResult:
    pytest.importorskip("matplotlib")
    import fusion

    return fusion.analyze(jfk_path, contours=True, overrides=PROSODY_ONLY)


def test_import_fusion_does_not_import_matplotlib() -> None:
    code = ("import sys, fusion, fusion.plot; fusion.SessionResult; fusion.analyze; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_result_plot_renders_three_panels(result: SessionResult) -> None:
    fig = result.plot()
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    scores, f0, contrib = fig.axes[:3]
    assert len(fig.axes) == 3
    assert any(len(line.get_xdata()) for line in scores.get_lines())  # scores drawn
    f0_points = max(len(line.get_xdata()) for line in f0.get_lines())
    assert f0_points == len(result.contours())  # the 10-ms F0 frames
    assert len(contrib.patches) >= 2  # a bar per stream and score
    _assert_drawn(_pixels(fig))


def test_plot_without_contours_draws_segment_f0(result: SessionResult) -> None:
    plain = SessionResult.from_json(result.to_json())
    fig = plain.plot(width_in=6.0, height_in=5.0)
    img = _pixels(fig)
    _assert_drawn(img)
    assert img.shape[:2] == (500, 600)  # 100 dpi
    assert not np.array_equal(img, _pixels(result.plot(width_in=6.0, height_in=5.0)))


def test_trend_plots_sessions_over_time(result: SessionResult, tmp_path: Path) -> None:
    import fusion

    path = tmp_path / "a.json"
    path.write_text(result.to_json())
    day = datetime(2026, 1, 1)
    fig = fusion.plot.trend([result, path, result], dates=[day + timedelta(days=d)
                                                            for d in (0, 7, 14)])
    assert len(fig.axes) == 2
    assert [len(line.get_xdata()) for line in fig.axes[0].get_lines()] == [3, 3]
    _assert_drawn(_pixels(fig))
    from features.errors import ParameterError

    with pytest.raises(ParameterError, match="dates"):
        fusion.plot.trend([result], dates=[day, day])
    with pytest.raises(ParameterError, match="at least one"):
        fusion.plot.trend([])
