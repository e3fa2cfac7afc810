"""Geometry of the report's inline SVG charts.

Pure functions that turn numbers into coordinates, ticks and short tooltip strings. They return
plain dataclasses; the jinja templates write the SVG elements, so every string that reaches the
page passes through jinja's autoescaping. Nothing here builds markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "PALETTE",
    "EMOTION_COLOURS",
    "emotion_colour",
    "nice_time_step",
    "time_ticks",
    "nice_range",
    "format_clock",
    "Frame",
    "Bar",
    "ScorePanel",
    "StackedColumn",
    "StepSeries",
    "LinePanel",
    "DivergingBar",
    "TrendPoint",
    "TrendPanel",
]

#: Okabe & Ito (2008) colour-blind-safe palette (plus neutral greys).
PALETTE = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
    "grey": "#9AA3AE",
}

EMOTION_COLOURS = {
    "neutral": "#BFC5CD",
    "calm": PALETTE["sky"],
    "happy": PALETTE["yellow"],
    "sad": PALETTE["blue"],
    "angry": PALETTE["vermillion"],
    "fearful": PALETTE["purple"],
    "disgust": PALETTE["green"],
    "surprised": PALETTE["orange"],
}
_EXTRA_COLOURS = ("#4D4D4D", "#8C6D31", "#7F7F7F", "#3B6E8F")


def emotion_colour(label: str, position: int) -> str:
    """Colour of an emotion label; labels outside the canonical set get fixed extra colours."""
    return EMOTION_COLOURS.get(label, _EXTRA_COLOURS[position % len(_EXTRA_COLOURS)])


# ------------------------------------------------------------------------------------ axes
_TIME_STEPS_S = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def nice_time_step(duration_s: float, max_ticks: int = 10) -> float:
    """Smallest 'round' step (s) that puts at most ``max_ticks`` ticks on ``[0, duration_s]``."""
    for step in _TIME_STEPS_S:
        if duration_s / step <= max_ticks:
            return float(step)
    return float(math.ceil(duration_s / max_ticks / 3600.0) * 3600)


def format_clock(t_s: float, *, decimals: int = 0) -> str:
    """``75.3`` → ``'1:15'`` (``decimals=1`` → ``'1:15.3'``); hours when needed."""
    if t_s is None or not math.isfinite(t_s):
        return "—"
    t = max(0.0, t_s)
    h, rem = divmod(t, 3600.0)
    m, s = divmod(rem, 60.0)
    if decimals:
        sec = f"{s:0{3 + decimals}.{decimals}f}"
        if sec.startswith("60"):  # rounding carried into the next minute
            return format_clock(round(t, decimals), decimals=decimals)
    else:
        sec = f"{int(s):02d}"
    return f"{int(h)}:{int(m):02d}:{sec}" if h >= 1 else f"{int(m)}:{sec}"


def time_ticks(duration_s: float, max_ticks: int = 10) -> list[tuple[float, str]]:
    """``(t_s, label)`` ticks on ``[0, duration_s]``."""
    if duration_s <= 0:
        return [(0.0, "0:00")]
    step = nice_time_step(duration_s, max_ticks)
    n = int(math.floor(duration_s / step + 1e-9))
    dec = 1 if step < 1 else 0
    return [(i * step, format_clock(i * step, decimals=dec)) for i in range(n + 1)]


def nice_range(values: Sequence[float], *, n_ticks: int = 4,
               floor: float | None = None) -> tuple[float, float, list[float]]:
    """A padded ``(lo, hi, ticks)`` range with round tick values covering ``values``."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0, [0.0, 0.5, 1.0]
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, n_ticks)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    lo_t = math.floor(lo / step) * step
    hi_t = math.ceil(hi / step) * step
    if floor is not None:
        lo_t = max(lo_t, floor)
    ticks = []
    k = 0
    while lo_t + k * step <= hi_t + 1e-9 and k < 50:
        ticks.append(round(lo_t + k * step, 10))
        k += 1
    return lo_t, hi_t, ticks


@dataclass(frozen=True)
class Frame:
    """Horizontal layout shared by every time chart of a page (SVG user units)."""

    width: float = 960.0
    left: float = 52.0
    right: float = 14.0
    duration_s: float = 1.0

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    def x(self, t_s: float) -> float:
        d = self.duration_s if self.duration_s > 0 else 1.0
        return round(self.left + min(max(t_s, 0.0), d) / d * self.plot_w, 2)

    def ticks(self) -> list[tuple[float, str]]:
        return [(self.x(t), label) for t, label in time_ticks(self.duration_s)]

    def span(self, start_s: float, end_s: float, *, gap: float = 1.0) -> tuple[float, float]:
        """``(x, width)`` of ``[start_s, end_s)``, less ``gap`` units so that touching
        segments stay visibly apart; never narrower than 0.8 units."""
        x = self.x(start_s)
        w = self.x(end_s) - x
        if w > 3 * gap:
            w -= gap
        return x, round(max(w, 0.8), 2)


# ------------------------------------------------------------------------------------ scores
@dataclass
class Bar:
    """One segment in a score panel."""

    i: int
    start_s: float
    end_s: float
    x: float
    w: float
    y: float = 0.0
    h: float = 0.0
    value: float | None = None
    opacity: float = 1.0
    tip: str = ""


@dataclass
class ScorePanel:
    """A 0–1 score over time: one column per segment, opacity = confidence."""

    key: str
    label: str
    colour: str
    top: float
    height: float
    threshold: float | None
    bars: list[Bar] = field(default_factory=list)
    missing: list[Bar] = field(default_factory=list)

    def y(self, v: float) -> float:
        return round(self.top + (1.0 - min(max(v, 0.0), 1.0)) * self.height, 2)

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def yticks(self) -> list[tuple[float, str]]:
        return [(self.y(v), f"{v:.2g}" if v not in (0, 1) else str(int(v)))
                for v in (0.0, 0.25, 0.5, 0.75, 1.0)]

    @property
    def threshold_y(self) -> float | None:
        return None if self.threshold is None else self.y(self.threshold)


def confidence_opacity(confidence: float | None) -> float:
    """Fill opacity for a confidence in [0, 1]: 0.18 (none) … 0.9 (full)."""
    c = 0.0 if confidence is None or not math.isfinite(confidence) else min(max(confidence, 0), 1)
    return round(0.18 + 0.72 * c, 3)


# ------------------------------------------------------------------------------------ emotion
@dataclass
class StackRect:
    label: str
    colour: str
    y: float
    h: float
    p: float


@dataclass
class StackedColumn:
    i: int
    start_s: float
    end_s: float
    x: float
    w: float
    rects: list[StackRect]
    tip: str


# ------------------------------------------------------------------------------------ lines
@dataclass
class Step:
    """A per-segment value drawn from ``x1`` to ``x2`` at height ``y``."""

    i: int
    start_s: float
    end_s: float
    x1: float
    x2: float
    y: float
    value: float
    tip: str
    band: tuple[float, float] | None = None  # (y_hi, y_lo) in SVG units


@dataclass
class StepSeries:
    key: str
    label: str
    colour: str
    steps: list[Step] = field(default_factory=list)
    path: str = ""  # polyline through the midpoints, broken where values are missing


@dataclass
class LinePanel:
    """A small chart of one or more per-segment measures over time."""

    key: str
    title: str
    unit: str
    top: float
    height: float
    lo: float
    hi: float
    yticks: list[tuple[float, str]]
    series: list[StepSeries]
    n_missing: int = 0
    note: str = ""

    def y(self, v: float) -> float:
        span = self.hi - self.lo or 1.0
        return round(self.top + (1.0 - (v - self.lo) / span) * self.height, 2)

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def empty(self) -> bool:
        return not any(s.steps for s in self.series)


def midpoint_path(points: Sequence[tuple[float, float] | None]) -> str:
    """SVG path ``d`` through points; ``None`` breaks the line (a missing value)."""
    parts: list[str] = []
    pen_down = False
    for pt in points:
        if pt is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{pt[0]:.1f},{pt[1]:.1f}")
        pen_down = True
    return " ".join(parts)


# ------------------------------------------------------------------------------------ drivers
@dataclass
class DivergingBar:
    """A signed contribution (log-odds) drawn left (lowers) or right (raises) of zero."""

    name: str
    label: str
    value: float
    x: float
    w: float
    direction: str  # "up" | "down"
    ref: str | None = None  # what the feature was z-scored against


def diverging(items: Sequence[tuple[str, str, float]], *, width: float = 300.0,
              refs: dict[str, str | None] | None = None
              ) -> tuple[list[DivergingBar], float, float]:
    """Bars for ``(name, label, value)``; returns (bars, zero_x, max_abs)."""
    max_abs = max((abs(v) for _, _, v in items), default=0.0) or 1.0
    half = width / 2.0
    bars = []
    refs = refs or {}
    for name, label, v in items:
        w = round(abs(v) / max_abs * (half - 4), 2)
        x = half if v >= 0 else half - w
        bars.append(DivergingBar(name=name, label=label, value=v, x=round(x, 2), w=w,
                                 direction="up" if v >= 0 else "down", ref=refs.get(name)))
    return bars, half, max_abs


# ------------------------------------------------------------------------------------ trend
@dataclass
class TrendPoint:
    n: int
    when: datetime
    x: float
    y: float | None
    value: float | None
    lo_y: float | None
    hi_y: float | None
    tip: str
    label: str


@dataclass
class TrendPanel:
    key: str
    label: str
    colour: str
    top: float
    height: float
    points: list[TrendPoint]
    baseline: float | None
    baseline_y: float | None
    path: str
    yticks: list[tuple[float, str]]
    xticks: list[tuple[float, str]]

    @property
    def bottom(self) -> float:
        return self.top + self.height
