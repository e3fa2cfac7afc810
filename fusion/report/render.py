"""Render a :class:`~fusion.schema.SessionResult` as one self-contained HTML page.

The page has no external resources: CSS and the small script are inline, charts are inline SVG
and the optional audio is a ``data:`` URI. A Content-Security-Policy meta tag makes the browser
refuse anything else. Templates are rendered with jinja2 autoescaping on; every string that
comes from the audio, the transcript or a model (file names, words, warnings, reasons, labels)
is escaped, and the script reads its inputs from ``data-`` attributes only.

Examples
--------
>>> import fusion
>>> from fusion.report import render_session
>>> result = fusion.analyze("examples/jfk.flac")        # doctest: +SKIP
>>> html = render_session(result)                        # doctest: +SKIP
>>> open("jfk.html", "w", encoding="utf-8").write(html)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from fusion.report import charts
from fusion.report.charts import (
    Bar,
    Frame,
    LinePanel,
    ScorePanel,
    StackedColumn,
    StackRect,
    Step,
    StepSeries,
    confidence_opacity,
    format_clock,
    midpoint_path,
    nice_range,
)
from fusion.report.labels import (
    CONTRIBUTION_TITLES,
    display_number,
    feature_label,
    feature_label_parts,
    json_number,
    measure_label,
    stream_titles,
)
from fusion.schema import ScoreDetail, ScoreSummary, SegmentResult, SessionResult

__all__ = ["render_session", "session_context", "EmbeddedAudio", "environment",
           "content_security_policy", "NOT_A_DIAGNOSIS"]

_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"

#: the plain statement shown on every page
NOT_A_DIAGNOSIS = (
    "These scores are research measurements of how the recorded voice and words compare "
    "with published findings. They are not a diagnosis, not a cortisol or clinical test, and "
    "must not be used on their own to make decisions about a person.")

SCORE_TARGETS = (
    ("stress", "Stress index", charts.PALETTE["vermillion"]),
    ("depression", "Depression probability", charts.PALETTE["blue"]),
)
SENTIMENT_COLOURS = {"negative": "#B8579A", "neutral": "#A3AAB4", "positive": "#009E73"}


@dataclass(frozen=True)
class EmbeddedAudio:
    """Audio to place inside the page."""

    mime: str  # "audio/ogg" or "audio/wav"
    data: bytes
    note: str = ""  # e.g. "Opus 24 kbit/s, 16 kHz mono"

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


# ------------------------------------------------------------------------------ environment
@lru_cache(maxsize=1)
def environment() -> Environment:
    """The jinja2 environment: autoescape always on, undefined names are errors."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["num"] = _num_filter
    env.filters["pct"] = _pct_filter
    env.filters["clock"] = lambda t, d=1: format_clock(t, decimals=d)
    env.filters["signed"] = lambda v, spec=".2f": "—" if v is None else format(v, "+" + spec)
    return env


def _num_filter(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def _pct_filter(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v * 100:.{digits}f} %"


@lru_cache(maxsize=4)
def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def content_security_policy(script: str) -> str:
    """The page's CSP: nothing may load; only our own inline script (by hash) may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return ("default-src 'none'; "
            f"script-src 'sha256-{digest}'; "
            "style-src 'unsafe-inline'; img-src data:; media-src data:; font-src 'none'; "
            "connect-src 'none'; base-uri 'none'; form-action 'none'")


def page_assets() -> dict[str, Any]:
    """CSS, script and CSP shared by every page (our own files, never user content)."""
    script = _static("report.js")
    css = _static("report.css")
    if "</" in script or "</" in css:  # would end the <script>/<style> element early
        raise RuntimeError("report.js/report.css must not contain '</'")
    # our own package files, never user content: safe to insert verbatim
    return {"css": Markup(css), "script": Markup(script),  # noqa: S704
            "csp": content_security_policy(script)}


# ------------------------------------------------------------------------------ public API
def render_session(result: SessionResult, *, audio: EmbeddedAudio | None = None,
                   generated_at: datetime | None = None) -> str:
    """The HTML report of one analysed session.

    Parameters
    ----------
    result : SessionResult
        A complete or partial analysis (skipped streams and missing scores are shown as such).
    audio : EmbeddedAudio, optional
        Audio to embed; clicking a segment then plays it (see :func:`fusion.report.encode_audio`).
    generated_at : datetime, optional
        Time stamp printed in the footer (default: now, UTC).

    Returns
    -------
    str
        A complete HTML document.
    """
    ctx = session_context(result, audio=audio, generated_at=generated_at)
    return environment().get_template("session.html").render(**ctx, **page_assets())


def session_context(result: SessionResult, *, audio: EmbeddedAudio | None = None,
                    generated_at: datetime | None = None) -> dict[str, Any]:
    """Everything the session template needs, computed from ``result`` (no markup).

    The result's ``privacy`` settings hold: the page shows what its JSON would carry (hashed
    or shortened paths, no transcript text when redacted, no voiceprints).
    """
    result = result.with_privacy()
    duration = max(result.source.duration_s, max((s.end_s for s in result.segments), default=0))
    frame = Frame(duration_s=duration if duration > 0 else 1.0)
    mini = Frame(width=480.0, left=40.0, right=10.0, duration_s=frame.duration_s)
    scored = _scored_speech_s(result.segments)
    return {
        "r": result,
        "package_version": result.package_version,
        "meta": _meta(result),
        "calibration": _calibration(result),
        "not_a_diagnosis": NOT_A_DIAGNOSIS,
        "streams": _streams(result),
        "missing_evidence": [s for s in _streams(result)
                             if s["status"] != "ok" and _feeds_scores(s["name"])],
        "cards": _cards(result, scored),
        "coverage_extra": _coverage_extra(result),
        "no_scores_reason": _no_scores_reason(result),
        "frame": frame,
        "speech": [(*frame.span(s.start_s, s.end_s), _speaker_colour(result, s.speaker))
                   for s in result.segments],
        "speakers": _speakers(result),
        "score_panels": _score_panels(result, frame),
        "sentiment_strip": _sentiment_strip(result, frame),
        "emotion": _emotion(result, frame),
        "mini_frame": mini,
        "prosody_panels": _prosody_panels(result, mini),
        "drivers": _drivers(result),
        "transcript": _transcript(result),
        "table": _table(result),
        "warnings": list(result.warnings),
        "config_json": json.dumps(result.config, indent=2, sort_keys=True, ensure_ascii=False),
        "audio": audio,
        "audio_uri": audio.data_uri if audio else None,
        "generated_at": _fmt_dt(generated_at or datetime.now(UTC)),
        "palette": charts.PALETTE,
        "sentiment_colours": SENTIMENT_COLOURS,
    }


# ------------------------------------------------------------------------------ speakers
#: speaker colours (Okabe–Ito, skipping the score colours vermillion and blue)
SPEAKER_COLOURS = ("#E69F00", "#009E73", "#56B4E9", "#CC79A7", "#F0E442", "#000000")


def _speaker_names(r: SessionResult) -> list[str]:
    """Speaker names as segments carry them (speaker_id or label), focus first."""
    return [s.speaker_id or s.label for s in r.speakers]


def _speaker_colour(r: SessionResult, name: str | None) -> str | None:
    """The colour of speaker ``name``; ``None`` with one speaker (the page stays as it was)."""
    names = _speaker_names(r)
    if len(names) < 2 or name not in names:
        return None
    return SPEAKER_COLOURS[names.index(name) % len(SPEAKER_COLOURS)]


def _speakers(r: SessionResult) -> list[dict[str, Any]]:
    """One card per speaker, the focus speaker first (only for two or more speakers)."""
    if len(r.speakers) < 2:
        return []
    out = []
    for spk in r.speakers:
        name = spk.speaker_id or spk.label
        summ = spk.summary
        st = summ.stress if summ else None
        dep = summ.depression if summ else None
        out.append({
            "name": name, "label": spk.label, "colour": _speaker_colour(r, name),
            "focus": spk.focus, "speech_s": spk.speech_s, "n_segments": spk.n_segments,
            "stress": st.mean if st else None, "stress_reference": st.reference if st else None,
            "stress_above": st.fraction_above_threshold if st else None,
            "depression": dep.mean if dep else None,
            "matches_profile": spk.matches_profile, "similarity": spk.profile_similarity,
        })
    return out


# ------------------------------------------------------------------------------ header
def _fmt_dt(dt: datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.strftime("%Y-%m-%d %H:%M")


def _file_name(path: str) -> str:
    # the name as given; both separators, since results move between systems
    name = PurePath(path.replace("\\", "/")).name
    return name or path


def _meta(r: SessionResult) -> dict[str, Any]:
    s = r.summary
    # the whole recording's detected speech: with speakers, the summary holds the focus
    # speaker's share only
    speech_s = float(sum(seg.duration_s for seg in r.segments)) if r.segments else \
        (s.speech_s if s else 0.0)
    return {
        "file_name": _file_name(r.source.path),
        "path": r.source.path,
        "duration_s": r.source.duration_s,
        "speech_s": speech_s,
        "speech_fraction": speech_s / r.source.duration_s if r.source.duration_s > 0 else None,
        "n_segments": len(r.segments),
        "analysed_at": _fmt_dt(r.analysed_at),
        "status": str(r.status),
        "ok": str(r.status) == "ok",
        "speaker_id": r.speaker_id,
        "source": r.source,
    }


def _calibration(r: SessionResult) -> dict[str, Any]:
    if r.fusion is None:
        return {"text": "no fusion scores — the fusion model did not run", "calibrated": None,
                "model": None, "tone": "muted"}
    return {"text": r.fusion.calibration_status, "calibrated": r.fusion.calibrated,
            "model": r.fusion.model_name, "tone": "ok" if r.fusion.calibrated else "warn"}


def _model_text(prov: Any) -> str:
    if prov is None:
        return ""
    parts = [prov.backend]
    if prov.library_version:
        lib = prov.library_version
        parts[0] = lib if lib.lower().startswith(prov.backend.lower()) else f"{prov.backend} {lib}"
    if prov.model_id:
        parts.append(prov.model_id + (f"@{prov.revision}" if prov.revision else ""))
    elif prov.revision:
        parts.append(f"@{prov.revision}")
    return " · ".join(parts)


def _shorten(text: str | None, limit: int = 160) -> str | None:
    """The start of a long message, cut at a word (``None`` when it is short already)."""
    if text is None or len(text) <= limit:
        return None
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + " …"


def _streams(r: SessionResult) -> list[dict[str, Any]]:
    cov = r.summary.coverage if r.summary else {}
    titles = stream_titles()
    names = list(titles) + [n for n in r.streams if n not in titles]
    out: list[dict[str, Any]] = []
    for name in names:
        info = r.streams.get(name)
        if info is None:
            if name not in titles:
                continue
            out.append({"name": name, "title": titles[name][0],
                        "short": titles[name][1], "status": "absent",
                        "reason": "not run (no record of this stream in the result)",
                        "reason_short": None,
                        "model": "", "prov": None, "warnings": [], "elapsed_s": None,
                        "coverage": cov.get(name)})
            continue
        out.append({"name": name, "title": titles.get(name, (name, name))[0],
                    "short": titles.get(name, (name, name))[1],
                    "status": str(info.status), "reason": info.reason,
                    "reason_short": _shorten(info.reason),
                    "model": _model_text(info.provenance), "prov": info.provenance,
                    "warnings": list(info.warnings), "elapsed_s": info.elapsed_s,
                    "coverage": cov.get(name)})
    return out


def _feeds_scores(name: str) -> bool:
    """Whether the scores read stream ``name`` (or a stream they read requires it): an
    optional stream they never read (e.g. ``egemaps``) is no missing evidence when it is off."""
    from features.registry import stream_names, stream_spec
    from fusion.scoring.vector import FUSION_STREAMS

    if name in FUSION_STREAMS or name not in stream_names():
        return True
    return any(name in stream_spec(s).requires for s in FUSION_STREAMS if s in stream_names())


# ------------------------------------------------------------------------------ cards
def _scored_speech_s(segments: Sequence[SegmentResult]) -> dict[str, float]:
    out = {}
    for key, _, _ in SCORE_TARGETS:
        out[key] = sum(s.duration_s for s in segments
                       if s.scores is not None and getattr(s.scores, key).value is not None)
    return out


def _summary(r: SessionResult, key: str) -> ScoreSummary | None:
    return getattr(r.summary, key) if r.summary is not None else None


def _cards(r: SessionResult, scored: dict[str, float]) -> dict[str, Any]:
    cards: dict[str, Any] = {}
    for key, label, colour in SCORE_TARGETS:
        s = _summary(r, key)
        peak_at = None
        if s is not None and s.peak_segment is not None and 0 <= s.peak_segment < len(r.segments):
            seg = r.segments[s.peak_segment]
            peak_at = format_clock(seg.start_s, decimals=1)
        above_s = (s.fraction_above_threshold * scored[key]
                   if s is not None and s.fraction_above_threshold is not None else None)
        cards[key] = {"label": label, "colour": colour, "s": s, "peak_at": peak_at,
                      "above_s": above_s, "scored_s": scored[key]}
    return cards


def _coverage_extra(r: SessionResult) -> list[dict[str, Any]]:
    """Coverage of fusion groups that are not streams (e.g. ``lexical`` word-use rates)."""
    cov = r.summary.coverage if r.summary else {}
    return [{"name": k, "short": CONTRIBUTION_TITLES.get(k, k), "coverage": v}
            for k, v in cov.items() if k not in r.streams and k not in stream_titles()]


def _no_scores_reason(r: SessionResult) -> str | None:
    if any(s.scores is not None for s in r.segments) or (
            r.summary and (r.summary.stress or r.summary.depression)):
        return None
    if str(r.status) != "ok":
        return (f"No scores: {r.status}. The recording holds too little detected speech for "
                "a score (see warnings).")
    if r.fusion is None:
        return ("No scores: the fusion step did not run (disabled in the config or not "
                "available in this version). The measurements below are shown without scores.")
    return "No scores: no segment had enough evidence to be scored."


# ------------------------------------------------------------------------------ timeline
def _score_panels(r: SessionResult, frame: Frame) -> list[ScorePanel]:
    panels = []
    top = 22.0
    for key, label, colour in SCORE_TARGETS:
        s = _summary(r, key)
        threshold = s.threshold if s is not None else _config_threshold(r)
        panel = ScorePanel(key=key, label=label, colour=colour, top=top, height=96.0,
                           threshold=threshold)
        for seg in r.segments:
            x, w = frame.span(seg.start_s, seg.end_s)
            detail: ScoreDetail | None = getattr(seg.scores, key) if seg.scores else None
            span = f"{format_clock(seg.start_s, decimals=1)}–{format_clock(seg.end_s, decimals=1)}"
            if detail is None or detail.value is None:
                why = "not scored" if seg.scores is None else "no evidence for this score"
                panel.missing.append(Bar(i=seg.index, start_s=seg.start_s, end_s=seg.end_s, x=x,
                                         w=w, tip=f"Segment {seg.index} · {span} · {label}: "
                                                  f"{why}"))
                continue
            y = panel.y(detail.value)
            panel.bars.append(Bar(
                i=seg.index, start_s=seg.start_s, end_s=seg.end_s, x=x, w=w, y=y,
                h=round(panel.bottom - y, 2), value=detail.value,
                opacity=confidence_opacity(detail.confidence),
                tip=(f"Segment {seg.index} · {span} · {label} {detail.value:.2f} "
                     f"(confidence {detail.confidence:.2f})")))
        panels.append(panel)
        top += 96.0 + 40.0
    return panels


def _config_threshold(r: SessionResult) -> float | None:
    fusion_cfg = r.config.get("fusion") if isinstance(r.config, dict) else None
    thr = fusion_cfg.get("threshold") if isinstance(fusion_cfg, dict) else None
    return float(thr) if isinstance(thr, (int, float)) else None


def _sentiment_strip(r: SessionResult, frame: Frame) -> list[dict[str, Any]]:
    out = []
    for seg in r.segments:
        if seg.sentiment is None:
            continue
        x, w = frame.span(seg.start_s, seg.end_s)
        se = seg.sentiment
        out.append({"i": seg.index, "x": x, "w": w,
                    "start_s": seg.start_s, "end_s": seg.end_s,
                    "colour": SENTIMENT_COLOURS.get(se.label, "#A3AAB4"),
                    "tip": (f"Segment {seg.index} · sentiment {se.label} (negative "
                            f"{se.negative:.2f}, neutral {se.neutral:.2f}, positive "
                            f"{se.positive:.2f})")})
    return out


# ------------------------------------------------------------------------------ emotion
def _emotion_labels(r: SessionResult) -> list[str]:
    from features.emotion.stream import Emotion

    seen: list[str] = []
    for seg in r.segments:
        if seg.emotion is not None:
            for label in seg.emotion.probabilities:
                if label not in seen:
                    seen.append(label)
    canonical = [e.value for e in Emotion]
    return sorted(seen, key=lambda lab: (canonical.index(lab) if lab in canonical
                                         else len(canonical), lab))


def _emotion(r: SessionResult, frame: Frame) -> dict[str, Any]:
    labels = _emotion_labels(r)
    legend = [(lab, charts.emotion_colour(lab, i)) for i, lab in enumerate(labels)]
    colours = dict(legend)
    top, height = 8.0, 110.0
    columns: list[StackedColumn] = []
    for seg in r.segments:
        em = seg.emotion
        if em is None or not em.probabilities:
            continue
        x, w = frame.span(seg.start_s, seg.end_s)
        y = top + height
        rects = []
        for lab in labels:
            p = em.probabilities.get(lab)
            if p is None or p <= 0:
                continue
            h = p * height
            y -= h
            rects.append(StackRect(label=lab, colour=colours[lab], y=round(y, 2),
                                   h=round(h, 2), p=p))
        ranked = sorted(em.probabilities.items(), key=lambda kv: -kv[1])[:3]
        span = f"{format_clock(seg.start_s, decimals=1)}–{format_clock(seg.end_s, decimals=1)}"
        tip = f"Segment {seg.index} · {span} · " + ", ".join(f"{k} {v:.2f}" for k, v in ranked)
        columns.append(StackedColumn(i=seg.index, start_s=seg.start_s, end_s=seg.end_s, x=x, w=w,
                                     rects=rects, tip=tip))
    dims = _line_panel(
        r, frame, key="emotion_dims", title="Arousal, valence, dominance", unit="model scale",
        series=[("arousal", "Arousal", charts.PALETTE["vermillion"]),
                ("valence", "Valence", charts.PALETTE["blue"]),
                ("dominance", "Dominance", charts.PALETTE["green"])],
        getter=lambda seg, k: getattr(seg.emotion, k) if seg.emotion else None)
    return {"labels": legend, "columns": columns, "top": top, "height": height,
            "dims": None if dims.empty else dims,
            "n_measured": sum(1 for s in r.segments if s.emotion is not None)}


# ------------------------------------------------------------------------------ prosody
_PROSODY_PANELS = (
    ("pitch", "Pitch (F0)", "Hz", [("f0_mean_hz", "F0 mean", charts.PALETTE["blue"])],
     ("f0_p5_hz", "f0_p95_hz"), "band: 5th–95th percentile of F0 within the segment"),
    ("rate", "Speech rate", "syllables/s",
     [("speech_rate_syl_per_s", "Speech rate", charts.PALETTE["vermillion"]),
      ("articulation_rate_syl_per_s", "Articulation rate", charts.PALETTE["orange"])],
     None, "articulation rate excludes pauses"),
    ("pauses", "Pauses", "fraction of segment time",
     [("pause_ratio", "Pause ratio", charts.PALETTE["green"])], None, ""),
    ("voice", "Voice quality", "dB",
     [("hnr_db", "HNR", charts.PALETTE["purple"]), ("cpps_db", "CPPS", charts.PALETTE["sky"])],
     None, "harmonics-to-noise ratio and smoothed cepstral peak prominence"),
)


def _prosody_panels(r: SessionResult, frame: Frame) -> list[LinePanel]:
    panels = []
    for key, title, unit, series, band, note in _PROSODY_PANELS:
        panels.append(_line_panel(
            r, frame, key=key, title=title, unit=unit, series=series, band=band, note=note,
            getter=lambda seg, k: getattr(seg.prosody, k) if seg.prosody else None,
            reason=lambda seg, k: (seg.prosody.missing.get(k) if seg.prosody else
                                   "prosody not measured")))
    return panels


def _line_panel(r: SessionResult, frame: Frame, *, key: str, title: str, unit: str,
                series: Sequence[tuple[str, str, str]], getter: Any,
                band: tuple[str, str] | None = None, note: str = "",
                reason: Any = None) -> LinePanel:
    values: list[float] = []
    for seg in r.segments:
        for k, _, _ in series:
            v = getter(seg, k)
            if _finite(v):
                values.append(float(v))
        if band is not None:
            for k in band:
                v = getter(seg, k)
                if _finite(v):
                    values.append(float(v))
    lo, hi, ticks = nice_range(values, n_ticks=3)
    panel = LinePanel(key=key, title=title, unit=unit, top=8.0, height=78.0, lo=lo, hi=hi,
                      yticks=[], series=[], note=note)
    panel.yticks = [(panel.y(t), _tick_label(t)) for t in ticks]
    n_missing = 0
    for k, label, colour in series:
        ss = StepSeries(key=k, label=label, colour=colour)
        points: list[tuple[float, float] | None] = []
        for seg in r.segments:
            v = getter(seg, k)
            if not _finite(v):
                n_missing += 1
                points.append(None)
                continue
            x1, w = frame.span(seg.start_s, seg.end_s, gap=2.0)
            x2 = x1 + w
            y = panel.y(float(v))
            band_y = None
            if band is not None:
                b0, b1 = getter(seg, band[0]), getter(seg, band[1])
                if _finite(b0) and _finite(b1):
                    band_y = (panel.y(float(b1)), panel.y(float(b0)))
            span = f"{format_clock(seg.start_s, decimals=1)}–{format_clock(seg.end_s, decimals=1)}"
            ss.steps.append(Step(i=seg.index, start_s=seg.start_s, end_s=seg.end_s, x1=x1,
                                 x2=x2, y=y, value=float(v), band=band_y,
                                 tip=f"Segment {seg.index} · {span} · {label} "
                                     f"{display_number(float(v))} {unit}"))
            points.append(((x1 + x2) / 2.0, y))
        ss.path = midpoint_path(points)
        panel.series.append(ss)
    panel.n_missing = n_missing
    return panel


def _tick_label(t: float) -> str:
    if abs(t - round(t)) < 1e-9:
        return str(int(round(t)))
    return f"{t:g}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------------------ drivers
def _weighted_contributions(r: SessionResult, key: str, attr: str) -> dict[str, float]:
    """Duration-weighted mean of each contribution over the segments that have this score."""
    totals: dict[str, float] = {}
    weight = 0.0
    for seg in r.segments:
        detail = getattr(seg.scores, key) if seg.scores else None
        if detail is None or detail.value is None:
            continue
        w = seg.duration_s
        weight += w
        for name, v in getattr(detail, attr).items():
            if _finite(v):
                totals[name] = totals.get(name, 0.0) + w * v
    if weight <= 0:
        return {}
    return {k: v / weight for k, v in totals.items()}


def _drivers(r: SessionResult) -> list[dict[str, Any]]:
    out = []
    for key, label, colour in SCORE_TARGETS:
        streams = _weighted_contributions(r, key, "contributions")
        feats = _weighted_contributions(r, key, "feature_contributions")
        if not streams and not feats:
            continue
        intercept = streams.pop("intercept", None)
        stream_items = sorted(((n, CONTRIBUTION_TITLES.get(n, n), v)
                               for n, v in streams.items()),
                              key=lambda t: -abs(t[2]))
        parts = {n: feature_label_parts(n) for n in feats}
        feat_items = sorted(((n, parts[n][0], v) for n, v in feats.items()
                             if n != "intercept"), key=lambda t: -abs(t[2]))
        n_nonzero = sum(1 for _, _, v in feat_items if abs(v) > 1e-12)
        feat_items = [t for t in feat_items if abs(t[2]) > 1e-12][:8]
        s_bars, s_zero, _ = charts.diverging(stream_items)
        f_bars, f_zero, _ = charts.diverging(feat_items,
                                             refs={n: p[1] for n, p in parts.items()})
        out.append({"key": key, "label": label, "colour": colour, "intercept": intercept,
                    "streams": s_bars, "stream_zero": s_zero,
                    "features": f_bars, "feature_zero": f_zero,
                    "n_features": n_nonzero})
    return out


def _top_features(detail: ScoreDetail | None, n: int = 2) -> list[tuple[str, float]]:
    if detail is None or detail.value is None:
        return []
    items = [(feature_label(k), v) for k, v in detail.feature_contributions.items()
             if k != "intercept" and _finite(v) and abs(v) > 1e-12]
    if not items:
        items = [(CONTRIBUTION_TITLES.get(k, k), v) for k, v in detail.contributions.items()
                 if k != "intercept" and _finite(v) and abs(v) > 1e-12]
    return sorted(items, key=lambda kv: -abs(kv[1]))[:n]


# ------------------------------------------------------------------------------ transcript
def _transcript(r: SessionResult) -> dict[str, Any]:
    rows = []
    for seg in r.segments:
        tr, se, sc = seg.transcript, seg.sentiment, seg.scores
        rows.append({
            "i": seg.index, "start_s": seg.start_s, "end_s": seg.end_s,
            "speaker": seg.speaker if len(r.speakers) > 1 else None,
            "speaker_colour": _speaker_colour(r, seg.speaker),
            "text": tr.text.strip() if tr else None,
            "word_count": tr.word_count if tr else None,
            "sentiment": se.label if se else None,
            "sentiment_colour": SENTIMENT_COLOURS.get(se.label, "#A3AAB4") if se else None,
            "compound": se.compound if se else None,
            "stress": sc.stress.value if sc else None,
            "depression": sc.depression.value if sc else None,
            "drivers": {key: _top_features(getattr(sc, key) if sc else None)
                        for key, _, _ in SCORE_TARGETS},
        })
    info = r.streams.get("transcript")
    language = info.session.get("language") if info else None
    return {"rows": rows, "has_text": any(row["text"] for row in rows),
            "language": language if isinstance(language, str) else None}


# ------------------------------------------------------------------------------ table
#: the columns of the printed (A4) segment table; the screen shows every column
_COMPACT_KEYS = ("segment", "start_s", "end_s", "f0_mean_hz", "speech_rate_syl_per_s",
                 "pause_ratio", "hnr_db", "emotion_top", "sentiment_label", "stress",
                 "stress_confidence", "depression_probability", "depression_confidence")
_GROUPS = ("Segment", "Prosody", "Emotion", "Transcript", "Sentiment", "Scores")


def _column_group(key: str, prosody_keys: set[str]) -> int:
    if key in ("segment", "start_s", "end_s", "duration_s"):
        return 0
    if key in prosody_keys:
        return 1
    if key.startswith("emotion_"):
        return 2
    if key in ("text", "word_count", "words_per_min"):
        return 3
    if key.startswith("sentiment_"):
        return 4
    return 5


def _table(r: SessionResult) -> dict[str, Any]:
    from features.prosody.stream import ProsodyMeasures

    prosody_keys = set(ProsodyMeasures.model_fields) - {"missing"}
    records = r.segment_records()
    order: dict[str, int] = {}
    for rec in records:
        for k in rec:
            if k != "file" and k not in order:
                order[k] = len(order)
    # prosody columns in schema order, whatever the first segment had
    schema_pos = {k: i for i, k in enumerate(ProsodyMeasures.model_fields)}
    first = {"segment": 0, "start_s": 1, "end_s": 2, "duration_s": 3}
    keys = sorted(order, key=lambda k: (_column_group(k, prosody_keys),
                                        first.get(k, schema_pos.get(k, 0)), order[k]))
    columns: list[dict[str, Any]] = [
        {"key": k, "label": measure_label(k), "group": _GROUPS[_column_group(k, prosody_keys)],
         "numeric": k not in ("text", "emotion_top", "sentiment_label")} for k in keys]
    groups: list[dict[str, Any]] = []
    for c in columns:
        if groups and groups[-1]["name"] == c["group"]:
            groups[-1]["span"] += 1
        else:
            groups.append({"name": c["group"], "span": 1})
    rows = []
    for seg, rec in zip(r.segments, records, strict=True):
        missing = seg.prosody.missing if seg.prosody else {}
        cells = []
        for c in columns:
            k = c["key"]
            v = rec.get(k)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            if c["numeric"]:
                title = missing.get(k) if v is None else json_number(v)
                if v is None and not title:
                    title = "not measured"
                cells.append({"text": display_number(v, k), "title": title, "numeric": True,
                              "missing": v is None})
            else:
                cells.append({"text": "" if v is None else str(v), "title": None,
                              "numeric": False, "missing": v is None})
        rows.append({"i": seg.index, "start_s": seg.start_s, "end_s": seg.end_s,
                     "cells": cells})
    compact = [i for i, c in enumerate(columns) if c["key"] in _COMPACT_KEYS]
    return {"columns": columns, "groups": groups, "rows": rows, "compact": compact}
