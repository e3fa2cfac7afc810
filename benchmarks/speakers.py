"""Speaker diarization accuracy on recordings with known turns (issue #16 targets).

Run (about 1-2 minutes on 2 cores)::

    /work/main/.venv/bin/python benchmarks/speakers.py            # targets (LibriSpeech)
    /work/main/.venv/bin/python benchmarks/speakers.py --calibrate  # threshold sweep (espeak, jfk)
    /work/main/.venv/bin/python benchmarks/speakers.py --pipeline-minutes 10  # added time

``--pipeline-minutes M``: the whole default pipeline (``configs/default.toml``) on the
SYNTHETIC bundled session tiled to M minutes, with ``speakers.mode`` ``off`` and ``auto``
side by side in one process (models loaded once each, alternating off, auto, off, auto; the
medians are printed with the ``speakers`` stage time).

Material, built in memory:

* REAL voices, LibriSpeech test-other (``/work/shared/data/librispeech``: 1688 M, 2033 M,
  367 F, 533 F; CC BY 4.0): utterances concatenated into turns with 0.4 s of silence between
  utterances, so the truth is known to the sample. These voices MEASURE the targets; no
  threshold was set on them.
* SYNTHETIC voices, espeak-ng (en-us+m3, en+f3, en-gb-x-rp+m1, en+f5), and the real voice of
  ``jfk.flac``: these CALIBRATE ``speakers.merge_similarity`` (``--calibrate``).
* channels: a stereo file, speaker A on the left and B on the right, each also leaking into
  the other channel at -30 dB (crosstalk).

Score: time-weighted speaker accuracy over the true speech under the best one-to-one mapping of
estimated to true labels (Hungarian), speech the system left unlabelled counting as wrong; and
the estimated count.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.audio.load import load_audio  # noqa: E402
from features.segments.vad import SegmentsConfig, segment_audio  # noqa: E402
from features.speakers.channels import diarize_channels  # noqa: E402
from features.speakers.config import SpeakersConfig  # noqa: E402
from features.speakers.diarize import diarize  # noqa: E402
from features.speakers.encoder import SpeakerEncoder  # noqa: E402
from features.speakers.result import SpeakersResult  # noqa: E402

SR = 16_000
LIBRI = Path("/work/shared/data/librispeech")
JFK = Path("/work/shared/data/jfk.flac")
GAP_S = 0.4
ESPEAK_VOICES = ("en-us+m3", "en+f3", "en-gb-x-rp+m1", "en+f5")
ESPEAK_TEXTS = (
    "The committee met on Tuesday to review the budget for the coming year, and the discussion "
    "went on for most of the afternoon.",
    "After the storm had passed, the children ran out into the garden to look for the frogs "
    "that had appeared near the pond.",
    "Please remember to bring your notes and the signed forms to the meeting room before nine "
    "o'clock tomorrow morning.",
    "She told me that the train would be late again, so we decided to walk along the river "
    "instead of waiting on the platform.",
)


def utterances(speaker: str) -> list[np.ndarray]:
    """The ten LibriSpeech utterances of ``speaker`` (16 kHz mono)."""
    return [load_audio(f, hash_file=False).y
            for f in sorted(glob.glob(str(LIBRI / speaker / "*.flac")))]


def espeak(text: str, voice: str) -> np.ndarray:
    """espeak-ng speech (SYNTHETIC), 16 kHz mono."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True,
                       capture_output=True)
        return load_audio(path, hash_file=False).y


def concatenate(turns: Sequence[tuple[str, np.ndarray]], gap_s: float = GAP_S
                ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One signal from (speaker, utterance) turns with ``gap_s`` silences; the truth."""
    gap = np.zeros(int(gap_s * SR), dtype=np.float32)
    parts: list[np.ndarray] = [gap]
    truth: list[tuple[float, float, str]] = []
    t = gap_s
    for spk, u in turns:
        parts += [u.astype(np.float32), gap]
        truth.append((t, t + len(u) / SR, spk))
        t += len(u) / SR + gap_s
    return np.concatenate(parts), truth


def interleave(voices: dict[str, list[np.ndarray]], n_turns: int, seed: int = 0
               ) -> list[tuple[str, np.ndarray]]:
    """``n_turns`` turns cycling through the voices in a shuffled order, never repeating."""
    rng = np.random.default_rng(seed)
    names = list(voices)
    used = {n: 0 for n in names}
    out: list[tuple[str, np.ndarray]] = []
    prev = None
    for _ in range(n_turns):
        choices = [n for n in names if n != prev] or names
        spk = choices[int(rng.integers(len(choices)))]
        out.append((spk, voices[spk][used[spk] % len(voices[spk])]))
        used[spk] += 1
        prev = spk
    return out


def accuracy(result: SpeakersResult, truth: Sequence[tuple[float, float, str]],
             step_s: float = 0.01) -> tuple[float, float]:
    """(accuracy, coverage) of the speaker labels.

    accuracy: time-weighted, over the true speech that the system labelled (its VAD found it),
    under the best one-to-one mapping of estimated to true labels (Hungarian); coverage: the
    fraction of the true speech that got a label at all (a VAD matter, reported apart: the
    truth spans whole LibriSpeech utterances, their leading and trailing silences included).
    """
    from scipy.optimize import linear_sum_assignment

    true_names = sorted({s for _, _, s in truth})
    est_names = sorted({t.speaker for t in result.turns})
    conf = np.zeros((len(true_names), max(1, len(est_names))))
    total = 0.0
    for t0, t1, spk in truth:
        for ts in np.arange(t0, t1, step_s):
            total += step_s
            est = result.speaker_at(float(ts))
            if est is not None:
                conf[true_names.index(spk), est_names.index(est)] += step_s
    labelled = float(conf.sum())
    if labelled == 0.0:
        return 0.0, 0.0
    rows, cols = linear_sum_assignment(-conf)
    return float(conf[rows, cols].sum() / labelled), labelled / total


def run_auto(y: np.ndarray, cfg: SpeakersConfig,
             enc: SpeakerEncoder) -> tuple[SpeakersResult, float]:
    segs = segment_audio(y, SR, SegmentsConfig())
    t = time.perf_counter()
    res = diarize(y, segs, cfg, encoder=enc)
    return res, time.perf_counter() - t


def targets(enc: SpeakerEncoder, cfg: SpeakersConfig) -> list[dict[str, object]]:
    v = {s: utterances(s) for s in ("1688", "2033", "367", "533")}
    cases: list[tuple[str, dict[str, list[np.ndarray]], int, float, float]] = [
        ("2 real, opposite sex (1688 M, 367 F)", {"1688": v["1688"], "367": v["367"]}, 10, 0.95,
         GAP_S),
        ("2 real, same sex M (1688, 2033)", {"1688": v["1688"], "2033": v["2033"]}, 10, 0.95,
         GAP_S),
        ("2 real, same sex F (367, 533)", {"367": v["367"], "533": v["533"]}, 10, 0.95, GAP_S),
        ("4 real (1688, 2033, 367, 533)", v, 16, 0.90, GAP_S),
        ("2 real opp. sex, 0.1 s gaps (1688, 533)", {"1688": v["1688"], "533": v["533"]}, 10,
         0.95, 0.1),
        ("2 real same sex M, 0.1 s gaps", {"1688": v["1688"], "2033": v["2033"]}, 10, 0.95,
         0.1),
        ("2 real same sex F, 0.1 s gaps", {"367": v["367"], "533": v["533"]}, 10, 0.95, 0.1),
        ("4 real, 0.1 s gaps", v, 16, 0.90, 0.1),
        ("1 real (2033)", {"2033": v["2033"]}, 8, 0.95, GAP_S),
        ("1 real (533)", {"533": v["533"]}, 8, 0.95, GAP_S),
    ]
    rows: list[dict[str, object]] = []
    for name, voices, n_turns, target, gap_s in cases:
        y, truth = concatenate(interleave(voices, n_turns, seed=1), gap_s)
        res, dt = run_auto(y, cfg, enc)
        rows.append({"case": name, "speech_s": round(sum(b - a for a, b, _ in truth), 1),
                     "true_n": len(voices), "est_n": res.num_speakers,
                     "accuracy": round(accuracy(res, truth)[0], 3), "target": target,
                     "coverage": round(accuracy(res, truth)[1], 3),
                     "diarize_s": round(dt, 2)})
    # channels mode with -30 dB crosstalk (real voices 1688 and 533)
    y, truth = concatenate(interleave({"1688": v["1688"], "533": v["533"]}, 10, seed=2))
    left, right = np.zeros_like(y), np.zeros_like(y)
    for t0, t1, spk in truth:
        i0, i1 = int(t0 * SR), int(t1 * SR)
        (left if spk == "1688" else right)[i0:i1] = y[i0:i1]
    xt = 10 ** (-30 / 20)
    stereo = np.stack([left + xt * right, right + xt * left], axis=1)
    segs = segment_audio(y, SR, SegmentsConfig())
    res = diarize_channels(stereo, segs, cfg)
    rows.append({"case": "channels, stereo, -30 dB crosstalk (1688 | 533)",
                 "speech_s": round(sum(b - a for a, b, _ in truth), 1), "true_n": 2,
                 "est_n": res.num_speakers, "accuracy": round(accuracy(res, truth)[0], 3),
                 "coverage": round(accuracy(res, truth)[1], 3),
                 "target": 0.95, "diarize_s": None})
    return rows


def calibrate(enc: SpeakerEncoder) -> None:
    """Sweep merge_similarity on SYNTHETIC espeak voices and jfk (never the target voices)."""
    ev = {voice: [espeak(t, voice) for t in ESPEAK_TEXTS] for voice in ESPEAK_VOICES}
    jfk = load_audio(JFK, hash_file=False).y
    cases = [
        ("2 espeak (m3, f3)", {k: ev[k] for k in ESPEAK_VOICES[:2]}, 8),
        ("2 espeak male (m3, rp+m1)", {k: ev[k] for k in (ESPEAK_VOICES[0], ESPEAK_VOICES[2])}, 8),
        ("2 espeak female (f3, f5)", {k: ev[k] for k in (ESPEAK_VOICES[1], ESPEAK_VOICES[3])}, 8),
        ("4 espeak", ev, 12),
        ("jfk + espeak f3", {"jfk": [jfk] * 3, "f3": ev["en+f3"]}, 6),
        ("1 real (jfk x4)", {"jfk": [jfk]}, 4),
        ("1 espeak (m3)", {"m3": ev["en-us+m3"]}, 4),
    ]
    for thr in (0.70, 0.75, 0.80, 0.85, 0.90):
        cfg = SpeakersConfig(merge_similarity=thr)
        line = []
        for name, voices, n in cases:
            if len(voices) == 1:
                only = next(iter(voices))
                turns = [(only, voices[only][i % len(voices[only])]) for i in range(n)]
            else:
                turns = interleave(voices, n, seed=3)
            y, truth = concatenate(turns)
            res, _ = run_auto(y, cfg, enc)
            line.append(f"{name}: n={res.num_speakers}/{len(voices)} "
                        f"acc={accuracy(res, truth)[0]:.3f}")
        print(f"merge_similarity={thr:.2f} | " + " | ".join(line), flush=True)


def pipeline_cost(minutes: float, rounds: int) -> int:
    """Default pipeline, speakers off vs auto, same file, same process, alternating."""
    import time
    from pathlib import Path

    from features.audio.load import load_audio
    from fusion.config import load_config
    from fusion.engine.analyzer import Analyzer

    root = Path(__file__).resolve().parents[1]
    y0 = load_audio(root / "examples" / "synthetic_session.flac").y
    n = int(minutes * 60 * SR)
    y = np.tile(y0, n // len(y0) + 1)[:n]
    analyzers = {mode: Analyzer(load_config().with_overrides([f"speakers.mode={mode}"])).load()
                 for mode in ("off", "auto")}
    totals: dict[str, list[float]] = {"off": [], "auto": []}
    stage: list[float] = []
    for _ in range(rounds):
        for mode, an in analyzers.items():
            t0 = time.perf_counter()
            run = an.run_signal(y, SR)
            totals[mode].append(time.perf_counter() - t0)
            if mode == "auto":
                stage.append(run.timings.get("speakers", 0.0))
                d = run.result.diarization
                print(f"  auto: {d.num_speakers if d else '?'} speakers found, speakers stage "
                      f"{stage[-1]:.1f} s", flush=True)
            print(f"  {mode}: {totals[mode][-1]:.1f} s", flush=True)
    off, auto = float(np.median(totals["off"])), float(np.median(totals["auto"]))
    print(f"{minutes:g}-min file, median of {rounds}: off {off:.1f} s, auto {auto:.1f} s "
          f"(x{auto / off:.2f}); speakers stage {float(np.median(stage)):.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibrate", action="store_true", help="sweep the merge threshold")
    ap.add_argument("--window-s", type=float, default=None, help="override speakers.window_s")
    ap.add_argument("--hop-s", type=float, default=None, help="override speakers.hop_s")
    ap.add_argument("--pipeline-minutes", type=float, default=None,
                    help="time the default pipeline with speakers off vs auto on a file of "
                         "this many minutes")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --pipeline-minutes")
    args = ap.parse_args(argv)
    if args.pipeline_minutes:
        return pipeline_cost(args.pipeline_minutes, args.rounds)
    enc = SpeakerEncoder().load()
    if args.calibrate:
        calibrate(enc)
        return 0
    over = {k: v for k, v in (("window_s", args.window_s), ("hop_s", args.hop_s)) if v}
    cfg = SpeakersConfig(**over)
    print(f"{'case':52s} {'speech_s':>8s} {'n':>5s} {'accuracy':>8s} {'target':>6s} "
          f"{'diarize_s':>9s} {'coverage':>8s}")
    for r in targets(enc, cfg):
        count = str(r['est_n']) + '/' + str(r['true_n'])
        print(f"{r['case']!s:52s} {r['speech_s']!s:>8s} {count:>5s}"
              f" {r['accuracy']!s:>8s} {r['target']!s:>6s} {r['diarize_s']!s:>9s}"
              f" {r['coverage']!s:>8s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
