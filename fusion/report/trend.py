"""Longitudinal report: one speaker's sessions over time, against the speaker's own baseline.

Rules (kept deliberately simple; the page states them too):

* **Which sessions.** Every result given. With ``speaker``, results whose ``speaker_id`` names
  another speaker are left out (and listed); results without a ``speaker_id`` are taken as the
  named speaker's, because the user listed them. Without ``speaker``, all results must share one
  ``speaker_id`` (or have none).
* **Dates.** ``dates="auto"``: a date in the JSON file name, else in the audio file name
  (``YYYY-MM-DD`` or ``YYYYMMDD``, optionally followed by ``THHMM[SS]`` / ``_HHMM[SS]``), else
  the time of analysis (``analysed_at``). Each row says which. ``"name"`` requires a date in a
  name; ``"analysed"`` always uses ``analysed_at``.
* **Baseline.** The mean of the session means of the first ``baseline_n`` sessions (by date)
  that have a score; ``baseline_n=0`` uses the mean over all sessions. Change = session mean −
  baseline, in score units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from pydantic import ValidationError

from features.errors import InputFileError, ParameterError
from features.regular_file import open_regular, read_capped
from fusion.report import charts
from fusion.report.charts import TrendPanel, TrendPoint, nice_range
from fusion.report.render import (
    NOT_A_DIAGNOSIS,
    SCORE_TARGETS,
    _fmt_dt,
    environment,
    page_assets,
)
from fusion.schema import SessionResult

__all__ = ["load_result", "looks_like_result_json", "load_sessions", "session_date",
           "render_trend", "trend_context", "Session", "MAX_RESULT_BYTES"]

#: a result JSON larger than this is refused (a 4-hour session is a few MB)
MAX_RESULT_BYTES = 256 * 1024 * 1024

_DATE_RE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<sep>-?)(?P<m>\d{2})(?P=sep)(?P<d>\d{2})"
    r"(?:[T_ ](?P<H>\d{2})[-:h]?(?P<M>\d{2})(?:[-:m]?(?P<S>\d{2}))?)?(?!\d)")

_PROSODY_TRENDS = (
    ("f0_mean_hz", "F0 mean", "Hz", ".1f"),
    ("speech_rate_syl_per_s", "Speech rate", "syl/s", ".2f"),
    ("pause_ratio", "Pause ratio", "", ".2f"),
)


# ------------------------------------------------------------------------------ loading
def looks_like_result_json(path: str | Path) -> bool:
    """True when ``path`` is a saved analysis (JSON object), judged by suffix or content."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return True
    try:
        with open_regular(p, what="result") as fh:
            head = fh.read(64)
    except (InputFileError, OSError):
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def load_result(path: str | Path) -> SessionResult:
    """Read a result JSON written by ``vocalfusion analyze`` (or ``SessionResult.to_json``).

    Raises
    ------
    ParameterError
        The file is missing, too large, not JSON, or not a vocalfusion result (the message
        names the file and the first problems).
    """
    p = Path(path)
    try:
        data = read_capped(p, max_bytes=MAX_RESULT_BYTES, what="result")
    except InputFileError as exc:
        raise ParameterError(str(exc)) from None
    try:
        return SessionResult.from_json(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(x) for x in err["loc"]) or "(document)"
            problems.append(f"{loc}: {err['msg']}")
        raise ParameterError(f"{p}: not a vocalfusion result JSON ({'; '.join(problems)})"
                             ) from None


def _dates_in(name: str) -> datetime | None:
    for m in _DATE_RE.finditer(name):
        try:
            return datetime(int(m["y"]), int(m["m"]), int(m["d"]), int(m["H"] or 0),
                            int(m["M"] or 0), int(m["S"] or 0))
        except ValueError:
            continue
    return None


def session_date(result: SessionResult, json_path: str | Path | None = None, *,
                 dates: str = "auto") -> tuple[datetime, str]:
    """``(date, where it came from)`` of one session under the ``dates`` rule.

    The second item is ``"file name"``, ``"audio file name"`` or ``"analysed_at"``. Dates from
    names are naive (local time of the recording); ``analysed_at`` is shown in UTC.
    """
    if dates not in ("auto", "name", "analysed"):
        raise ParameterError(f"dates={dates!r} is not one of 'auto', 'name', 'analysed'")
    if dates != "analysed":
        if json_path is not None:
            d = _dates_in(PurePath(str(json_path)).name)
            if d is not None:
                return d, "file name"
        d = _dates_in(PurePath(result.source.path.replace("\\", "/")).name)
        if d is not None:
            return d, "audio file name"
        if dates == "name":
            raise ParameterError(
                f"{json_path or result.source.path}: no date (YYYY-MM-DD or YYYYMMDD) in the "
                "file name; rename the file or use --dates analysed")
    at = result.analysed_at
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at, "analysed_at"


@dataclass
class Session:
    """One session in a longitudinal report."""

    path: str
    result: SessionResult
    when: datetime
    date_source: str
    means: dict[str, float | None] = field(default_factory=dict)
    changes: dict[str, float | None] = field(default_factory=dict)
    in_baseline: bool = False
    prosody: dict[str, float | None] = field(default_factory=dict)


def load_sessions(paths: Sequence[str | Path], *, speaker: str | None = None
                  ) -> tuple[list[tuple[str, SessionResult]], list[tuple[str, str]]]:
    """Read result JSONs and select one speaker's sessions.

    Returns
    -------
    kept : list of (path, SessionResult)
    left_out : list of (path, reason)
    """
    loaded = [(str(p), load_result(p)) for p in paths]
    ids = sorted({r.speaker_id for _, r in loaded if r.speaker_id is not None})
    if speaker is None:
        if len(ids) > 1:
            raise ParameterError(
                f"the results belong to {len(ids)} speakers ({', '.join(ids[:5])}"
                f"{', …' if len(ids) > 5 else ''}); choose one with --speaker ID")
        return loaded, []
    kept, left_out = [], []
    for p, r in loaded:
        if r.speaker_id is not None and r.speaker_id != speaker:
            left_out.append((p, f"speaker {r.speaker_id!r}, not {speaker!r}"))
        else:
            kept.append((p, r))
    return kept, left_out


# ------------------------------------------------------------------------------ summary
def _weighted_mean(result: SessionResult, key: str) -> float | None:
    num = den = 0.0
    for seg in result.segments:
        v = getattr(seg.prosody, key) if seg.prosody is not None else None
        if isinstance(v, (int, float)) and math.isfinite(v):
            num += seg.duration_s * v
            den += seg.duration_s
    return num / den if den > 0 else None


def _build_sessions(items: Sequence[tuple[str, SessionResult]], *, dates: str,
                    baseline_n: int) -> tuple[list[Session], dict[str, float | None]]:
    sessions = []
    for path, r in items:
        when, source = session_date(r, path, dates=dates)
        s = Session(path=path, result=r, when=when, date_source=source)
        for key, _, _ in SCORE_TARGETS:
            summ = getattr(r.summary, key) if r.summary is not None else None
            s.means[key] = summ.mean if summ is not None else None
        s.prosody = {k: _weighted_mean(r, k) for k, *_ in _PROSODY_TRENDS}
        sessions.append(s)
    sessions.sort(key=lambda s: (s.when, s.path))
    baselines: dict[str, float | None] = {}
    for key, _, _ in SCORE_TARGETS:
        with_value = [s for s in sessions if s.means[key] is not None]
        base_set = with_value if baseline_n == 0 else with_value[:baseline_n]
        baselines[key] = (sum(s.means[key] for s in base_set) / len(base_set)  # type: ignore[misc]
                          if base_set else None)
        for s in base_set:
            s.in_baseline = True
        for s in sessions:
            m, b = s.means[key], baselines[key]
            s.changes[key] = m - b if m is not None and b is not None else None
    return sessions, baselines


def _comparability(sessions: Sequence[Session]) -> list[str]:
    notes = []

    def distinct(fn: Any) -> list[str]:
        return sorted({str(fn(s.result)) for s in sessions})

    models = distinct(lambda r: (r.fusion.model_name, r.fusion.model_sha256) if r.fusion
                      else None)
    if len(models) > 1:
        notes.append(f"The sessions were scored by {len(models)} different fusion models; "
                     "a change between sessions may come from the model, not the speaker.")
    configs = distinct(lambda r: r.config_hash)
    if len(configs) > 1:
        notes.append(f"The sessions were analysed with {len(configs)} different configurations "
                     f"(config hashes {', '.join(configs[:4])}{', …' if len(configs) > 4 else ''}"
                     "); compare with care.")
    versions = distinct(lambda r: r.package_version)
    if len(versions) > 1:
        notes.append("The sessions were analysed by different vocalfusion versions ("
                     + ", ".join(versions[:4]) + ").")
    not_ok = [s for s in sessions if str(s.result.status) != "ok"]
    if not_ok:
        notes.append(f"{len(not_ok)} session(s) had insufficient speech and carry no score.")
    return notes


# ------------------------------------------------------------------------------ charts
def _x_ticks(sessions: Sequence[Session], x_of: Any, left: float, right: float
             ) -> list[tuple[float, str]]:
    if not sessions:
        return []
    if len(sessions) <= 8:
        picks = sessions
    else:
        step = (len(sessions) - 1) / 7
        picks = [sessions[round(i * step)] for i in range(8)]
    out: list[tuple[float, str]] = []
    for s in picks:
        x = x_of(s)
        if out and abs(out[-1][0] - x) < 60:
            continue
        out.append((x, s.when.strftime("%Y-%m-%d")))
    return out


def _trend_panels(sessions: Sequence[Session], baselines: dict[str, float | None]
                  ) -> tuple[list[TrendPanel], float]:
    width, left, right = 960.0, 52.0, 24.0
    plot_w = width - left - right
    t0 = sessions[0].when if sessions else datetime(2000, 1, 1)
    span = (sessions[-1].when - t0).total_seconds() if sessions else 0.0
    distinct_times = len({s.when for s in sessions})

    def x_of(s: Session) -> float:
        if span > 0 and distinct_times == len(sessions):
            return round(left + 12 + (s.when - t0).total_seconds() / span * (plot_w - 24), 2)
        idx = sessions.index(s)  # equal dates: spread by order
        return round(left + 12 + (idx / max(1, len(sessions) - 1)) * (plot_w - 24), 2)

    xticks = _x_ticks(sessions, x_of, left, width - right)
    panels = []
    top = 22.0
    height = 150.0
    for key, label, colour in SCORE_TARGETS:
        def y_of(v: float, _top: float = top) -> float:
            return round(_top + (1 - min(max(v, 0.0), 1.0)) * height, 2)

        points = []
        pts_for_path: list[tuple[float, float] | None] = []
        for n, s in enumerate(sessions):
            v = s.means[key]
            summ = getattr(s.result.summary, key) if s.result.summary is not None else None
            x = x_of(s)
            tip = f"{s.when:%Y-%m-%d} · {PurePath(s.path).name} · {label} "
            if v is None:
                tip += "not scored"
            else:
                tip += f"mean {v:.2f}"
                if summ is not None and summ.p90 is not None:
                    tip += f", 90th percentile {summ.p90:.2f}"
                if s.changes[key] is not None:
                    tip += f", change vs baseline {s.changes[key]:+.2f}"
            points.append(TrendPoint(
                n=n, when=s.when, x=x, y=None if v is None else y_of(v), value=v,
                lo_y=None, hi_y=(y_of(summ.p90) if summ is not None and summ.p90 is not None
                                 and v is not None else None),
                tip=tip, label=f"{s.when:%Y-%m-%d}"))
            pts_for_path.append(None if v is None else (x, y_of(v)))
        b = baselines[key]
        panels.append(TrendPanel(
            key=key, label=label, colour=colour, top=top, height=height, points=points,
            baseline=b, baseline_y=None if b is None else y_of(b),
            path=" ".join(f"{'M' if i == 0 else 'L'}{p[0]:.1f},{p[1]:.1f}"
                          for i, p in enumerate(q for q in pts_for_path if q is not None)),
            yticks=[(y_of(v), f"{v:g}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
            xticks=xticks))
        top += height + 48
    return panels, top


def _prosody_trend(sessions: Sequence[Session]) -> list[dict[str, Any]]:
    rows = []
    for key, label, unit, spec in _PROSODY_TRENDS:
        values = [s.prosody.get(key) for s in sessions]
        lo, hi, _ = nice_range([v for v in values if v is not None], n_ticks=2)
        rows.append({"key": key, "label": label, "unit": unit, "spec": spec,
                     "values": values, "lo": lo, "hi": hi})
    return rows


# ------------------------------------------------------------------------------ render
def trend_context(items: Sequence[tuple[str | Path, SessionResult]], *,
                  speaker: str | None = None, baseline_n: int = 1, dates: str = "auto",
                  left_out: Sequence[tuple[str, str]] = (),
                  generated_at: datetime | None = None) -> dict[str, Any]:
    """Everything the trend template needs (no markup)."""
    if baseline_n < 0:
        raise ParameterError(f"baseline_n={baseline_n} must be ≥ 0 (0 = mean of all sessions)")
    if not items:
        raise ParameterError("a longitudinal report needs at least one session result")
    sessions, baselines = _build_sessions([(str(p), r) for p, r in items], dates=dates,
                                          baseline_n=baseline_n)
    if speaker is None:
        ids = {s.result.speaker_id for s in sessions if s.result.speaker_id}
        speaker = next(iter(ids)) if len(ids) == 1 else None
    panels, chart_h = _trend_panels(sessions, baselines)
    latest = {key: next((s for s in reversed(sessions) if s.means[key] is not None), None)
              for key, _, _ in SCORE_TARGETS}
    calib = sorted({s.result.fusion.calibration_status if s.result.fusion else
                    "no fusion scores" for s in sessions})
    any_calibrated = any(s.result.fusion and s.result.fusion.calibrated for s in sessions)
    return {
        "speaker": speaker,
        "sessions": sessions,
        "baselines": baselines,
        "baseline_n": baseline_n,
        "baseline_count": {key: sum(1 for s in sessions if s.in_baseline
                                    and s.means[key] is not None)
                           for key, _, _ in SCORE_TARGETS},
        "latest": latest,
        "n_scored": {key: sum(1 for s in sessions if s.means[key] is not None)
                     for key, _, _ in SCORE_TARGETS},
        "targets": SCORE_TARGETS,
        "panels": panels,
        "chart_h": chart_h,
        "chart_w": 960.0,
        "prosody": _prosody_trend(sessions),
        "notes": _comparability(sessions),
        "left_out": list(left_out),
        "dates": dates,
        "date_sources": sorted({s.date_source for s in sessions}),
        "first": sessions[0].when,
        "last": sessions[-1].when,
        "calibration": calib,
        "calibrated": any_calibrated,
        "not_a_diagnosis": NOT_A_DIAGNOSIS,
        "package_version": sessions[-1].result.package_version,
        "generated_at": _fmt_dt(generated_at or datetime.now(UTC)),
        "total_speech_s": sum(s.result.summary.speech_s for s in sessions
                              if s.result.summary is not None),
        "palette": charts.PALETTE,
        "file_name": lambda p: PurePath(str(p).replace("\\", "/")).name,
    }


def render_trend(items: Sequence[tuple[str | Path, SessionResult]], *,
                 speaker: str | None = None, baseline_n: int = 1, dates: str = "auto",
                 left_out: Sequence[tuple[str, str]] = (),
                 generated_at: datetime | None = None) -> str:
    """The HTML longitudinal report of one speaker's sessions.

    Parameters
    ----------
    items : sequence of (path, SessionResult)
        The sessions (``path`` is the result file; a date in its name dates the session).
    speaker : str, optional
        Shown in the title; use :func:`load_sessions` to select a speaker's results.
    baseline_n : int
        Sessions (earliest first) whose mean forms the baseline; 0 = all sessions.
    dates : {"auto", "name", "analysed"}
        Where session dates come from (see the module docstring).
    left_out : sequence of (path, reason)
        Results that were not included, listed on the page.

    Returns
    -------
    str
        A complete HTML document.
    """
    ctx = trend_context(items, speaker=speaker, baseline_n=baseline_n, dates=dates,
                        left_out=left_out, generated_at=generated_at)
    return environment().get_template("trend.html").render(**ctx, **page_assets())
