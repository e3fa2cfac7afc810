"""Calibrate a stress head on real speech: acted arousal in RAVDESS (you fetch the data).

What such a model is, plainly: a head that tells **acted high-arousal speech** (angry,
fearful, happy, surprised) from **acted low-arousal speech** (neutral, calm, sad) of 24
professional North-American actors reading two fixed sentences. It is *not* a stress
measurement, it has never seen cortisol, and it is not clinical stress: acted emotion in one
corpus is a stand-in label that lets a user reproduce the whole calibration path
(``vocalfusion calibrate``: speaker-grouped cross-validation, Platt calibration, ECE/Brier/AUC
before and after) on real voices. Disgust clips are left out (arousal ambiguous). RAVDESS is
CC BY-NC-SA 4.0: a model fitted on it inherits non-commercial, share-alike terms.

Data: fetch the RAVDESS speech copy from GitHub repository
``Rahul5430/Speech-Emotion-Recognition-System``, folder
``speech-emotion-recognition-ravdess-data/audio_speech_actors_01-24/`` (see
``benchmarks/datasets.py`` and ``docs/models.md``). Then::

    python examples/calibrate_ravdess.py /path/to/audio_speech_actors_01-24
    python examples/calibrate_ravdess.py /path/to/audio_speech_actors_01-24 --actors 8

Settings for these short clips (about 3.5 s, 1.5–2 s of speech): ``audio.min_speech_s = 0.5``
and ``segments.min_segment_s = 0.5``; transcript and sentiment are off (two fixed sentences
carry no lexical signal); the emotion stream runs the offline measures head. Analyses are
cached under ``--out``; all 1,440 clips take about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

HIGH = {"angry", "fearful", "happy", "surprised"}
LOW = {"neutral", "calm", "sad"}
SETTINGS = ["audio.min_speech_s=0.5", "segments.min_segment_s=0.5", "transcript.enabled=false",
            "sentiment.enabled=false", "emotion.backend=measures"]


def main(argv: list[str] | None = None) -> int:
    from datasets import ravdess_manifest

    ap = argparse.ArgumentParser(description="calibrate a stress head on RAVDESS acted arousal")
    ap.add_argument("folder", type=Path, help="the fetched audio_speech_actors_01-24 folder")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "calibrate_ravdess")
    ap.add_argument("--actors", type=int, default=24, help="use actors 1..N (default 24)")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)
    rows = [r for r in ravdess_manifest(args.folder)
            if int(r.speaker[-2:]) <= args.actors and r.emotion in HIGH | LOW]
    args.out.mkdir(parents=True, exist_ok=True)
    labels = args.out / "labels.csv"
    with open(labels, "w", encoding="utf-8") as fh:
        fh.write("file,speaker,stress\n")
        for r in rows:
            fh.write(f"{r.path},{r.speaker},{int(r.emotion in HIGH)}\n")
    n_high = sum(r.emotion in HIGH for r in rows)
    print(f"{len(rows)} clips of {len({r.speaker for r in rows})} actors: {n_high} high-arousal "
          f"(label stress=1), {len(rows) - n_high} low-arousal (stress=0) — ACTED AROUSAL, "
          "not stress", flush=True)
    cmd = [sys.executable, "-m", "fusion.cli.main", "calibrate", str(labels),
           "-o", str(args.out / "ravdess_arousal_head.json"), "--folds", str(args.folds),
           "--analyses-dir", str(args.out / "analyses"),
           "--name", "ravdess-acted-arousal (CC BY-NC-SA 4.0; not stress)"]
    for s in SETTINGS:
        cmd += ["--set", s]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
