"""Labelled data → fitted, calibrated fusion model (what ``vocalfusion calibrate`` runs).

Label table (CSV), one row per labelled recording or recording span:

=============  ==========================================================================
column         meaning
=============  ==========================================================================
file           a saved analysis JSON (``vocalfusion analyze``) — reused as is — or an audio
               file, analysed once with :class:`fusion.engine.analyzer.Analyzer` and cached as JSON
               in ``analyses_dir`` (reused on later runs with the same config)
speaker        speaker id (required): cross-validation folds are grouped by it
start_s/end_s  optional span: only segments whose midpoint lies in ``[start_s, end_s)``
depression     optional 0/1 label
stress         optional 0/1 label, or a numeric level binarised with ``stress_threshold``
cortisol       optional continuous target (e.g. nmol/L) → a ridge-regression head
=============  ==========================================================================

Relative paths are relative to the CSV's folder. **Session-level labels apply to every
segment of the session (or span)**: the models are trained on segments, cross-validated with
folds grouped by speaker (no speaker in both train and test), and also evaluated per session
(mean of the session's out-of-fold segment probabilities).

Speaker baseline for training (``speaker_baseline``): ``"speaker"`` (default) z-scores each
speaker's features against a profile pooled over *all* of that speaker's labelled sessions —
what ``vocalfusion baseline build`` produces for scoring — so that between-session changes
(e.g. a stressed session against calm ones) remain visible; ``"session"`` z-scores each session
against itself (then a whole-session shift is invisible to speaker z-scores). No label is used
to build a baseline.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from features.errors import ConfigError, ParameterError
from fusion._jsonio import MAX_RESULT_BYTES, read_json_bytes
from fusion.schema import SegmentResult, SessionResult
from fusion.scoring.baseline import PopulationNorms, profile_from_segments
from fusion.scoring.fuser import session_features
from fusion.scoring.head import FusionSpec
from fusion.scoring.vector import all_fused_names
from fusion.training.estimator import FusionModel, grouped_cross_validate
from fusion.training.persistence import save_model

__all__ = [
    "LabelRow",
    "TrainingTable",
    "read_label_csv",
    "load_sessions",
    "build_training_table",
    "fit_heads",
    "HeadReport",
]

log = logging.getLogger("vocalfusion.training")

LABEL_COLUMNS = ("depression", "stress", "cortisol")


@dataclass
class LabelRow:
    """One row of the label table."""

    file: Path
    speaker: str
    start_s: float | None = None
    end_s: float | None = None
    labels: dict[str, float] = field(default_factory=dict)
    line: int = 0


def _float_or_none(text: str | None, *, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise ParameterError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ParameterError(f"{where}: {text!r} is not finite")
    return v


def read_label_csv(path: str | Path) -> list[LabelRow]:
    """Parse the label CSV (see the module docstring); errors name the line and column."""
    p = Path(path)
    try:
        text = read_json_bytes(p, what="label table").decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{p}: label table is not UTF-8 ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if "file" not in cols or "speaker" not in cols:
        raise ParameterError(f"{p}: the label table needs columns 'file' and 'speaker' (got "
                             f"{cols}); speaker groups the cross-validation folds")
    labels = [c for c in LABEL_COLUMNS if c in cols]
    if not labels:
        raise ParameterError(f"{p}: no label column; give at least one of {LABEL_COLUMNS}")
    start_col = next((c for c in ("start_s", "start") if c in cols), None)
    end_col = next((c for c in ("end_s", "end") if c in cols), None)
    rows: list[LabelRow] = []
    for i, raw in enumerate(reader, start=2):
        rec = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not rec.get("file"):
            raise ParameterError(f"{p}:{i}: empty 'file'")
        if not rec.get("speaker"):
            raise ParameterError(f"{p}:{i}: empty 'speaker'")
        f = Path(rec["file"])
        if not f.is_absolute():
            f = p.parent / f
        row = LabelRow(file=f, speaker=rec["speaker"], line=i,
                       start_s=_float_or_none(rec.get(start_col) if start_col else None,
                                              where=f"{p}:{i} {start_col}"),
                       end_s=_float_or_none(rec.get(end_col) if end_col else None,
                                            where=f"{p}:{i} {end_col}"))
        if row.start_s is not None and row.end_s is not None and row.end_s <= row.start_s:
            raise ParameterError(f"{p}:{i}: end ({row.end_s}) must be after start "
                                 f"({row.start_s})")
        for c in labels:
            v = _float_or_none(rec.get(c), where=f"{p}:{i} {c}")
            if v is not None:
                row.labels[c] = v
        rows.append(row)
    if not rows:
        raise ParameterError(f"{p}: the label table has no rows")
    return rows


def _cache_name(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"{path.stem}-{digest}.json"


def load_sessions(rows: Sequence[LabelRow], *, analyzer_factory: Callable[[], Any] | None,
                  analyses_dir: Path | None, config_hash: str | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[Path, SessionResult]:
    """Load (or analyse once) every distinct file of ``rows``.

    ``*.json`` files are read as saved analyses. Other files are audio: a cached analysis in
    ``analyses_dir`` with the same ``config_hash`` is reused, otherwise the file is analysed
    with ``analyzer_factory()`` (created once, lazily) and the JSON is cached.
    """
    from fusion.files import atomic_write_text

    out: dict[Path, SessionResult] = {}
    analyzer = None
    for row in rows:
        f = row.file
        if f in out:
            continue
        if f.suffix.lower() == ".json":
            try:
                out[f] = SessionResult.from_json(read_json_bytes(
                    f, what="analysis JSON", max_bytes=MAX_RESULT_BYTES))
            except ConfigError:
                raise
            except ValueError as exc:
                raise ParameterError(f"{f}: not a vocalfusion analysis JSON: "
                                     f"{str(exc).splitlines()[0]}") from None
            continue
        cached = analyses_dir / _cache_name(f) if analyses_dir is not None else None
        if cached is not None and cached.exists():
            res = SessionResult.from_json(cached.read_bytes())
            if config_hash is None or res.config_hash == config_hash:
                out[f] = res
                continue
        if analyzer_factory is None:
            raise ParameterError(f"{f}: audio file given but no analyzer available; analyse it "
                                 "first with `vocalfusion analyze` and list the JSON")
        if analyzer is None:
            analyzer = analyzer_factory()
        if progress:
            progress(f"analysing {f}")
        res = analyzer.process_file(f)
        out[f] = res
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cached, res.to_json())
    return out


def _span(segments: Sequence[SegmentResult], row: LabelRow) -> list[SegmentResult]:
    lo = row.start_s if row.start_s is not None else -math.inf
    hi = row.end_s if row.end_s is not None else math.inf
    return [s for s in segments if lo <= (s.start_s + s.end_s) / 2.0 < hi]


@dataclass
class TrainingTable:
    """Segment-level training data: fused features, labels, speaker and session ids."""

    X: Any  # pandas DataFrame
    labels: dict[str, np.ndarray]  # label name -> values (NaN = no label for that row)
    speakers: np.ndarray
    sessions: np.ndarray
    durations: np.ndarray
    description: dict[str, Any]


def build_training_table(rows: Sequence[LabelRow], sessions: Mapping[Path, SessionResult],
                         spec: FusionSpec, norms: PopulationNorms, *,
                         speaker_baseline: str = "speaker",
                         sex: Mapping[str, str] | None = None) -> TrainingTable:
    """Features of every labelled segment, computed as the :class:`~fusion.scoring.fuser.Fuser`
    does.

    Parameters
    ----------
    speaker_baseline : {"speaker", "session"}
        See the module docstring.
    sex : dict, optional
        Speaker id → "female"/"male" for sex-specific population norms.
    """
    import pandas as pd

    if speaker_baseline not in ("speaker", "session"):
        raise ParameterError(f"speaker_baseline must be 'speaker' or 'session', got "
                             f"{speaker_baseline!r}")
    settings = spec.normalisation
    spans: list[list[SegmentResult]] = []
    kept: list[LabelRow] = []
    for row in rows:
        segs = _span(sessions[row.file].segments, row)
        if not segs:
            log.warning("%s (line %d): no segments in the labelled span; row skipped",
                        row.file, row.line)
            continue
        spans.append(segs)
        kept.append(row)
    if not kept:
        raise ParameterError("no labelled row has any analysed speech segment")
    profiles = {}
    if speaker_baseline == "speaker":
        by_speaker: dict[str, list[SegmentResult]] = {}
        for row, segs in zip(kept, spans, strict=True):
            by_speaker.setdefault(row.speaker, []).extend(segs)
        for spk, segs in by_speaker.items():
            profiles[spk] = profile_from_segments(segs, settings, speaker_id=spk)
    columns = all_fused_names()
    records: list[dict[str, float | None]] = []
    lab: dict[str, list[float]] = {c: [] for c in LABEL_COLUMNS}
    spk_col, sess_col, dur_col = [], [], []
    for k, (row, segs) in enumerate(zip(kept, spans, strict=True)):
        s = (sex or {}).get(row.speaker)
        feats = session_features(segs, settings, norms, profile=profiles.get(row.speaker),
                                 sex=s)  # type: ignore[arg-type]
        for seg, fused in zip(segs, feats.fused(), strict=True):
            records.append(fused)
            for c in LABEL_COLUMNS:
                lab[c].append(row.labels.get(c, math.nan))
            spk_col.append(row.speaker)
            sess_col.append(f"{k}:{row.file.name}")
            dur_col.append(seg.duration_s)
    X = pd.DataFrame.from_records(records, columns=columns).astype(float)
    labels = {c: np.asarray(v, dtype=float) for c, v in lab.items()
              if np.isfinite(np.asarray(v, dtype=float)).any()}
    desc = {
        "n_rows": len(kept), "n_rows_skipped": len(rows) - len(kept),
        "n_sessions": len({r.file for r in kept}), "n_speakers": len({r.speaker for r in kept}),
        "n_segments": len(records), "speech_s": round(float(sum(dur_col)), 3),
        "speaker_baseline": "profile" if speaker_baseline == "speaker" else "session",
        "label_rule": "session-level labels apply to every segment of the session (or span); "
                      "cross-validation folds are grouped by speaker",
        "labels": {c: _label_summary(v) for c, v in labels.items()},
    }
    return TrainingTable(X=X, labels=labels, speakers=np.asarray(spk_col, dtype=object),
                         sessions=np.asarray(sess_col, dtype=object),
                         durations=np.asarray(dur_col, dtype=float), description=desc)


def _label_summary(v: np.ndarray) -> dict[str, Any]:
    f = v[np.isfinite(v)]
    vals = set(np.unique(f).tolist())
    if vals <= {0.0, 1.0}:
        return {"type": "binary", "n_segments": int(f.size), "n_positive": int(f.sum())}
    return {"type": "continuous", "n_segments": int(f.size), "mean": float(f.mean()),
            "sd": float(f.std())}


@dataclass
class HeadReport:
    """What was fitted for one head and how it cross-validated."""

    head: str
    label: str
    model: FusionModel
    cv: dict[str, Any]


def _select_columns(table: TrainingTable, head: str, spec: FusionSpec, features: str) -> list[str]:
    cols = list(table.X.columns)
    if features == "all":
        return cols
    if features == "prior":
        prior_head = spec.heads.get(head) or spec.heads["stress"]
        chosen = [c for c in cols if c in prior_head.weights]
        if not chosen:
            raise ParameterError(f"the prior's {head} head has no features to select")
        return chosen
    raise ParameterError(f"features must be 'all' or 'prior', got {features!r}")


def fit_heads(table: TrainingTable, spec: FusionSpec, *, method: str | None = "platt",
              C: float = 1.0, alpha: float = 1.0, folds: int = 5,
              stress_threshold: float | None = None,
              features: str = "all") -> list[HeadReport]:
    """Cross-validate (speaker-grouped) and fit one head per label column present.

    ``depression`` → logistic head "depression"; ``stress`` → logistic head "stress" (a
    non-binary stress level needs ``stress_threshold``: label = level ≥ threshold);
    ``cortisol`` → ridge-regression head, named "stress" when there is no stress label, else
    "cortisol" (stored, not used for scoring).
    """
    reports: list[HeadReport] = []
    for label, y_all in table.labels.items():
        has = np.isfinite(y_all)
        y = y_all[has]
        kind: Literal["logistic", "regression"]
        if label == "cortisol":
            head = "stress" if "stress" not in table.labels else "cortisol"
            kind, cal = "regression", None
        else:
            head, kind, cal = label, "logistic", method
            vals = set(np.unique(y).tolist())
            if not vals <= {0.0, 1.0}:
                if label == "stress" and stress_threshold is not None:
                    y = (y >= stress_threshold).astype(float)
                else:
                    raise ParameterError(
                        f"'{label}' labels are not 0/1 (values {sorted(vals)[:6]}); "
                        + ("give --stress-threshold to binarise stress levels"
                           if label == "stress" else "depression labels must be 0/1"))
        cols = _select_columns(table, head if head in ("stress", "depression") else "stress",
                               spec, features)
        X = table.X.loc[has, cols].reset_index(drop=True)
        groups = table.speakers[has]
        template = FusionModel(target=head, kind=kind, C=C, alpha=alpha, calibration=cal,
                               cv=folds, z_clip=spec.normalisation.z_clip)
        cv = grouped_cross_validate(template, X, y, groups, n_splits=folds,
                                    sessions=table.sessions[has] if kind == "logistic" else None)
        model = FusionModel(**template.get_params()).fit(X, y, groups=groups)
        reports.append(HeadReport(head=head, label=label, model=model, cv=cv))
    if not reports:
        raise ParameterError("no label column with values")
    return reports


def metrics_for_json(report: HeadReport) -> dict[str, Any]:
    """The cross-validation results of one head without the per-row arrays."""
    cv = report.cv
    return {"label": report.label, "kind": report.model.kind,
            "calibration": report.model.calibration, "n_splits": cv["n_splits"],
            "folds": cv["folds"], "segment_level": cv["metrics"],
            "session_level": cv.get("session_metrics"),
            "features_used": report.model.features_used_,
            "dropped_features": report.model.dropped_features_,
            "evaluation": "out-of-fold predictions of speaker-grouped cross-validation; each "
                          "fold's calibrator was fitted on inner speaker-grouped folds of its "
                          "training speakers only"}


def save_reports(path: Path, reports: Sequence[HeadReport], spec: FusionSpec,
                 norms: PopulationNorms, table: TrainingTable, *,
                 extra: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
    """Write the fitted heads, their metrics and the training description as model JSON."""
    models = {r.head: r.model for r in reports}
    if len(models) != len(reports):
        raise ConfigError("two label columns map to the same head")
    td = dict(table.description)
    td.update(extra or {})
    return save_model(path, models, normalisation=spec.normalisation,
                      confidence=spec.confidence,
                      population_norms={"name": norms.name, "source": norms.source,
                                        "sha256": norms.sha256},
                      training_data=td,
                      metrics={r.head: metrics_for_json(r) for r in reports}, name=name)

