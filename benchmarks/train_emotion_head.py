"""Fit the offline emotion measures head on EmoDB and evaluate it on RAVDESS (and LOSO).

Inputs: the per-segment tables of ``benchmarks/emotion_features.py`` (git-ignored parquet).
Output: ``features/emotion/data/emotion_measures_head.json`` (JSON coefficients, no pickle,
with training data, licence and evaluation inside) and a Markdown report on stdout (the
tables of ``docs/models.md``).

Run::

    python benchmarks/train_emotion_head.py \\
        --emodb benchmarks/results/emodb_features.parquet \\
        --ravdess benchmarks/results/ravdess_features.parquet \\
        -o features/emotion/data/emotion_measures_head.json

Model: scikit-learn ``LogisticRegression`` (multinomial, lbfgs, L2, ``C``, balanced class
weights) on standardised measures; missing measures imputed with the training median (raw)
or 0 = the speaker's reference (speaker variant). What ships is trained only on the CC0
EmoDB copy; RAVDESS (CC BY-NC-SA 4.0) is used for evaluation only.

Speaker reference (speaker variant): mean and SD of each measure over the speaker's neutral
clips — EmoDB: all of that speaker's neutral clips (training); RAVDESS: the first half (by
file name) of each actor's neutral clips and of its calm clips, which are then left out of
the test set.

Evaluation (per clip: duration-weighted mean of its segments' probabilities):
* cross-corpus EmoDB → RAVDESS (speaker-disjoint by construction): 4-class UAR over angry,
  happy, neutral, sad (argmax of those four probabilities) and binary arousal UAR
  (high: angry, fearful, happy, surprised; low: neutral, calm, sad; disgust left out;
  high when ``arousal`` ≥ 0.5), with confusion matrices; chance UAR = 0.25 and 0.5;
* within EmoDB, leave-one-speaker-out (10 folds), the same metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.emotion.measures_head import (  # noqa: E402
    HEAD_FORMAT,
    HIGH_AROUSAL,
    LOW_AROUSAL,
    HeadVariant,
    MeasuresHead,
    MeasuresHeadFile,
    SpeakerReference,
    canonical_json_sha256,
)

RAW_FEATURES = [
    "f0_mean_st", "f0_sd_st", "f0_range_st", "jitter_local_pct", "jitter_rap_pct",
    "shimmer_local_db", "shimmer_apq3_pct", "hnr_db", "cpps_db", "intensity_sd_db",
    "voiced_fraction", "speech_rate_syl_per_s", "articulation_rate_syl_per_s", "pause_ratio",
    "f1_mean_hz", "f2_mean_hz", "f3_mean_hz", "f1_bw_hz", "alpha_ratio_db",
    "hammarberg_index_db", "spectral_slope_0_500", "spectral_slope_500_1500",
]
#: the speaker variant adds the level: gain is constant within one speaker's recordings
SPEAKER_FEATURES = [*RAW_FEATURES, "intensity_mean_db"]
LABELS = ["angry", "bored", "disgust", "fearful", "happy", "neutral", "sad"]
FOUR = ["angry", "happy", "neutral", "sad"]
REF_LABELS = ("neutral", "calm")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["status"] == "ok"].copy()
    d["dur_s"] = d["end_s"] - d["start_s"]
    return d


def references(df: pd.DataFrame, half: bool) -> tuple[dict[str, SpeakerReference], set[str]]:
    """Speaker → reference from neutral/calm clips (``half``: first half by name); used paths."""
    refs: dict[str, SpeakerReference] = {}
    used: set[str] = set()
    for spk, g in df[df["emotion"].isin(REF_LABELS)].groupby("speaker"):
        paths = sorted(g["path"].unique())
        if half:  # the first half (by name) of each reference label's clips
            paths = [p for lab in REF_LABELS
                     for ps in [sorted(g.loc[g["emotion"] == lab, "path"].unique())]
                     for p in ps[: len(ps) // 2]] or paths[:1]
        rows = g[g["path"].isin(paths)][SPEAKER_FEATURES].to_dict("records")
        refs[str(spk)] = SpeakerReference.from_rows(rows)
        used.update(paths)
    return refs, used


def speaker_matrix(df: pd.DataFrame, refs: dict[str, SpeakerReference],
                   floors: np.ndarray) -> np.ndarray:
    x = np.full((len(df), len(SPEAKER_FEATURES)), np.nan)
    values = df[SPEAKER_FEATURES].to_numpy(dtype=float)
    for i, (spk, row) in enumerate(zip(df["speaker"], values, strict=True)):
        ref = refs.get(spk)
        if ref is None:
            continue
        for j, name in enumerate(SPEAKER_FEATURES):
            mu = ref.means.get(name)
            if mu is None or not np.isfinite(row[j]):
                continue
            x[i, j] = (row[j] - mu) / max(ref.sds.get(name) or 0.0, floors[j])
    return x


def sd_floors(df: pd.DataFrame) -> np.ndarray:
    """Half the median (over speakers) of the within-speaker SD of neutral speech."""
    sds = df[df["emotion"].isin(REF_LABELS)].groupby("speaker")[SPEAKER_FEATURES].std()
    return np.asarray(np.maximum(0.5 * sds.median().to_numpy(), 1e-6))


def fit_variant(x: np.ndarray, y: Sequence[str], features: list[str], normalisation: str,
                c: float, floors: np.ndarray | None = None) -> HeadVariant:
    from sklearn.linear_model import LogisticRegression

    impute = (np.nanmedian(x, axis=0) if normalisation == "raw" else np.zeros(x.shape[1]))
    impute = np.where(np.isfinite(impute), impute, 0.0)
    xi = np.where(np.isfinite(x), x, impute)
    if normalisation == "speaker":
        xi = np.clip(xi, -10, 10)
    center = xi.mean(axis=0)
    scale = xi.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    xs = np.clip((xi - center) / scale, -6, 6)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    clf.fit(xs, np.asarray(y))
    order = [list(clf.classes_).index(lab) for lab in LABELS]
    return HeadVariant(
        normalisation=normalisation, features=features,
        impute=[round(float(v), 6) for v in impute],
        center=[round(float(v), 6) for v in center], scale=[round(float(v), 6) for v in scale],
        sd_floor=[round(float(v), 6) for v in floors] if floors is not None else [],
        coef=[[round(float(v), 6) for v in clf.coef_[k]] for k in order],
        intercept=[round(float(clf.intercept_[k]), 6) for k in order])


def _head(variants: dict[str, HeadVariant], meta: dict[str, Any]) -> MeasuresHead:
    content = _content(variants, meta)
    return MeasuresHead(MeasuresHeadFile.model_validate(content))


def _content(variants: dict[str, HeadVariant], meta: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {
        "format": HEAD_FORMAT, "format_version": 1, "name": "emotion-measures-emodb-v1",
        "labels": LABELS,
        "arousal": {
            "definition": "P(high arousal) = (P(angry) + P(fearful) + P(happy)) / "
                          "(1 - P(disgust))",
            "high": sorted(HIGH_AROUSAL), "low": sorted(LOW_AROUSAL),
            "disgust": "in neither class: rated medium arousal and inconsistent between "
                       "corpora; its mass is left out and the rest renormalised"},
        "valence": {"value": None,
                    "reason": "not estimated: EmoDB's categories give no valence label that the "
                              "measures separate (anger and happiness, opposite in valence, "
                              "are both high-arousal and acoustically close)"},
        "variants": {k: v.model_dump() for k, v in variants.items()},
        "calibration_status": "probabilities of a classifier trained on acted German speech; "
                              "not calibrated on the speech it is applied to",
        **meta,
        "sha256": "",
    }
    content["sha256"] = canonical_json_sha256(content)
    return content


def clip_predictions(head: MeasuresHead, df: pd.DataFrame,
                     refs: dict[str, SpeakerReference] | None) -> pd.DataFrame:
    """Per-clip probabilities (duration-weighted mean over segments) and arousal."""
    recs = df[SPEAKER_FEATURES].to_dict("records")
    if refs is None:
        p = head.predict_proba(recs)
    else:
        p = np.vstack([head.predict_proba([r], refs[s])
                       for r, s in zip(recs, df["speaker"], strict=True)])
    out = pd.DataFrame(p, columns=head.labels, index=df.index)
    out["path"] = df["path"].to_numpy()
    out["w"] = df["dur_s"].to_numpy()
    for lab in head.labels:
        out[lab] = out[lab] * out["w"]
    g = out.groupby("path")
    clip = g[head.labels].sum().div(g["w"].sum(), axis=0)
    clip["arousal"] = head.arousal(clip[head.labels].to_numpy())
    meta = df.groupby("path")[["speaker", "emotion"]].first()
    return clip.join(meta)


def uar(y: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> tuple[float, Any]:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(list(y), list(pred), labels=list(classes))
    rec = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return float(rec.mean()), cm


def metrics(clip: pd.DataFrame) -> dict[str, Any]:
    four = clip[clip["emotion"].isin(FOUR)]
    pred4 = four[FOUR].idxmax(axis=1)
    u4, cm4 = uar(four["emotion"], pred4, FOUR)
    ar = clip[clip["emotion"].isin(HIGH_AROUSAL | LOW_AROUSAL)]
    ya = np.where(ar["emotion"].isin(HIGH_AROUSAL), "high", "low")
    pa = np.where(ar["arousal"] >= 0.5, "high", "low")
    ua, cma = uar(ya, pa, ["high", "low"])
    return {"uar_4class": round(u4, 3), "n_4class": int(len(four)),
            "confusion_4class": {"labels": FOUR, "rows_true_cols_pred": cm4.tolist()},
            "uar_arousal": round(ua, 3), "n_arousal": int(len(ar)),
            "confusion_arousal": {"labels": ["high", "low"],
                                  "rows_true_cols_pred": cma.tolist()},
            "chance_uar_4class": 0.25, "chance_uar_arousal": 0.5}


def fit_all(emo: pd.DataFrame, c: float) -> dict[str, HeadVariant]:
    floors = sd_floors(emo)
    refs, _ = references(emo, half=False)
    raw = fit_variant(emo[RAW_FEATURES].to_numpy(dtype=float), emo["emotion"], RAW_FEATURES,
                      "raw", c)
    spk = fit_variant(speaker_matrix(emo, refs, floors), emo["emotion"], SPEAKER_FEATURES,
                      "speaker", c, floors)
    return {"raw": raw, "speaker": spk}


def evaluate(emo: pd.DataFrame, rav: pd.DataFrame | None, c: float,
             loso: bool = True) -> dict[str, Any]:
    ev: dict[str, Any] = {}
    if rav is not None:
        head = _head(fit_all(emo, c), _meta({}, c))
        rrefs, used = references(rav, half=True)
        test = rav[~rav["path"].isin(used)]
        ev["cross_corpus_raw"] = metrics(clip_predictions(head, test, None))
        ev["cross_corpus_speaker"] = metrics(clip_predictions(head, test, rrefs))
        ev["cross_corpus_test_set"] = (
            f"RAVDESS speech, {test['speaker'].nunique()} actors, {test['path'].nunique()} "
            "clips (the first half of each actor's neutral clips and of its calm clips is "
            "the speaker reference and left out, for both variants)")
    if not loso:
        return ev
    # within EmoDB, leave one speaker out
    for name in ("raw", "speaker"):
        clips = []
        for spk in sorted(emo["speaker"].unique()):
            tr, te = emo[emo["speaker"] != spk], emo[emo["speaker"] == spk]
            h = _head(fit_all(tr, c), _meta({}, c))
            if name == "raw":
                clips.append(clip_predictions(h, te, None))
            else:
                refs, _ = references(te, half=False)
                clips.append(clip_predictions(h, te, refs))
        allc = pd.concat(clips)
        m = metrics(allc)
        pred7 = allc[LABELS].idxmax(axis=1)
        u7, cm7 = uar(allc["emotion"], pred7, LABELS)
        m["uar_7class"] = round(u7, 3)
        m["confusion_7class"] = {"labels": LABELS, "rows_true_cols_pred": cm7.tolist()}
        m["chance_uar_7class"] = round(1 / 7, 3)
        ev[f"emodb_loso_{name}"] = m
    return ev


def _meta(evaluation: dict[str, Any], c: float) -> dict[str, Any]:
    return {
        "training": {
            "corpus": "EmoDB (Burkhardt et al. 2005), 535 clips, 10 speakers (5 F, 5 M), German, "
                      "acted; copy github:sylaschacko/voice-emotion-analysis wav/ (clips cut or "
                      "padded to 2.0 s at 22.05 kHz)",
            "unit": "one engine speech segment (Silero VAD; audio.min_speech_s = 0.5, "
                    "segments.min_segment_s = 0.5), measures from the prosody stream",
            "model": f"scikit-learn LogisticRegression (multinomial, lbfgs, L2, C = {c}, "
                     "class_weight = balanced) on standardised measures",
            "speaker_reference": "speaker variant: mean and SD of each measure over the "
                                 "speaker's neutral clips; SD floored at half the median "
                                 "within-speaker SD",
            "script": "benchmarks/train_emotion_head.py",
        },
        "licence": {
            "file": "CC0-1.0 (coefficients fitted only on the CC0 EmoDB copy)",
            "training_data": "EmoDB, CC0 1.0 as packaged by audeering",
            "evaluation_data": "RAVDESS speech, CC BY-NC-SA 4.0 (evaluation only; nothing of "
                               "it is in this file but the figures)",
        },
        "evaluation": evaluation,
    }


def report(ev: dict[str, Any]) -> str:
    lines = ["| evaluation | variant | 4-class UAR | binary arousal UAR | n (4-class / arousal) |",
             "|---|---|---|---|---|"]
    for key, title in (("cross_corpus", "EmoDB → RAVDESS"), ("emodb_loso", "EmoDB LOSO")):
        for var in ("raw", "speaker"):
            if f"{key}_{var}" not in ev:
                continue
            m = ev[f"{key}_{var}"]
            lines.append(f"| {title} | {var} | {m['uar_4class']:.3f} | {m['uar_arousal']:.3f} "
                         f"| {m['n_4class']} / {m['n_arousal']} |")
    lines.append("")
    for key in ("cross_corpus_raw", "cross_corpus_speaker", "emodb_loso_raw",
                "emodb_loso_speaker"):
        if key not in ev:
            continue
        m = ev[key]
        lines.append(f"{key}: 4-class confusion (rows true {FOUR}, cols predicted) "
                     f"{m['confusion_4class']['rows_true_cols_pred']}; arousal (high, low) "
                     f"{m['confusion_arousal']['rows_true_cols_pred']}"
                     + (f"; 7-class UAR {m['uar_7class']}" if "uar_7class" in m else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fit and evaluate the emotion measures head")
    ap.add_argument("--emodb", default="benchmarks/results/emodb_features.parquet")
    ap.add_argument("--ravdess", default="benchmarks/results/ravdess_features.parquet")
    ap.add_argument("-o", "--output",
                    default="features/emotion/data/emotion_measures_head.json")
    ap.add_argument("-C", type=float, default=0.3, help="inverse L2 strength")
    ap.add_argument("--no-loso", action="store_true", help="skip the EmoDB LOSO evaluation")
    args = ap.parse_args(argv)
    emo = _ok(pd.read_parquet(args.emodb))
    rav = _ok(pd.read_parquet(args.ravdess)) if args.ravdess else None
    ev = evaluate(emo, rav, args.C, loso=not args.no_loso)
    content = _content(fit_all(emo, args.C), _meta(ev, args.C))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    MeasuresHead.load(out)  # round trip: the file verifies
    print(report(ev))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
