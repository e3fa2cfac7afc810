"""Validation of the prosody measures (issue #19, item 6): every measure of
:func:`features.prosody.stream.measure_segment` against Praat's own commands, openSMILE
eGeMAPSv02 and known truth, on the same segments.

Run by hand (a few minutes on 2 cores):

    .venv/bin/python benchmarks/measures.py                 # all voices, markdown table
    .venv/bin/python benchmarks/measures.py --per-speaker 3 # quicker look

Voices (each file or synthetic voice is one segment; the engine's pitch range is the two-pass
range of that segment, as the prosody stream does for a file):

* real: ``../shared/data/librispeech/<speaker>/*.flac`` (4 speakers, 2 male, 2 female, read
  speech) and ``../shared/data/jfk.flac``;
* SYNTHETIC, known truth: glottal-pulse trains (numpy; pulses placed at 160 kHz and decimated,
  so the periods are not rounded to samples) with known F0, period jitter and formants, also
  with white noise at a known harmonics-to-noise ratio; harmonic complexes with a known spectral
  tilt (alpha ratio, Hammarberg index, 500–1500 Hz slope computed from their amplitudes);
* SYNTHETIC, espeak-ng: four voices reading one sentence (no truth; Praat and openSMILE only).

References per measure:

* ``praat (same range)``: the same Praat command with the engine's pitch range (the equality
  the tests state, here on real voices);
* ``praat (standard)``: Praat's standard settings as in a voice report / published numbers
  (``To Pitch (ac)`` and ``To PointProcess (periodic, cc)`` 75–600 Hz, ``To Harmonicity (cc)``
  0.01 75 0.1 1, ``To Formant (burg)`` 0 5 5500 0.025 50 over the whole segment, ``To
  Intensity`` 100 Hz);
* ``opensmile``: the eGeMAPSv02 functional of the same name (``opensmile`` package), units
  converted (jitter fraction → %, F0 semitones re 27.5 Hz → re 100 Hz);
* ``truth``: the synthetic voice's known value.

Agreement: with ``praat (same range)`` the values must be equal (|relative difference| ≤ 1e-6,
"equal"); elsewhere a measure agrees when the median difference is within 10 % (Hz, %, dB/Hz,
fractions) or 1 dB (dB measures) and, where the segments vary enough to tell (≥ 5 segments),
Pearson r ≥ 0.8. The printed markdown table is the one in ``docs/measures.md``; the raw values
go to ``benchmarks/results/measures.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: ``../shared/data`` of the main checkout (a worktree sits one level deeper)
DATA = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent)
             if (p / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data")
SR = 16_000
OUT = ROOT / "benchmarks" / "results" / "measures.json"


@dataclass
class Case:
    """One segment: its samples, group and known truth (synthetic voices)."""

    name: str
    group: str  # "real" or "synthetic"
    y: np.ndarray
    truth: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- voices

def _read16k(path: Path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    y, sr = sf.read(path, dtype="float64", always_2d=True)
    y = y.mean(axis=1)
    if sr != SR:
        g = math.gcd(int(sr), SR)
        y = resample_poly(y, SR // g, int(sr) // g)
    return y


def real_voices(data: Path, per_speaker: int) -> list[Case]:
    """LibriSpeech utterances (``per_speaker`` of each speaker) and JFK."""
    cases = []
    for spk in sorted(p for p in (data / "librispeech").iterdir() if p.is_dir()):
        for f in sorted(spk.glob("*.flac"))[:per_speaker]:
            cases.append(Case(f"librispeech/{spk.name}/{f.stem}", "real", _read16k(f)))
    jfk = data / "jfk.flac"
    if jfk.exists():
        cases.append(Case("jfk", "real", _read16k(jfk)))
    return cases


def _resonator(f_hz: float, bw_hz: float) -> tuple[np.ndarray, np.ndarray]:
    r = math.exp(-math.pi * bw_hz / SR)
    b = 2 * r * math.cos(2 * math.pi * f_hz / SR)
    return np.array([1 - b + r * r]), np.array([1.0, -b, r * r])


def pulse_voice(f0_hz: float, jitter_sd: float, formants: tuple[float, float, float],
                hnr_db: float | None = None, duration_s: float = 2.0,
                seed: int = 0) -> Case:
    """SYNTHETIC glottal-pulse voice with known F0, local jitter, F1–F3 (and HNR)."""
    from scipy.signal import lfilter, resample_poly

    rng = np.random.default_rng(seed)
    up = 10
    n = int(duration_s * SR)
    train = np.zeros(n * up)
    times = []
    t = 0.02
    while t < duration_s - 0.02:
        times.append(t)
        train[int(round(t * SR * up))] += 1.0
        t += (1.0 / f0_hz) * (1.0 + jitter_sd * rng.standard_normal())
    y = resample_poly(train, 1, up) * up
    y = lfilter([1.0], [1.0, -0.97], y)  # glottal roll-off
    for f, bw in zip((*formants, 3500.0, 4500.0), (80, 100, 150, 200, 250), strict=True):
        b, a = _resonator(f, bw)
        y = lfilter(b, a, y)
    periods = np.diff(times)
    truth = {"f0_mean_hz": f0_hz,
             "jitter_local_pct": 100.0 * float(np.mean(np.abs(np.diff(periods)))
                                               / np.mean(periods)),
             "f1_mean_hz": formants[0], "f2_mean_hz": formants[1], "f3_mean_hz": formants[2]}
    if hnr_db is not None:
        noise = rng.standard_normal(y.size)
        y = y + noise * math.sqrt(np.mean(y ** 2) / np.mean(noise ** 2) / 10 ** (hnr_db / 10))
        truth = {"f0_mean_hz": f0_hz, "hnr_db": hnr_db, "hnr_db_standard": hnr_db}
    name = f"pulses f0={f0_hz:g} jitter={100 * jitter_sd:g}%" + (
        f" hnr={hnr_db:g}dB" if hnr_db is not None else "")
    return Case(name, "synthetic", 0.5 * y / np.max(np.abs(y)), truth)


def harmonic_voice(f0_hz: float, tilt_db_per_hz: float, duration_s: float = 1.5) -> Case:
    """SYNTHETIC harmonic complex, harmonic k at ``tilt · k·f0`` dB; spectral-balance truth
    from the amplitudes."""
    t = np.arange(int(duration_s * SR)) / SR
    ks = np.arange(1, int(7900 // f0_hz) + 1)
    fk = ks * f0_hz
    amp = 10.0 ** (tilt_db_per_hz * fk / 20.0)
    rng = np.random.default_rng(1)
    y = np.sum([a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                for f, a in zip(fk, amp, strict=True)], axis=0)
    p = amp ** 2
    truth = {
        "alpha_ratio_db": 10 * math.log10(p[(fk >= 1000) & (fk <= 5000)].sum()
                                          / p[(fk >= 50) & (fk < 1000)].sum()),
        "hammarberg_index_db": 10 * math.log10(p[fk < 2000].max()
                                               / p[(fk >= 2000) & (fk <= 5000)].max()),
        "spectral_slope_500_1500": tilt_db_per_hz,
        "f0_mean_hz": f0_hz,
    }
    return Case(f"harmonics f0={f0_hz:g} tilt={tilt_db_per_hz:g}dB/Hz", "synthetic",
                0.3 * y / np.max(np.abs(y)), truth)


def espeak_voices() -> list[Case]:
    """SYNTHETIC espeak-ng speech, four voices, one sentence each (no truth)."""
    text = ("The quick brown fox jumps over the lazy dog, and then it runs back home "
            "across the wide green field.")
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in ("en-us", "en", "en-us+f3", "en-us+m3"):
            wav = Path(tmp) / f"{voice}.wav"
            try:
                subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True,
                               capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                continue
            cases.append(Case(f"espeak-ng {voice}", "synthetic", _read16k(wav)))
    return cases


def synthetic_voices() -> list[Case]:
    shapes = {100.0: (700.0, 1220.0, 2600.0), 140.0: (300.0, 2300.0, 3000.0),
              210.0: (850.0, 1400.0, 2800.0)}
    cases = [pulse_voice(f0, j, shapes[f0], seed=i)
             for i, (f0, j) in enumerate((f0, j) for f0 in shapes for j in (0.005, 0.01, 0.02))]
    cases += [pulse_voice(120.0, 0.0, (700.0, 1220.0, 2600.0), hnr_db=h, seed=20 + k)
              for k, h in enumerate((10.0, 20.0, 30.0))]
    cases += [harmonic_voice(150.0, tilt) for tilt in (0.0, -0.004, -0.008)]
    return cases + espeak_voices()


# ----------------------------------------------------------------------------- measuring

_JIT = (("jitter_local_pct", "Get jitter (local)"), ("jitter_rap_pct", "Get jitter (rap)"),
        ("jitter_ppq5_pct", "Get jitter (ppq5)"), ("jitter_ddp_pct", "Get jitter (ddp)"))
_SHIM = (("shimmer_local_pct", "Get shimmer (local)", 100.0),
         ("shimmer_local_db", "Get shimmer (local_dB)", 1.0),
         ("shimmer_apq3_pct", "Get shimmer (apq3)", 100.0),
         ("shimmer_apq5_pct", "Get shimmer (apq5)", 100.0),
         ("shimmer_apq11_pct", "Get shimmer (apq11)", 100.0),
         ("shimmer_dda_pct", "Get shimmer (dda)", 100.0))


def _safe(f: Any) -> float | None:
    try:
        v = float(f())
    except Exception:  # Praat refused: no reference for this segment
        return None
    return v if math.isfinite(v) else None


def _perturbation(snd: Any, pp: Any, scale_jitter: float = 100.0) -> dict[str, float | None]:
    from parselmouth.praat import call

    a = (0.0, 0.0, 0.0001, 0.02, 1.3)
    out: dict[str, float | None] = {}
    for name, cmd in _JIT:
        v = _safe(lambda cmd=cmd: call(pp, cmd, *a))
        out[name] = None if v is None else scale_jitter * v
    for name, cmd, scale in _SHIM:
        v = _safe(lambda cmd=cmd: call([snd, pp], cmd, *a, 1.6))
        out[name] = None if v is None else scale * v
    return out


def praat_same(y: np.ndarray, floor: float, ceiling: float) -> dict[str, float | None]:
    """Praat's commands with the engine's pitch range (and its other arguments)."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(y - np.mean(y), SR)
    pitch = snd.to_pitch_ac(pitch_floor=floor, pitch_ceiling=ceiling)
    out: dict[str, float | None] = {
        "f0_mean_hz": _safe(lambda: call(pitch, "Get mean", 0, 0, "Hertz")),
        "f0_median_hz": _safe(lambda: call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")),
        "f0_sd_hz": _safe(lambda: call(pitch, "Get standard deviation", 0, 0, "Hertz")),
        "voiced_fraction": call(pitch, "Count voiced frames") / pitch.n_frames,
        "hnr_db": _safe(lambda: call(call(snd, "To Harmonicity (cc)", 0.01, floor, 0.1, 1.0),
                                     "Get mean", 0, 0)),
        "cpps_db": _safe(lambda: call(call(snd, "To PowerCepstrogram", 60.0, 0.002, 5000.0,
                                           50.0), "Get CPPS", False, 0.01, 0.001, 60.0,
                                      330.0, 0.05, "Parabolic", 0.001, 0.0, "Straight",
                                      "Robust")),
    }
    pp = call([snd, pitch], "To PointProcess (cc)")
    out.update(_perturbation(snd, pp))
    return out


def praat_standard(y: np.ndarray) -> dict[str, float | None]:
    """Praat's standard settings (75–600 Hz, whole-segment formants, 100 Hz intensity)."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(y - np.mean(y), SR)
    pitch = snd.to_pitch_ac(pitch_floor=75.0, pitch_ceiling=600.0)
    out: dict[str, float | None] = {
        "f0_mean_hz": _safe(lambda: call(pitch, "Get mean", 0, 0, "Hertz")),
        "f0_sd_hz": _safe(lambda: call(pitch, "Get standard deviation", 0, 0, "Hertz")),
        "hnr_db": _safe(lambda: call(call(snd, "To Harmonicity (cc)", 0.01, 75.0, 0.1, 1.0),
                                     "Get mean", 0, 0)),
        "intensity_mean_db": _safe(lambda: call(call(snd, "To Intensity", 100.0, 0.0, "yes"),
                                                "Get mean", 0, 0, "energy")),
    }
    pp = call(snd, "To PointProcess (periodic, cc)", 75.0, 600.0)
    out.update(_perturbation(snd, pp))
    formant = call(snd, "To Formant (burg)", 0.0, 5, 5500.0, 0.025, 50.0)
    xs = np.asarray(formant.xs())
    for k in (1, 2, 3):
        out[f"f{k}_mean_hz"] = _safe(lambda k=k: call(formant, "Get mean", k, 0, 0, "hertz"))
        out[f"f{k}_sd_hz"] = _safe(
            lambda k=k: call(formant, "Get standard deviation", k, 0, 0, "hertz"))
        bw = np.array([formant.get_bandwidth_at_time(k, t) for t in xs])
        bw = bw[np.isfinite(bw)]
        out[f"f{k}_bw_hz"] = float(np.mean(bw)) if bw.size else None
    return out


_SMILE: Any = None


def opensmile_values(y: np.ndarray) -> dict[str, float | None]:
    """eGeMAPSv02 functionals of the segment, renamed to the engine's columns."""
    global _SMILE
    import opensmile

    if _SMILE is None:
        _SMILE = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                 feature_level=opensmile.FeatureLevel.Functionals)
    row = _SMILE.process_signal(y.astype(np.float32), SR).iloc[0]

    def g(name: str, scale: float = 1.0, shift: float = 0.0) -> float | None:
        v = float(row[name])
        return v * scale + shift if math.isfinite(v) else None

    st_shift = -12.0 * math.log2(100.0 / 27.5)
    out = {
        "f0_mean_st": g("F0semitoneFrom27.5Hz_sma3nz_amean", shift=st_shift),
        "jitter_local_pct": g("jitterLocal_sma3nz_amean", 100.0),
        "shimmer_local_db": g("shimmerLocaldB_sma3nz_amean"),
        "hnr_db": g("HNRdBACF_sma3nz_amean"),
        "alpha_ratio_db": g("alphaRatioV_sma3nz_amean"),
        "hammarberg_index_db": g("hammarbergIndexV_sma3nz_amean"),
        "spectral_slope_0_500": g("slopeV0-500_sma3nz_amean"),
        "spectral_slope_500_1500": g("slopeV500-1500_sma3nz_amean"),
    }
    for k in (1, 2, 3):
        out[f"f{k}_mean_hz"] = g(f"F{k}frequency_sma3nz_amean")
        out[f"f{k}_bw_hz"] = g(f"F{k}bandwidth_sma3nz_amean")
    return out


def measure(case: Case) -> dict[str, Any]:
    from features.prosody.stream import measure_segment, pitch_range_two_pass

    pr = pitch_range_two_pass(case.y, SR)
    engine = measure_segment(case.y, SR, pitch_floor_hz=pr.floor_hz,
                             pitch_ceiling_hz=pr.ceiling_hz).model_dump()
    return {"name": case.name, "group": case.group, "duration_s": case.y.size / SR,
            "range_hz": [pr.floor_hz, pr.ceiling_hz], "engine": engine,
            "praat (same range)": praat_same(case.y, pr.floor_hz, pr.ceiling_hz),
            "praat (standard)": praat_standard(case.y), "opensmile": opensmile_values(case.y),
            "truth": case.truth}


# ----------------------------------------------------------------------------- the table

#: (engine column, reference, how to compare: "rel" or "abs", the reference's key if other)
COMPARISONS: list[tuple[str, str, str, str | None]] = [
    ("f0_mean_hz", "praat (same range)", "rel", None),
    ("f0_mean_hz", "praat (standard)", "rel", None),
    ("f0_mean_hz", "truth", "rel", None),
    ("f0_mean_st", "opensmile", "abs", None),
    ("f0_median_hz", "praat (same range)", "rel", None),
    ("f0_sd_hz", "praat (same range)", "rel", None),
    ("f0_sd_hz", "praat (standard)", "rel", None),
    ("voiced_fraction", "praat (same range)", "rel", None),
    *[(n, "praat (same range)", "rel", None) for n, _ in _JIT],
    ("jitter_local_pct", "praat (standard)", "rel", None),
    ("jitter_local_pct", "opensmile", "rel", None),
    ("jitter_local_pct", "truth", "rel", None),
    ("jitter_local_pct_standard", "praat (standard)", "rel", "jitter_local_pct"),
    ("jitter_local_pct_standard", "truth", "rel", "jitter_local_pct"),
    *[(n, "praat (same range)", "rel" if n.endswith("_pct") else "abs", None)
      for n, _, _ in _SHIM],
    ("shimmer_local_pct", "praat (standard)", "rel", None),
    ("shimmer_local_db", "opensmile", "abs", None),
    ("hnr_db", "praat (same range)", "abs", None),
    ("hnr_db", "praat (standard)", "abs", None),
    ("hnr_db", "opensmile", "abs", None),
    ("hnr_db", "truth", "abs", None),
    ("hnr_db_standard", "praat (standard)", "abs", "hnr_db"),
    ("hnr_db_standard", "truth", "abs", None),
    ("cpps_db", "praat (same range)", "abs", None),
    ("intensity_mean_db", "praat (standard)", "abs", None),
    *[(f"f{k}_{s}", "praat (standard)", "rel", None)
      for k in (1, 2, 3) for s in ("mean_hz", "sd_hz", "bw_hz")],
    *[(f"f{k}_{s}", "opensmile", "rel", None) for k in (1, 2, 3) for s in ("mean_hz", "bw_hz")],
    *[(f"f{k}_mean_hz", "truth", "rel", None) for k in (1, 2, 3)],
    ("alpha_ratio_db", "opensmile", "abs", None),
    ("alpha_ratio_db", "truth", "abs", None),
    ("hammarberg_index_db", "opensmile", "abs", None),
    ("hammarberg_index_db", "truth", "abs", None),
    ("spectral_slope_0_500", "opensmile", "rel", None),
    ("spectral_slope_500_1500", "opensmile", "rel", None),
    ("spectral_slope_500_1500", "truth", "rel", None),
]


def _pairs(rows: list[dict[str, Any]], col: str, ref: str, key: str | None,
           group: str) -> tuple[np.ndarray, np.ndarray]:
    e, r = [], []
    for row in rows:
        if row["group"] != group:
            continue
        a, b = row["engine"].get(col), row[ref].get(key or col)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            e.append(a)
            r.append(b)
    return np.array(e), np.array(r)


def _figures(e: np.ndarray, r: np.ndarray, how: str) -> dict[str, float | None]:
    if e.size == 0:
        return {"n": 0, "median_diff": None, "r": None}
    if how == "rel":
        ok = r != 0
        d = (e[ok] - r[ok]) / np.abs(r[ok])
    else:
        d = e - r
    corr = None
    if e.size >= 5 and np.std(e) > 0 and np.std(r) > 0:
        corr = float(np.corrcoef(e, r)[0, 1])
    return {"n": int(e.size), "median_diff": float(np.median(d)) if d.size else None,
            "r": corr}


def _verdict(f: dict[str, Any], ref: str, how: str) -> str:
    if f["n"] == 0 or f["median_diff"] is None:
        return ""
    md = abs(f["median_diff"])
    if ref == "praat (same range)":
        return "equal" if (md <= 1e-6 if how == "rel" else md <= 1e-6) else "differs"
    ok = md <= (0.10 if how == "rel" else 1.0)
    if f["r"] is not None and f["r"] < 0.8:
        ok = False
    return "agrees" if ok else "differs"


def _fmt(f: dict[str, Any], how: str) -> str:
    if f["n"] == 0 or f["median_diff"] is None:
        return "–"
    d = f["median_diff"]
    if how == "rel":
        body = f"{100 * d:+.2g} %" if abs(d) >= 1e-6 else "0 %" if d == 0 else f"{d:+.0e}"
    else:
        body = f"{d:+.2f}" if abs(d) >= 0.005 else ("0" if d == 0 else f"{d:+.0e}")
    r = "" if f["r"] is None else f", r {f['r']:.2f}"
    return f"{body}{r} (n {f['n']})"


def table(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    lines = ["| measure | reference | real voices: median diff, r (n) | synthetic: median "
             "diff, r (n) | verdict (real / synthetic) |", "|---|---|---|---|---|"]
    out = []
    for col, ref, how, key in COMPARISONS:
        fr = _figures(*_pairs(rows, col, ref, key, "real"), how)
        fs = _figures(*_pairs(rows, col, ref, key, "synthetic"), how)
        if fr["n"] == 0 and fs["n"] == 0:
            continue
        unit = "rel." if how == "rel" else ("st" if col.endswith("_st") else
                                            "dB/Hz" if "slope" in col else "dB")
        ref_name = ref if key is None else f"{ref}: {key}"
        verdict = " / ".join(v or "–" for v in (_verdict(fr, ref, how), _verdict(fs, ref, how)))
        lines.append(f"| `{col}` ({unit}) | {ref_name} | {_fmt(fr, how)} | {_fmt(fs, how)} "
                     f"| {verdict} |")
        out.append({"measure": col, "reference": ref_name, "compare": how, "real": fr,
                    "synthetic": fs})
    return "\n".join(lines), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--per-speaker", type=int, default=10,
                    help="LibriSpeech utterances per speaker (10 = all)")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cases = real_voices(args.data, args.per_speaker)
    if not args.no_synthetic:
        cases += synthetic_voices()
    rows = []
    for c in cases:
        rows.append(measure(c))
        print(f"  {c.name:<45} {c.y.size / SR:6.1f} s  range {rows[-1]['range_hz']}",
              file=sys.stderr, flush=True)
    md, figures = table(rows)
    real_s = sum(r["duration_s"] for r in rows if r["group"] == "real")
    syn_s = sum(r["duration_s"] for r in rows if r["group"] == "synthetic")
    print(f"{sum(r['group'] == 'real' for r in rows)} real segments ({real_s:.0f} s), "
          f"{sum(r['group'] == 'synthetic' for r in rows)} synthetic ({syn_s:.0f} s); "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(md)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "figures": figures}, indent=1, default=float))
    medians = {c: statistics.median(v) for c, v in (
        ("duration_s", [r["duration_s"] for r in rows]),)}
    print(f"\nraw values: {OUT.relative_to(ROOT)}; median segment {medians['duration_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
