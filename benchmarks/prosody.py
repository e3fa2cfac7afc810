"""Speed of the prosody stream beside openSMILE eGeMAPSv02, and an F0 sanity check.

Run by hand (about 1 minute on 2 CPU cores)::

    /work/venv/bin/python benchmarks/prosody.py [--repeats 3]

Needs ``pip install opensmile`` (extra ``bench``) and espeak-ng.

Audio:

* ``jfk``: REAL speech, examples/jfk.flac (11 s), Silero VAD segments;
* ``espeak``: a SYNTHETIC espeak-ng session (≥ 60 s): twelve sentences at 130–210 words/min
  and three voice pitches, joined by 0.6–1.4 s gaps of quiet noise, Silero VAD segments.

Timed, on the same segments, each ``--repeats`` times (median reported), as real-time factor
(processing seconds / seconds of the whole file; segmentation excluded), wall clock and
process CPU time (all threads; less sensitive to other load on the machine; Praat's pitch
analysis uses several threads, so CPU time can exceed wall time):

* ``prosody``: ``ProsodyStream.run`` (two-pass pitch range + every measure of every segment);
* ``eGeMAPS``: ``opensmile.Smile(eGeMAPSv02, Functionals).process_signal(y, sr, start, end)``
  per segment (88 functionals).

Sanity check: Pearson r, over all segments of both files, between our ``f0_mean_st`` (re
100 Hz, converted to re 27.5 Hz) and eGeMAPS ``F0semitoneFrom27.5Hz_sma3nz_amean``, and their
mean absolute difference in semitones. The two use different pitch trackers (Praat's
autocorrelation vs openSMILE's SHS) and different voicing decisions, so r near 1 and a
difference of a fraction of a semitone are expected, not equality.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.audio.load import Audio, audio_from_signal, load_audio  # noqa: E402
from features.prosody.stream import ProsodyConfig, ProsodyStream  # noqa: E402
from features.segments.vad import Segment, segment_audio  # noqa: E402

SR = 16_000
_SENTENCES = [
    "The weather was calm this morning, so we walked to the market.",
    "Later we talked about the garden and the long summer ahead.",
    "My brother called at noon to say that the train would be late again.",
    "We waited on the platform and counted the birds on the wire.",
    "When the train finally arrived, it was almost empty and very quiet.",
    "In the evening we cooked a simple soup with carrots, onions and beans.",
    "The children read stories aloud until they fell asleep on the sofa.",
    "Tomorrow I have to finish the report and send it to my manager.",
    "She said the meeting went well, although nobody agreed on the budget.",
    "On Sunday we might drive to the coast if the rain stops in time.",
    "I remember the old house by the river where my grandparents lived.",
    "Every winter the lake froze over and we skated until it grew dark.",
]


def synthetic_session(workdir: Path) -> Audio:
    """About 60–70 s of SYNTHETIC espeak-ng speech with pauses between sentences."""
    rng = np.random.default_rng(0)
    parts: list[np.ndarray] = []
    import soundfile as sf

    for k, text in enumerate(_SENTENCES):
        rate = 130 + 10 * (k % 9)
        pitch = (35, 50, 65)[k % 3]
        wav = workdir / f"s{k}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(rate), "-p", str(pitch),
                        "-w", str(wav), text], check=True, capture_output=True, timeout=60)
        y, sr = sf.read(wav, dtype="float32")
        parts.append(audio_from_signal(y, sr).y)
        gap = rng.uniform(0.6, 1.4)
        parts.append((3e-4 * rng.standard_normal(int(gap * SR))).astype(np.float32))
    y = np.concatenate(parts)
    while len(y) < 60 * SR:  # pad with a repeat if a faster espeak makes it shorter
        y = np.concatenate([y, y])
    return audio_from_signal(y, SR, name="<espeak-ng session>")


def _median_time(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and median process CPU seconds (all threads) of ``fn()``."""
    times, cpu, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu), result


def egemaps_rows(smile, audio: Audio, segments: list[Segment]):
    import pandas as pd

    frames = [smile.process_signal(audio.y, audio.sr, start=s.start_s, end=s.end_s)
              for s in segments]
    return pd.concat(frames) if frames else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    try:
        import opensmile
    except ImportError:
        sys.exit("opensmile is not installed: /work/venv/bin/pip install opensmile")
    import parselmouth

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    stream = ProsodyStream(ProsodyConfig(), num_threads=2)
    stream.load()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {"jfk (real)": load_audio(ROOT / "examples" / "jfk.flac"),
                  "espeak (synthetic)": synthetic_session(Path(tmp))}
    print(f"parselmouth {parselmouth.__version__} (Praat {parselmouth.PRAAT_VERSION}), "
          f"opensmile {opensmile.__version__}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} runs\n")
    header = (f"{'audio':<20}{'dur s':>7}{'speech s':>9}{'segs':>5}"
              f"{'prosody s':>11}{'RTF':>8}{'CPU RTF':>9}"
              f"{'eGeMAPS s':>11}{'RTF':>8}{'CPU RTF':>9}{'ratio':>7}")
    print(header)
    print("-" * len(header))
    ours_st, smile_st = [], []
    for name, audio in inputs.items():
        segments = segment_audio(audio.y, audio.sr)
        speech = sum(s.duration_s for s in segments)
        stream.run(audio, segments, {})  # warm-up (imports)
        t_ours, c_ours, out = _median_time(
            lambda a=audio, s=segments: stream.run(a, s, {}), args.repeats)
        egemaps_rows(smile, audio, segments[:1])
        t_smile, c_smile, df = _median_time(
            lambda a=audio, s=segments: egemaps_rows(smile, a, s), args.repeats)
        dur = audio.duration_s
        print(f"{name:<20}{dur:>7.1f}{speech:>9.1f}{len(segments):>5}"
              f"{t_ours:>11.3f}{t_ours / dur:>8.4f}{c_ours / dur:>9.4f}"
              f"{t_smile:>11.3f}{t_smile / dur:>8.4f}{c_smile / dur:>9.4f}"
              f"{t_ours / t_smile:>7.2f}")
        col = df["F0semitoneFrom27.5Hz_sma3nz_amean"].to_numpy()
        for row, st in zip(out.rows, col, strict=True):
            if row is not None and row.f0_mean_st is not None and math.isfinite(st) and st > 0:
                ours_st.append(row.f0_mean_st + 12 * math.log2(100 / 27.5))
                smile_st.append(float(st))
        print(f"{'':<20}pitch range {out.session['pitch_floor_hz']:.0f}–"
              f"{out.session['pitch_ceiling_hz']:.0f} Hz ({out.session['pitch_range_source']}),"
              f" median F0 per segment: "
              + ", ".join(f"{r.f0_median_hz:.0f}" for r in out.rows if r.f0_median_hz))
    a, b = np.asarray(ours_st), np.asarray(smile_st)
    r = float(np.corrcoef(a, b)[0, 1]) if a.size >= 3 else float("nan")
    print("ratio = prosody wall time / eGeMAPS wall time")
    print(f"\nF0 mean (semitones re 27.5 Hz), ours vs eGeMAPS over {a.size} segments: "
          f"r = {r:.3f}, mean |diff| = {np.mean(np.abs(a - b)):.2f} st, "
          f"mean diff (ours - eGeMAPS) = {np.mean(a - b):+.2f} st")


if __name__ == "__main__":
    main()
