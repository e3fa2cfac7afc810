"""Within-speaker stress check on RAVDESS, with and without the emotion evidence, side by side.

For every RAVDESS actor: a speaker profile is built from the first half (by file name) of the
actor's neutral clips and of its calm clips (2 + 4 clips); each remaining clip is fused as one
session with that profile (the literature prior, ``configs/fusion_prior.json``, NOT
calibrated) and its stress is the mean of its segments' stress. The AUC is that of the
actor's angry and fearful clips (positive) against the held-out neutral and calm clips
(negative). Two conditions on the same cached measures, in one run of the same build:

* ``prosody``: segments carry the prosody rows only (the emotion stream did not run);
* ``prosody+emotion``: segments also carry the offline measures head's output (speaker
  variant, its reference the same profile clips — the engine passes the numbers in), so the
  prior's ``emotion_fearful``, ``emotion_angry`` and ``emotion_arousal`` terms get evidence.

Between speakers (no profile): each held-out clip fused alone, as a user analyses one clip
with no speaker profile: a clip with one segment is scored against population reference values
(``scores.stress.reference = "population"``), one with more against its own segments. The AUC
is pooled over all actors (each clip's mean stress, angry + fearful against neutral + calm).

Input: the cached per-segment measures of ``benchmarks/emotion_features.py`` (analysed with
``audio.min_speech_s = 0.5``). Run::

    python benchmarks/stress_ravdess.py benchmarks/results/ravdess_features.parquet

Measures cached before ``alpha_ratio_db`` took openSMILE's orientation (positive for speech)
are read with ``--alpha-orientation legacy`` (the column is negated: an exact conversion).
Prints the per-actor Markdown table of ``docs/scores.md``, the means and the between-speaker
figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.emotion.measures_head import MeasuresHead, SpeakerReference  # noqa: E402
from features.emotion.stream import EmotionMeasures  # noqa: E402
from features.prosody.stream import ProsodyMeasures  # noqa: E402
from fusion.schema import SegmentResult  # noqa: E402
from fusion.scoring.baseline import profile_from_segments  # noqa: E402
from fusion.scoring.fuser import Fuser  # noqa: E402

POSITIVE = ("angry", "fearful")
NEGATIVE = ("neutral", "calm")
CONDITIONS = ("prosody", "prosody+emotion")
_PROSODY_FIELDS = [k for k in ProsodyMeasures.model_fields if k != "missing"]
_INT_FIELDS = {"syllable_count", "pause_count"}


def _prosody(row: pd.Series) -> ProsodyMeasures:
    vals: dict[str, Any] = {}
    for k in _PROSODY_FIELDS:
        v = row.get(k)
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            continue
        vals[k] = int(v) if k in _INT_FIELDS else float(v)
    return ProsodyMeasures(**vals)


def _emotion(head: MeasuresHead, pro: ProsodyMeasures,
             ref: SpeakerReference | None) -> EmotionMeasures:
    p = head.predict_proba([pro.model_dump()], ref)
    probs = {lab: float(p[0, i]) for i, lab in enumerate(head.labels)}
    top = max(probs, key=probs.__getitem__)
    return EmotionMeasures(probabilities=probs, top_label=top,
                           arousal=float(head.arousal(p)[0]), n_windows=1,
                           model_probabilities=dict(probs), model_top_label=top,
                           unmapped_probability=0.0)


def _auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Mann–Whitney AUC (ties count one half)."""
    a, b = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (a.size * b.size))


def _segments(d: pd.DataFrame, head: MeasuresHead, ref: SpeakerReference | None,
              with_emotion: bool) -> list[SegmentResult]:
    """The cached rows of one clip (or of the profile clips) as segments; with the emotion
    head's output (``ref``: its speaker reference, or None for the raw variant) if asked."""
    res = []
    for i, (_, r) in enumerate(d.iterrows()):
        pro = _prosody(r)
        emo = _emotion(head, pro, ref) if with_emotion else None
        res.append(SegmentResult(index=i, start_s=float(r["start_s"]),
                                 end_s=float(r["end_s"]), prosody=pro, emotion=emo))
    return res


def _held_out_clips(df: pd.DataFrame,
                    prof_paths: set[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(side, clip)`` of each clip not in the profile: ``pos`` angry/fearful, ``neg``
    neutral/calm; other emotions are left out."""
    for _path, clip in df[~df["path"].isin(prof_paths)].groupby("path"):
        emo_label = clip["emotion"].iloc[0]
        if emo_label in POSITIVE:
            yield "pos", clip
        elif emo_label in NEGATIVE:
            yield "neg", clip


def actor_aucs(df: pd.DataFrame, head: MeasuresHead, fuser: Fuser) -> dict[str, Any]:
    """AUCs of one actor's clips without and with the emotion evidence."""
    prof_paths: set[str] = set()
    for lab in NEGATIVE:  # the first half (by name) of the neutral and of the calm clips
        paths = sorted(df.loc[df["emotion"] == lab, "path"].unique())
        prof_paths.update(paths[: len(paths) // 2])
    prof = df[df["path"].isin(prof_paths)]
    ref = SpeakerReference.from_rows([_prosody(r).model_dump() for _, r in prof.iterrows()])
    out: dict[str, Any] = {"actor": df["speaker"].iloc[0], "n_profile_clips": len(prof_paths)}
    settings = fuser._require().normalisation
    pooled: list[tuple[str, str, float, float]] = []
    out["pooled"] = pooled
    for cond in CONDITIONS:
        with_emotion = cond == "prosody+emotion"
        fuser.profile_ = profile_from_segments(_segments(prof, head, ref, with_emotion),
                                               settings)
        scores: dict[str, list[float]] = {"pos": [], "neg": []}
        for side, clip in _held_out_clips(df, prof_paths):
            fused, _ = fuser.fuse(_segments(clip, head, ref, with_emotion))
            vals = [s.scores.stress.value for s in fused
                    if s.scores is not None and s.scores.stress.value is not None]
            if vals:
                scores[side].append(float(np.mean(vals)))
                speech_s = float((clip["end_s"] - clip["start_s"]).sum())
                pooled.append((cond, side, float(np.mean(vals)), speech_s))
        out[cond] = _auc(scores["pos"], scores["neg"])
        out["n_pos"], out["n_neg"] = len(scores["pos"]), len(scores["neg"])
    # between speakers: no profile, no speaker reference for the emotion head
    fuser.profile_ = None
    between: list[tuple[str, str, float, str]] = []
    out["between"] = between
    for cond in CONDITIONS:
        for side, clip in _held_out_clips(df, prof_paths):
            fused, _ = fuser.fuse(_segments(clip, head, None, cond == "prosody+emotion"))
            scored = [s.scores.stress for s in fused
                      if s.scores is not None and s.scores.stress.value is not None]
            if scored:
                between.append((cond, side, float(np.mean([d.value for d in scored])),
                                str(scored[0].reference)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("features", nargs="?",
                    default="benchmarks/results/ravdess_features.parquet")
    ap.add_argument("--head", default=None, help="measures head JSON (default: shipped)")
    ap.add_argument("--alpha-orientation", choices=["opensmile", "legacy"], default="opensmile",
                    help="legacy: the features were cached when alpha_ratio_db had the "
                         "opposite sign (negate it on reading)")
    args = ap.parse_args(argv)
    df = pd.read_parquet(args.features)
    df = df[df["status"] == "ok"]
    if args.alpha_orientation == "legacy":
        df = df.assign(alpha_ratio_db=-df["alpha_ratio_db"])
    head = MeasuresHead.load(args.head)
    fuser = Fuser().load()
    rows = [actor_aucs(g, head, fuser) for _, g in df.groupby("speaker")]
    print("| actor | sex | profile clips | angry+fearful / neutral+calm clips | AUC prosody | "
          "AUC prosody+emotion |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = int(r["actor"][-2:])
        print(f"| {n:02d} | {'M' if n % 2 else 'F'} | {r['n_profile_clips']} | "
              f"{r['n_pos']} / {r['n_neg']} | {r['prosody']:.3f} | {r['prosody+emotion']:.3f} |")
    a = np.array([r["prosody"] for r in rows])
    b = np.array([r["prosody+emotion"] for r in rows])
    print(f"| **mean** ({len(rows)} actors) | | | | **{a.mean():.3f}** | **{b.mean():.3f}** |")
    pooled = pd.DataFrame([p for r in rows for p in r["pooled"]],
                          columns=["cond", "side", "stress", "speech_s"])
    print("\nPooled over actors (each clip's stress is re its own actor's profile), by the "
          "clip's detected speech:\n")
    print("| speech in clip | clips (pos / neg) | AUC prosody | AUC prosody+emotion |")
    print("|---|---|---|---|")
    for lo, hi in ((0.0, 1.5), (1.5, 2.0), (2.0, 99.0)):
        cell = []
        for cond in CONDITIONS:
            g = pooled[(pooled["cond"] == cond) & (pooled["speech_s"] >= lo)
                       & (pooled["speech_s"] < hi)]
            pos, neg = g[g["side"] == "pos"]["stress"], g[g["side"] == "neg"]["stress"]
            cell.append((len(pos), len(neg), _auc(pos, neg) if len(pos) and len(neg)
                         else float("nan")))
        print(f"| {lo:.1f}–{hi:.1f} s | {cell[0][0]} / {cell[0][1]} | {cell[0][2]:.3f} | "
              f"{cell[1][2]:.3f} |")
    print(f"\nmedian {np.median(a):.3f} vs {np.median(b):.3f}; emotion raised the AUC for "
          f"{int((b > a).sum())} actors, lowered it for {int((b < a).sum())}")
    between = pd.DataFrame([p for r in rows for p in r["between"]],
                           columns=["cond", "side", "stress", "reference"])
    print("\nBetween speakers (no profile; each held-out clip fused alone), pooled over "
          f"{len(rows)} actors:\n")
    print("| condition | clips (pos / neg) | reference population / session | AUC |")
    print("|---|---|---|---|")
    for cond in CONDITIONS:
        g = between[between["cond"] == cond]
        pos, neg = g[g["side"] == "pos"]["stress"], g[g["side"] == "neg"]["stress"]
        n_pop = int((g["reference"] == "population").sum())
        print(f"| {cond} | {len(pos)} / {len(neg)} | {n_pop} / {len(g) - n_pop} | "
              f"{_auc(pos, neg):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
