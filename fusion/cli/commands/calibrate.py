"""``vocalfusion calibrate labels.csv -o model.json``: fit and calibrate fusion heads.

See :mod:`fusion.training.labels` for the label table. Saved analysis JSONs are reused; audio files
are analysed once and cached (``--analyses-dir``). Prints speaker-grouped cross-validated
metrics before and after calibration and writes a JSON model that ``--set
fusion.scoring.head=model.json`` (or ``[fusion] model = "model.json"``) uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from fusion.cli.commands._common import add_config_args, config_from_args, console, err_console

__all__ = ["register", "func", "print_reports"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="fit and calibrate fusion scores on labelled recordings",
        description="Fit stress/depression heads on labelled sessions with speaker-grouped "
                    "cross-validation, calibrate them, print metrics before/after calibration "
                    "and write a JSON model. Label CSV columns: file, speaker, optional "
                    "start_s/end_s, and any of depression (0/1), stress (0/1 or level), "
                    "cortisol (continuous). Session labels apply to all its segments.")
    p.add_argument("labels", type=Path, metavar="LABELS.csv")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="MODEL.json",
                   help="where to write the model JSON")
    p.add_argument("--method", choices=["platt", "temperature", "isotonic", "none"],
                   default="platt",
                   help="calibration method (default platt; isotonic overfits below ~1000 "
                        "samples)")
    p.add_argument("--C", dest="C", type=float, default=1.0,
                   help="inverse L2 strength of the logistic regression (default 1.0)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="ridge penalty for continuous targets such as cortisol (default 1.0)")
    p.add_argument("--folds", type=int, default=5,
                   help="speaker-grouped CV folds (capped at the number of speakers)")
    p.add_argument("--speaker-baseline", choices=["speaker", "session"], default="speaker",
                   help="z-score speaker features against all of the speaker's labelled "
                        "sessions (default) or against each session itself")
    p.add_argument("--features", choices=["all", "prior"], default="all",
                   help="use every fused feature, or only those the prior weights")
    p.add_argument("--stress-threshold", type=float, default=None,
                   help="binarise a numeric stress level: label = level >= threshold")
    p.add_argument("--analyses-dir", type=Path, default=None,
                   help="cache for analyses of audio files (default: MODEL.analyses/ beside "
                        "the output)")
    p.add_argument("--name", default=None, help="model name recorded in results")
    add_config_args(p)
    p.set_defaults(func=func)


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def print_reports(reports: list[Any], *, out: Any = None) -> None:
    """Metrics table: segment- and session-level, before and after calibration."""
    con = out or console
    for r in reports:
        cv = r.cv
        if r.model.kind == "regression":
            m = cv["metrics"]
            con.print(f"[bold]{r.head}[/] (ridge on '{r.label}', {cv['n_splits']} speaker-"
                      f"grouped folds): MAE {_fmt(m['mae'])}  RMSE {_fmt(m['rmse'])}  "
                      f"r {_fmt(m['pearson_r'])}  ρ {_fmt(m['spearman_rho'])}  "
                      f"CCC {_fmt(m['ccc'])}")
            continue
        t = Table(title=f"{r.head} ← '{r.label}' · {cv['n_splits']} speaker-grouped folds · "
                        f"held-out speakers", title_justify="left", header_style="bold")
        for col in ("level", "calibration", "n", "AUC", "bal. acc.", "F1", "Brier", "ECE"):
            t.add_column(col, justify="right" if col not in ("level", "calibration") else "left")
        for level, block in (("segment", cv["metrics"]),
                             ("session", cv.get("session_metrics") or {})):
            for state, m in block.items():
                name = "none (σ of logit)" if state == "uncalibrated" else r.model.calibration
                t.add_row(level, name, str(m["n"]), _fmt(m["auc"]),
                          _fmt(m["balanced_accuracy"]), _fmt(m["f1"]), _fmt(m["brier"]),
                          _fmt(m["ece"]))
        con.print(t)


def func(args: argparse.Namespace) -> int:
    from fusion.config import config_dir
    from fusion.scoring.baseline import load_norms
    from fusion.scoring.head import load_model_file, load_prior
    from fusion.training.labels import (
        build_training_table,
        fit_heads,
        load_sessions,
        read_label_csv,
        save_reports,
    )

    cfg = config_from_args(args)
    rows = read_label_csv(args.labels)
    analyses_dir = args.analyses_dir or args.out.with_suffix(".analyses")

    def factory() -> Any:
        from fusion.engine.analyzer import Analyzer

        return Analyzer(cfg).load()

    sessions = load_sessions(rows, analyzer_factory=factory, analyses_dir=analyses_dir,
                             config_hash=cfg.config_hash(),
                             progress=lambda m: err_console.print(m))
    spec = load_prior() if cfg.fusion.model == "prior" else load_model_file(cfg.fusion.model)
    norms = load_norms(cfg.fusion.population_norms
                       or config_dir() / "population_norms.json")
    table = build_training_table(rows, sessions, spec, norms,
                                 speaker_baseline=args.speaker_baseline)
    reports = fit_heads(table, spec, method=None if args.method == "none" else args.method,
                        C=args.C, alpha=args.alpha, folds=args.folds,
                        stress_threshold=args.stress_threshold, features=args.features)
    print_reports(reports)
    path = save_reports(args.out, reports, spec, norms, table, name=args.name,
                        extra={"label_table": str(args.labels), "config_hash": cfg.config_hash()})
    d = table.description
    console.print(f"wrote {path} ({d['n_segments']} segments, {d['n_sessions']} sessions, "
                  f"{d['n_speakers']} speakers)")
    if d["n_segments"] < 1000 and args.method == "isotonic":
        err_console.print("[yellow]warning:[/] isotonic calibration overfits below ~1000 "
                          "samples; prefer --method platt or temperature")
    return 0
