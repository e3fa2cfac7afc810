"""Validate the adaptive pitch-range rule against an independent tracker (librosa pyin).

For each voice, the two-pass first pass (Praat ac, 60–700 Hz) runs over that voice's
segments; the range rule gives (floor, ceiling); Praat's ``To Pitch (ac)`` at that range
measures each segment's mean F0, and pyin (50–700 Hz) measures it independently. Reported:
per rule, the median and worst per-segment error of the Praat mean against pyin's (Hz and
percent), and the worst error on the raised segments.

Voices: the four REAL LibriSpeech speakers (1688 M, 2033 M, 367 F, 533 F; 4 utterances each),
REAL jfk.flac (its VAD segments), SYNTHETIC raised speech (espeak-ng en-us: 4 calm sentences
at pitch 40, 2 raised at pitch 90 and double amplitude, one voice) and the SYNTHETIC bundled
session (examples/synthetic_session.flac, its VAD segments). Run by hand (≈ 2 min on 2 cores):

    .venv/bin/python benchmarks/pitch_range.py
"""

from __future__ import annotations

import glob
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from features.audio.load import load_audio
from features.prosody.stream import first_pass_f0
from features.segments.vad import SegmentsConfig, SileroVAD, segment_audio

SR = 16_000
DATA = Path("/work/shared/data")
ROOT = Path(__file__).resolve().parents[1]

CALM = ["The meeting is at nine tomorrow morning, please bring the documents with you.",
        "We walked along the river and talked about the garden for a while.",
        "The report was finished on time and sent to everyone in the office.",
        "After lunch we read the letters and answered the ones that mattered."]
RAISED = ["No! I told you already, this cannot wait, we have to leave right now!",
          "Stop it! Why would you do that? Everything is ruined now!"]

#: (the speaker's first-pass F0, this segment's first-pass F0) → (floor, ceiling)
Rule = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def rule_hirst(f0: np.ndarray, seg: np.ndarray) -> tuple[float, float]:
    """Hirst 2011: floor 0.75 × q25, ceiling 1.5 × q75 of the speaker's F0."""
    q25, q75 = np.quantile(f0, [0.25, 0.75])
    return 0.75 * q25, 1.5 * q75


def rule_q95(f0: np.ndarray, seg: np.ndarray) -> tuple[float, float]:
    """Floor 0.75 × q25, ceiling max(1.5 × q75, 1.5 × q95) of the speaker's F0."""
    q25, q75, q95 = np.quantile(f0, [0.25, 0.75, 0.95])
    return 0.75 * q25, max(1.5 * q75, 1.5 * q95)


def rule_segment(f0: np.ndarray, seg: np.ndarray) -> tuple[float, float]:
    """The speaker's range, with the ceiling raised to 1.5 × q75 of the segment's own
    first-pass F0 where that is higher (segments with ≥ 30 voiced frames) — what the
    prosody stream does (features.prosody.stream.segment_ceiling)."""
    from features.prosody.stream import segment_ceiling

    floor, ceiling = rule_hirst(f0, seg)
    return floor, segment_ceiling(ceiling, seg)


RULES: dict[str, Rule] = {"1.5*q75 (old)": rule_hirst, "max(1.5*q75, 1.5*q95)": rule_q95,
                          "per-segment ceiling (new)": rule_segment}


def espeak(text: str, pitch: int, amp: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-p", str(pitch), "-a", str(amp), "-w",
                        str(wav), text], check=True, capture_output=True)
        return load_audio(wav).y


def praat_mean(x: np.ndarray, floor: float, ceiling: float) -> float | None:
    import parselmouth

    pitch = parselmouth.Sound(x, sampling_frequency=SR).to_pitch_ac(
        pitch_floor=floor, pitch_ceiling=ceiling)
    f = pitch.selected_array["frequency"]
    f = f[f > 0]
    return float(f.mean()) if f.size else None


def pyin_mean(x: np.ndarray) -> float | None:
    import librosa

    f0, voiced, _ = librosa.pyin(x.astype(np.float64), fmin=50.0, fmax=700.0, sr=SR,
                                 frame_length=2048)
    f = f0[voiced & np.isfinite(f0)]
    return float(f.mean()) if f.size else None


def voices(vad: SileroVAD) -> dict[str, tuple[list[np.ndarray], list[bool]]]:
    """name → (clips, raised flags)."""
    out: dict[str, tuple[list[np.ndarray], list[bool]]] = {}
    for spk in ("1688", "2033", "367", "533"):
        files = sorted(glob.glob(str(DATA / "librispeech" / spk / "*.flac")))[:4]
        clips = [load_audio(f).y for f in files]
        out[f"LibriSpeech {spk}"] = (clips, [False] * len(clips))
    for name, path in (("jfk.flac", DATA / "jfk.flac"),
                       ("synthetic session", ROOT / "examples" / "synthetic_session.flac")):
        y = load_audio(path).y
        segs = segment_audio(y, SR, SegmentsConfig(), vad=vad)
        out[name] = ([y[int(s.start_s * SR):int(s.end_s * SR)] for s in segs],
                     [False] * len(segs))
    clips = [espeak(t, 40, 100) for t in CALM] + [espeak(t, 90, 200) for t in RAISED]
    out["espeak calm + raised"] = (clips, [False] * len(CALM) + [True] * len(RAISED))
    return out


def evaluate(clips: Sequence[np.ndarray], raised: Sequence[bool], rule: Rule,
             ref: Sequence[float | None]) -> dict[str, float]:
    per_clip = list(first_pass_f0(list(clips), SR))
    f0 = np.concatenate(per_clip)
    err_hz, err_pct, err_raised, ceilings = [], [], [], []
    floor = 0.0
    for x, r, p, own in zip(clips, raised, ref, per_clip, strict=True):
        floor, ceiling = rule(f0, own)
        ceilings.append(ceiling)
        m = praat_mean(x, floor, ceiling)
        if m is None or p is None:
            continue
        err_hz.append(m - p)
        err_pct.append(100.0 * abs(m - p) / p)
        if r:
            err_raised.append(m - p)
    return {"floor": floor, "ceiling": max(ceilings),
            "median_abs_hz": float(np.median(np.abs(err_hz))),
            "worst_pct": float(np.max(err_pct)),
            "raised_worst_hz": float(max(err_raised, key=abs, default=0.0))}


def main() -> int:
    vad = SileroVAD(num_threads=1).load()
    print("| voice | rule | floor–highest ceiling Hz | median abs err Hz | worst err % | "
          "raised: worst err Hz |")
    print("|---|---|---|---|---|---|")
    for name, (clips, raised) in voices(vad).items():
        ref = [pyin_mean(x) for x in clips]
        for rname, rule in RULES.items():
            e = evaluate(clips, raised, rule, ref)
            rz = f"{e['raised_worst_hz']:+.1f}" if any(raised) else "—"
            print(f"| {name} | {rname} | {e['floor']:.0f}–{e['ceiling']:.0f} | "
                  f"{e['median_abs_hz']:.1f} | {e['worst_pct']:.1f} | {rz} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
