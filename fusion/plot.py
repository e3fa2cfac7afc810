"""Plots from Python (matplotlib, the ``vocalfusion[plot]`` extra): the pictures the HTML report
draws, as matplotlib :class:`~matplotlib.figure.Figure` objects for notebooks and papers.

* :func:`session` (also ``result.plot()``): one figure of one result — scores over time with
  their confidence, F0 with the segments (and speakers), and each stream's contribution to the
  scores.
* :func:`trend`: sessions over time (mean stress, depression probability and F0 per session).

Figures are made with :class:`matplotlib.figure.Figure` directly (not ``pyplot``): no global
state, no window, any backend. ``import fusion`` never imports matplotlib; this module imports
it when a function is called. It reads only the result models (the base layer), so
:meth:`fusion.schema.SessionResult.plot` can reach it.

Examples
--------
>>> import fusion, fusion.plot                               # doctest: +SKIP
>>> fig = fusion.analyze("examples/jfk.flac").plot()        # doctest: +SKIP
>>> fig.savefig("jfk.png", dpi=150)                         # doctest: +SKIP
>>> fusion.plot.trend(["week1.json", "week2.json"]).savefig("trend.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ModelUnavailable, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from fusion.schema import SessionResult

__all__ = ["session", "trend", "PLOT_INSTALL"]

PLOT_INSTALL = 'pip install "vocalfusion[plot]"'
#: Okabe & Ito (2008) colour-blind-safe colours (as the HTML report)
_COLOURS = {"stress": "#D55E00", "depression": "#0072B2", "f0": "#009E73",
            "segment": "#999999"}
_CYCLE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


def _figure(width_in: float, height_in: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModelUnavailable(f"plots need matplotlib: {PLOT_INSTALL} ({exc})") from exc
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _speakers(result: SessionResult) -> list[str | None]:
    out: list[str | None] = []
    for seg in result.segments:
        sp = getattr(seg, "speaker", None)  # a field only where the result has speakers
        out.append(None if sp is None else str(sp))
    return out


def _scores_axis(ax: Any, result: SessionResult) -> None:
    drawn = False
    for key in ("stress", "depression"):
        for seg in result.segments:
            detail = getattr(seg.scores, key, None) if seg.scores is not None else None
            if detail is None or detail.value is None:
                continue
            drawn = True
            alpha = 0.15 + 0.6 * float(detail.confidence)
            ax.fill_between([seg.start_s, seg.end_s], 0, detail.value,
                            color=_COLOURS[key], alpha=alpha * 0.4, linewidth=0)
            ax.plot([seg.start_s, seg.end_s], [detail.value, detail.value],
                    color=_COLOURS[key], alpha=alpha, linewidth=2.5)
        ax.plot([], [], color=_COLOURS[key], linewidth=2.5,
                label="stress" if key == "stress" else "depression probability")
    status = result.fusion.calibration_status if result.fusion is not None else None
    ax.set_title("Scores per segment (opacity = confidence)"
                 + (f" — {status}" if status else ""), fontsize=9, loc="left")
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    if drawn:
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no scores (fusion disabled, or too little speech)",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="#555555")


def _f0_axis(ax: Any, result: SessionResult) -> None:
    speakers = _speakers(result)
    labels = sorted({s for s in speakers if s is not None})
    colour = {s: _CYCLE[i % len(_CYCLE)] for i, s in enumerate(labels)}
    for seg, sp in zip(result.segments, speakers, strict=True):
        ax.axvspan(seg.start_s, seg.end_s, color=colour.get(sp, _COLOURS["segment"]) if sp
                   else _COLOURS["segment"], alpha=0.15, linewidth=0)
    for sp in labels:
        ax.plot([], [], color=colour[sp], linewidth=6, alpha=0.3, label=f"speaker {sp}")
    if result.has_contours:
        df = result.contours()
        t = df.index.get_level_values("time").total_seconds().to_numpy()
        ax.plot(t, df["f0_hz"].to_numpy(), ".", markersize=1.5, color=_COLOURS["f0"],
                label="F0 (10-ms frames)")
    else:
        for seg in result.segments:
            pr = seg.prosody
            if pr is None or pr.f0_mean_hz is None:
                continue
            sd = pr.f0_sd_hz or 0.0
            ax.fill_between([seg.start_s, seg.end_s], pr.f0_mean_hz - sd, pr.f0_mean_hz + sd,
                            color=_COLOURS["f0"], alpha=0.25, linewidth=0)
            ax.plot([seg.start_s, seg.end_s], [pr.f0_mean_hz] * 2, color=_COLOURS["f0"],
                    linewidth=2)
        ax.plot([], [], color=_COLOURS["f0"], linewidth=2, label="F0 mean ± SD per segment")
    ax.set_title("F0 and segments", fontsize=9, loc="left")
    ax.set_ylabel("F0 (Hz)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=8, frameon=False)


def _contributions(result: SessionResult, key: str) -> dict[str, float]:
    """Duration-weighted mean log-odds contribution of each stream to score ``key``."""
    total: dict[str, float] = {}
    weight = 0.0
    for seg in result.segments:
        detail = getattr(seg.scores, key, None) if seg.scores is not None else None
        if detail is None or detail.value is None:
            continue
        w = seg.end_s - seg.start_s
        weight += w
        for name, v in detail.contributions.items():
            if name != "intercept" and np.isfinite(v):
                total[name] = total.get(name, 0.0) + w * v
    return {k: v / weight for k, v in total.items()} if weight > 0 else {}


def _contributions_axis(ax: Any, result: SessionResult) -> None:
    stress, depression = _contributions(result, "stress"), _contributions(result, "depression")
    names = sorted(set(stress) | set(depression))
    ax.set_title("Per-stream contribution (log-odds, mean over scored speech)", fontsize=9,
                 loc="left")
    if not names:
        ax.text(0.5, 0.5, "no contributions (no scores)", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="#555555")
        ax.set_yticks([])
        return
    y = np.arange(len(names), dtype=float)
    ax.barh(y - 0.2, [stress.get(n, 0.0) for n in names], height=0.4,
            color=_COLOURS["stress"], label="stress")
    ax.barh(y + 0.2, [depression.get(n, 0.0) for n in names], height=0.4,
            color=_COLOURS["depression"], label="depression")
    ax.axvline(0.0, color="#333333", linewidth=0.8)
    ax.set_yticks(y, names)
    ax.legend(loc="lower right", fontsize=8, frameon=False)


def session(result: SessionResult, *, width_in: float = 10.0, height_in: float = 7.5) -> Any:
    """One figure of one result: scores over time, F0 with segments, stream contributions.

    Parameters
    ----------
    result : SessionResult
        A result; with contours (``analyze(..., contours=True)``) the F0 panel draws the
        10-ms F0 frames, otherwise each segment's mean ± SD.
    width_in, height_in : float
        Figure size (inches).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelUnavailable
        matplotlib is not installed (the message says ``pip install "vocalfusion[plot]"``).
    """
    fig = _figure(width_in, height_in)
    ax_scores, ax_f0, ax_contrib = fig.subplots(
        3, 1, gridspec_kw={"height_ratios": [1.2, 1.2, 1.0]})
    ax_f0.sharex(ax_scores)
    _scores_axis(ax_scores, result)
    _f0_axis(ax_f0, result)
    _contributions_axis(ax_contrib, result)
    ax_scores.set_xlim(0.0, max(result.source.duration_s, 1e-3))
    fig.suptitle(os.path.basename(result.source.path) or result.source.path, fontsize=10)
    return fig


def _as_result(item: Any) -> SessionResult:
    from fusion.schema import SessionResult

    if isinstance(item, SessionResult):
        return item
    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as fh:
            return SessionResult.from_json(fh.read())
    raise ParameterError(f"trend() takes SessionResult objects or result JSON paths; got "
                         f"{type(item).__name__}")


def _mean_f0(result: SessionResult) -> float | None:
    num = den = 0.0
    for seg in result.segments:
        if seg.prosody is not None and seg.prosody.f0_mean_hz is not None:
            w = seg.end_s - seg.start_s
            num += w * seg.prosody.f0_mean_hz
            den += w
    return num / den if den > 0 else None


def trend(results: Sequence[Any], *, dates: Sequence[datetime] | None = None,
          width_in: float = 9.0, height_in: float = 5.5) -> Any:
    """Sessions over time: mean stress, depression probability and F0 per session.

    Parameters
    ----------
    results : sequence of SessionResult or path
        Results, or paths of result JSON files.
    dates : sequence of datetime, optional
        The date of each session; default each result's ``analysed_at``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ParameterError
        No results, or ``dates`` of another length.
    ModelUnavailable
        matplotlib is not installed.
    """
    items = [_as_result(r) for r in results]
    if not items:
        raise ParameterError("trend() needs at least one result")
    when = list(dates) if dates is not None else [r.analysed_at for r in items]
    if len(when) != len(items):
        raise ParameterError(f"dates has {len(when)} entries for {len(items)} results")
    order = sorted(range(len(items)), key=lambda i: when[i])
    x = [when[i] for i in order]
    fig = _figure(width_in, height_in)
    ax_scores, ax_f0 = fig.subplots(2, 1, sharex=True)
    for key, label in (("stress", "stress (mean)"), ("depression", "depression prob. (mean)")):
        ys = []
        for i in order:
            summ = getattr(items[i].summary, key, None) if items[i].summary else None
            ys.append(np.nan if summ is None or summ.mean is None else summ.mean)
        ax_scores.plot(x, ys, "o-", color=_COLOURS[key], label=label)
    ax_scores.set_ylim(0, 1)
    ax_scores.set_ylabel("score")
    ax_scores.set_title("Sessions over time (scores: uncalibrated prior unless a calibrated "
                        "model was used)", fontsize=9, loc="left")
    ax_scores.legend(loc="upper right", fontsize=8, frameon=False)
    f0 = [_mean_f0(items[i]) for i in order]
    ax_f0.plot(x, [np.nan if v is None else v for v in f0], "s-", color=_COLOURS["f0"])
    ax_f0.set_ylabel("F0 mean (Hz)")
    ax_f0.set_xlabel("session date")
    ax_f0.tick_params(axis="x", labelrotation=30)
    return fig
