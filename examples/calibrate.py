"""Fit and calibrate a stress head on a small SYNTHETIC labelled corpus (espeak-ng voices).

What it does:

1. speaks sessions with six espeak-ng voices (en-us, en-gb, en+f3, en+m3, en-us+f2, en-gb+m1);
   per voice, "calm" sessions (moderate rate, mid and narrow pitch, neutral or positive wording)
   and "stressed" sessions (faster, higher and wider pitch, negative first-person wording).
   Rates, pitches and ranges are drawn at random per sentence so that the classes overlap;
2. runs the real analysis (``fusion.engine.analyzer.Analyzer``: Silero VAD, Praat prosody,
   faster-whisper transcript, VADER sentiment; the emotion stream is used if its model is
   cached) on every session, caching the JSON results;
3. fits a logistic stress head with speaker-grouped cross-validation (each fold tests
   speakers the model never saw), calibrates it (Platt; inner speaker-grouped folds) and prints
   AUC, balanced accuracy, F1, Brier and ECE before and after calibration;
4. writes the model JSON.

**Everything here is synthetic**: a formant synthesiser speaking scripted text with scripted
prosody is not a person under stress. The printed metrics show that the machinery works
end to end; they say nothing about how well the scores track stress in people.

Run (a few minutes on 2 cores)::

    python examples/calibrate.py                     # writes out/calibrate_example/
    python examples/calibrate.py --sessions 2        # quicker: 2 calm + 2 stressed per voice
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
ROOT = Path(__file__).resolve().parents[1]

# (voice, espeak base pitch 0-99): six synthetic "speakers"
VOICES = [("en-us", 40), ("en-gb", 45), ("en+f3", 50), ("en+m3", 38), ("en-us+f2", 55),
          ("en-gb+m1", 42)]

CALM = [
    "We spent a quiet afternoon in the garden and the tomatoes are growing well.",
    "The weather was mild, so we walked along the river and stopped for coffee.",
    "My sister visited on Sunday and we cooked a simple dinner together.",
    "The library was peaceful today and I finished reading a lovely book.",
    "In the morning the market was busy, and we bought bread and fresh flowers.",
    "The children played in the park while we talked about the summer holiday.",
    "Work went smoothly this week and the team finished the report on time.",
    "We listened to some music in the evening and then went to bed early.",
]
STRESSED = [
    "I can't cope with this deadline, everything is going wrong and I am so worried.",
    "I always make mistakes and I feel terrible, my manager is furious with me.",
    "This is a disaster, I never have enough time and I hate this awful pressure.",
    "I am scared I will fail again, nothing works and I feel completely lost.",
    "Everyone is angry with me and I keep panicking about the stupid report.",
    "I can't sleep, I am exhausted and afraid that I will lose my job.",
    "The server crashed again and I am totally overwhelmed and anxious.",
    "I feel awful, I am behind on everything and I can never catch up.",
]


def speak(text: str, voice: str, rate: int, pitch: int, range_pct: int, wav: Path) -> np.ndarray:
    """One sentence of synthetic espeak-ng speech at 16 kHz."""
    import soxr

    ssml = f'<speak><prosody range="{range_pct}%">{text}</prosody></speak>'
    subprocess.run(["espeak-ng", "-m", "-v", voice, "-s", str(rate), "-p", str(pitch),
                    "-w", str(wav), ssml], check=True, capture_output=True, timeout=60)
    y, sr = sf.read(wav, dtype="float32")
    return soxr.resample(y, sr, SR).astype(np.float32)


def make_session(path: Path, voice: str, base_pitch: int, stressed: bool,
                 rng: np.random.Generator, n_sentences: int = 4) -> None:
    """Write one synthetic session: sentences separated by pauses of 0.6–1.0 s.

    The classes overlap on purpose: a stressed session draws each sentence from the negative
    pool with probability 0.6 (a calm one with 0.2); every session gets a random "day" offset
    of pitch and rate whatever its label; per-sentence rate, pitch and range are random with
    class means only moderately apart.
    """
    p_negative = 0.6 if stressed else 0.2
    day_pitch = rng.normal(0, 3)
    day_rate = rng.normal(0, 8)
    calm_pool = list(rng.permutation(CALM))
    neg_pool = list(rng.permutation(STRESSED))
    parts = [np.zeros(int(0.4 * SR), dtype=np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_sentences):
            text = neg_pool.pop() if rng.random() < p_negative else calm_pool.pop()
            rate = int(rng.normal((170 if stressed else 155) + day_rate, 15))
            pitch = int(np.clip(rng.normal(base_pitch + day_pitch + (6 if stressed else 0), 5),
                                0, 99))
            range_pct = int(np.clip(rng.normal(125 if stressed else 100, 30), 20, 300))
            parts.append(speak(str(text), voice, rate, pitch, range_pct, Path(tmp) / f"{i}.wav"))
            parts.append(np.zeros(int(rng.uniform(0.6, 1.0) * SR), dtype=np.float32))
    y = np.concatenate(parts)
    y = 0.5 * y / max(1e-9, float(np.max(np.abs(y))))
    sf.write(path, y, SR, subtype="PCM_16")


def build_corpus(out: Path, n_sessions: int, seed: int) -> Path:
    """Synthesise the corpus (once) and write labels.csv; returns its path."""
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["file,speaker,stress"]
    for voice, pitch in VOICES:
        for stressed in (False, True):
            for k in range(n_sessions):
                name = f"{voice.replace('+', '_')}_{'stressed' if stressed else 'calm'}_{k}.wav"
                path = audio / name
                if not path.exists():
                    make_session(path, voice, pitch, stressed, rng)
                lines.append(f"audio/{name},{voice},{int(stressed)}")
    labels = out / "labels.csv"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "calibrate_example")
    parser.add_argument("--sessions", type=int, default=3,
                        help="calm and stressed sessions per voice (default 3)")
    parser.add_argument("--method", default="platt", choices=["platt", "temperature",
                                                               "isotonic"])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1

    from fusion.cli.commands.calibrate import print_reports
    from fusion.config import config_dir, load_config
    from fusion.engine.analyzer import Analyzer
    from fusion.scoring.baseline import load_norms
    from fusion.scoring.head import load_prior
    from fusion.training.labels import (
        build_training_table,
        fit_heads,
        load_sessions,
        read_label_csv,
        save_reports,
    )

    t0 = time.perf_counter()
    labels = build_corpus(args.out, args.sessions, args.seed)
    print(f"synthetic corpus: {len(VOICES)} espeak-ng voices × {args.sessions} calm + "
          f"{args.sessions} stressed sessions ({time.perf_counter() - t0:.0f} s)")
    cfg = load_config()
    rows = read_label_csv(labels)
    t1 = time.perf_counter()
    sessions = load_sessions(rows, analyzer_factory=lambda: Analyzer(cfg).load(),
                             analyses_dir=args.out / "analyses", config_hash=cfg.config_hash())
    streams = sorted({n for s in sessions.values() for n, i in s.streams.items()
                      if str(i.status) == "ok"})
    print(f"analysed {len(sessions)} sessions with the real pipeline "
          f"({time.perf_counter() - t1:.0f} s; streams ok: {', '.join(streams)})")

    spec = load_prior()
    norms = load_norms(config_dir() / "population_norms.json")
    table = build_training_table(rows, sessions, spec, norms, speaker_baseline="speaker")
    d = table.description
    print(f"training table: {d['n_segments']} segments, {d['n_sessions']} sessions, "
          f"{d['n_speakers']} speakers (session labels apply to all their segments)")
    reports = fit_heads(table, spec, method=args.method, folds=len(VOICES))
    print("\nSYNTHETIC data — metrics on held-out speakers (leave-one-voice-out):")
    print_reports(reports)
    for r in reports:
        before = r.cv["metrics"]["uncalibrated"]["ece"]
        after = r.cv["metrics"]["calibrated"]["ece"]
        print(f"{r.head}: segment-level ECE on held-out speakers {before:.3f} → {after:.3f} "
              f"after {args.method} calibration ({'lower' if after < before else 'NOT lower'})")
        top = sorted(zip(r.model.features_used_, r.model.coef_, strict=True),
                     key=lambda t: -abs(t[1]))[:6]
        print("  largest weights: " + ", ".join(f"{n} {w:+.2f}" for n, w in top))
    path = save_reports(args.out / "stress_model.json", reports, spec, norms, table,
                        name="synthetic-espeak-stress-example",
                        extra={"label_table": str(labels), "config_hash": cfg.config_hash(),
                               "note": "SYNTHETIC espeak-ng corpus; not valid for people"})
    print(f"\nwrote {path}  (total {time.perf_counter() - t0:.0f} s)")
    print(f"score with it:  vocalfusion analyze FILE --set fusion.scoring.head={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
