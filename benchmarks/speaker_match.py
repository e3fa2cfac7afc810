"""Calibrate ``speakers.match_similarity`` (a speaker's voiceprint vs a profile's): cosine of
two voiceprints of the same voice (different sentences) and of different voices.

CALIBRATION set (the threshold was chosen on it): SYNTHETIC espeak-ng voices (en-us+m3, +f3,
+m1, +f2, en-gb+m2) and REAL jfk.flac (its two halves). TEST set (measured, never tuned on):
REAL LibriSpeech 1688 M, 2033 M, 367 F, 533 F (utterances 0-2 vs 5-7). Run by hand (≈ 1 min):

    .venv/bin/python benchmarks/speaker_match.py
"""

from __future__ import annotations

import glob
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from features.audio.load import load_audio
from features.segments.vad import SegmentsConfig, SileroVAD, segment_audio
from features.speakers.config import SpeakersConfig
from features.speakers.diarize import diarize
from features.speakers.encoder import SpeakerEncoder

SR = 16_000
TEXTS = ["The meeting is at nine tomorrow morning, please bring the documents and the keys.",
         "We walked along the river and talked about the garden for a while before dinner.",
         "After lunch we read the letters and answered the ones that mattered to us most."]
Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


def voiceprint(y: np.ndarray, enc: SpeakerEncoder, vad: SileroVAD) -> np.ndarray:
    segs = segment_audio(y, SR, SegmentsConfig(), vad=vad)
    r = diarize(y, segs, SpeakersConfig(num_speakers=1), encoder=enc, voiceprints=True)
    return np.asarray(r.speakers[0].voiceprint)


def espeak(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
        return load_audio(wav).y


def report(d: Pairs, name: str) -> None:
    same = [float(a @ b) for a, b in d.values()]
    diff = [float(d[x][0] @ d[y][1]) for x in d for y in d if x != y]
    print(f"{name}: same voice min {min(same):.3f} mean {np.mean(same):.3f} | "
          f"different voices max {max(diff):.3f} mean {np.mean(diff):.3f}")
    for x in d:
        print(f"  {x:10s}", " ".join(f"{float(d[x][0] @ d[y][1]):.3f}" for y in d))


def main() -> int:
    enc, vad = SpeakerEncoder().load(), SileroVAD(num_threads=1).load()
    cal: Pairs = {}
    for v in ["en-us+m3", "en-us+f3", "en-us+m1", "en-us+f2", "en-gb+m2"]:
        cal[v] = (voiceprint(espeak(v, TEXTS[0]), enc, vad),
                  voiceprint(np.concatenate([espeak(v, TEXTS[1]), espeak(v, TEXTS[2])]),
                             enc, vad))
    j = load_audio("/work/shared/data/jfk.flac").y
    cal["jfk"] = (voiceprint(j[: len(j) // 2], enc, vad), voiceprint(j[len(j) // 2:], enc, vad))
    report(cal, "CALIBRATION espeak + jfk")
    test: Pairs = {}
    for s in ["1688", "2033", "367", "533"]:
        fs = sorted(glob.glob(f"/work/shared/data/librispeech/{s}/*.flac"))
        a = np.concatenate([load_audio(f).y for f in fs[0:3]])
        b = np.concatenate([load_audio(f).y for f in fs[5:8]])
        test[s] = (voiceprint(a, enc, vad), voiceprint(b, enc, vad))
    report(test, "TEST LibriSpeech")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
