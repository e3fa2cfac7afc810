"""The added prosody measures (issue #19): against Praat's own commands and known truth.

Synthetic signals here are labelled so: harmonic complexes and glottal-pulse "vowels" made with
numpy/scipy, with known formants, spectra, bands and noise levels.

Tolerances: Praat-command equality 1e-9 relative (same Praat calls on the same sound);
formant truth 8 %; spectral balance truth 0.5 dB (ratios) and 15 % (slopes); bandwidth
±300 Hz; SNR ±2 dB.
"""

from __future__ import annotations

import math

import numpy as np
import parselmouth
import pytest
from parselmouth.praat import call
from scipy.signal import firwin, lfilter, resample_poly

from features.prosody.formants import FORMANT_NAMES
from features.prosody.spectral import bandwidth_hz, edge_drops_db, snr_db, spectral_frames
from features.prosody.stream import BAND_LIMITED, MEASURES, measure_segment

SR = 16_000
TELEPHONE_EDGE_HZ = 3700.0


def _resonator(f_hz: float, bw_hz: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    r = math.exp(-math.pi * bw_hz / sr)
    c = -r * r
    b = 2 * r * math.cos(2 * math.pi * f_hz / sr)
    return np.array([1 - b - c]), np.array([1.0, -b, -c])


def vowel(f0_hz: float = 120.0, duration_s: float = 1.5,
          formants: tuple[float, ...] = (700, 1220, 2600, 3500, 4500),
          jitter_sd: float = 0.01, seed: int = 0) -> np.ndarray:
    """Synthetic vowel: jittered impulse train through five cascaded formant resonators."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(duration_s * SR))
    t = 0.01
    while t < duration_s - 0.01:
        y[int(t * SR)] += 1.0 + 0.05 * rng.standard_normal()
        t += (1.0 / f0_hz) * (1.0 + jitter_sd * rng.standard_normal())
    y = lfilter([1.0], [1.0, -0.95], y)  # glottal roll-off
    for f, bw in zip(formants, (80, 100, 150, 200, 250), strict=True):
        b, a = _resonator(f, bw, SR)
        y = lfilter(b, a, y)
    return y / np.max(np.abs(y)) * 0.5


def harmonic(f0_hz: float, duration_s: float, slope_db_per_hz: float = 0.0,
             top_hz: float = 7900.0) -> np.ndarray:
    """Synthetic harmonic complex; harmonic k has level ``slope · k·f0`` dB."""
    t = np.arange(int(duration_s * SR)) / SR
    ks = np.arange(1, int(top_hz // f0_hz) + 1)
    amps = 10.0 ** (slope_db_per_hz * ks * f0_hz / 20.0)
    rng = np.random.default_rng(1)
    y = sum(a * np.sin(2 * np.pi * k * f0_hz * t + rng.uniform(0, 2 * np.pi))
            for k, a in zip(ks, amps, strict=True))
    return 0.3 * y / np.max(np.abs(y))


def telephone(y: np.ndarray) -> np.ndarray:
    """Through an 8 kHz channel with a 3.7 kHz low-pass and back to 16 kHz (511-tap FIR,
    Kaiser β 10: ~100 dB stopband)."""
    h = firwin(511, TELEPHONE_EDGE_HZ, fs=SR, window=("kaiser", 10.0))
    return resample_poly(resample_poly(y, 1, 2, window=h), 2, 1, window=h)


def _praat_pulses(y: np.ndarray, floor: float, ceiling: float):
    snd = parselmouth.Sound(y - np.mean(y), SR)
    pitch = snd.to_pitch_ac(pitch_floor=floor, pitch_ceiling=ceiling)
    return snd, pitch, call([snd, pitch], "To PointProcess (cc)")


def test_jitter_shimmer_variants_equal_praat_commands() -> None:
    y = vowel(jitter_sd=0.02)
    m = measure_segment(y, SR, pitch_floor_hz=90, pitch_ceiling_hz=240)
    snd, _, pp = _praat_pulses(y, 90, 240)
    args = (0.0, 0.0, 0.0001, 0.02, 1.3)
    assert m.jitter_ddp_pct == pytest.approx(100 * call(pp, "Get jitter (ddp)", *args), 1e-9)
    assert m.shimmer_apq11_pct == pytest.approx(
        100 * call([snd, pp], "Get shimmer (apq11)", *args, 1.6), 1e-9)
    assert m.shimmer_dda_pct == pytest.approx(
        100 * call([snd, pp], "Get shimmer (dda)", *args, 1.6), 1e-9)
    # Praat's identities: ddp = 3 · rap, dda = 3 · apq3
    assert m.jitter_ddp_pct == pytest.approx(3 * m.jitter_rap_pct, 1e-6)
    assert m.shimmer_dda_pct == pytest.approx(3 * m.shimmer_apq3_pct, 1e-6)


def test_standard_hnr_and_jitter_equal_praat_voice_report_settings() -> None:
    y = vowel(jitter_sd=0.015)
    m = measure_segment(y, SR, pitch_floor_hz=90, pitch_ceiling_hz=240)
    snd = parselmouth.Sound(y - np.mean(y), SR)
    hnr = call(call(snd, "To Harmonicity (cc)", 0.01, 75, 0.1, 1.0), "Get mean", 0, 0)
    pp = call(snd, "To PointProcess (periodic, cc)", 75, 600)
    jit = 100 * call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)
    assert m.hnr_db_standard == pytest.approx(hnr, 1e-9)
    assert m.jitter_local_pct_standard == pytest.approx(jit, 1e-9)
    # at the standard range itself the two columns are the adaptive ones
    s = measure_segment(y, SR, pitch_floor_hz=75, pitch_ceiling_hz=600)
    assert s.hnr_db_standard == s.hnr_db and s.jitter_local_pct_standard == s.jitter_local_pct


def test_formants_known_truth_and_praat_get_mean() -> None:
    y = vowel(f0_hz=110, jitter_sd=0.005)
    m = measure_segment(y, SR, pitch_floor_hz=80, pitch_ceiling_hz=200)
    for got, truth in ((m.f1_mean_hz, 700), (m.f2_mean_hz, 1220), (m.f3_mean_hz, 2600)):
        assert got == pytest.approx(truth, rel=0.08)
    assert all(getattr(m, n) is not None for n in FORMANT_NAMES)
    # on the voiced stretch, equal to Praat's own statistics of the same Formant object
    snd, pitch, _ = _praat_pulses(y, 80, 200)
    formant = call(snd, "To Formant (burg)", 0.01, 5, 5500, 0.025, 50)
    f0 = pitch.selected_array["frequency"]
    xs = np.asarray(formant.xs())
    near = np.clip(np.rint((xs - pitch.x1) / pitch.dx).astype(int), 0, f0.size - 1)
    inside = (xs - pitch.x1 >= -pitch.dx / 2) & (f0[near] > 0)
    assert np.all(np.diff(np.nonzero(inside)[0]) == 1)  # one contiguous voiced stretch
    t0, t1 = xs[inside][0] - 0.005, xs[inside][-1] + 0.005  # whole frames
    assert m.f1_mean_hz == pytest.approx(call(formant, "Get mean", 1, t0, t1, "hertz"), 1e-9)
    assert m.f2_sd_hz == pytest.approx(
        call(formant, "Get standard deviation", 2, t0, t1, "hertz"), 1e-9)
    bws = [call(formant, "Get bandwidth at time", 1, t, "hertz", "linear") for t in xs[inside]]
    assert m.f1_bw_hz == pytest.approx(float(np.mean(bws)), 1e-9)


def test_spectral_balance_known_truth() -> None:
    flat = measure_segment(harmonic(100, 1.0), SR, pitch_floor_hz=75, pitch_ceiling_hz=300)
    # equal harmonics: 41 in 1–5 kHz, 9 below 1 kHz (100–900) → 10·log10(41/9) dB (high / low,
    # openSMILE's orientation of alphaRatio)
    assert flat.alpha_ratio_db == pytest.approx(10 * math.log10(41 / 9), abs=0.5)
    assert flat.hammarberg_index_db == pytest.approx(0.0, abs=0.5)
    tilted = measure_segment(harmonic(100, 1.0, slope_db_per_hz=-0.01), SR,
                             pitch_floor_hz=75, pitch_ceiling_hz=300)
    assert tilted.spectral_slope_500_1500 == pytest.approx(-0.01, rel=0.15)
    # 0–500 Hz also spans the empty bins under H1 (100 Hz): the slope rises whatever the tilt
    assert tilted.spectral_slope_0_500 > 0 and flat.spectral_slope_0_500 > 0
    # 0–2 kHz peak at 100 Hz, 2–5 kHz peak at 2 kHz: 0.01 dB/Hz · 1900 Hz
    assert tilted.hammarberg_index_db == pytest.approx(19.0, abs=0.5)


def test_bandwidth_of_wideband_and_telephone_band() -> None:
    rng = np.random.default_rng(3)
    y = vowel(duration_s=2.0) + 1e-3 * rng.standard_normal(2 * SR)
    assert bandwidth_hz(spectral_frames(y, SR)) == SR / 2
    tel = telephone(y)
    band = bandwidth_hz(spectral_frames(tel, SR))
    assert band is not None and abs(band - TELEPHONE_EDGE_HZ) <= 300


def test_band_limited_measures_are_none_with_a_reason() -> None:
    y = telephone(vowel(duration_s=1.5))
    m = measure_segment(y, SR, pitch_floor_hz=80, pitch_ceiling_hz=250)
    assert m.bandwidth_hz is not None and m.bandwidth_hz < 4500
    for name in ("alpha_ratio_db", "hammarberg_index_db", *FORMANT_NAMES):
        assert getattr(m, name) is None
        assert m.missing[name].startswith(BAND_LIMITED)
    assert m.spectral_slope_500_1500 is not None  # the band reaches 1.5 kHz
    wide = measure_segment(vowel(duration_s=1.5), SR, pitch_floor_hz=80, pitch_ceiling_hz=250)
    assert wide.alpha_ratio_db is not None and not any(
        r.startswith(BAND_LIMITED) for r in wide.missing.values())


@pytest.mark.parametrize("snr_true_db", [10.0, 20.0, 30.0])
def test_snr_of_speech_with_pauses_in_white_noise(snr_true_db: float) -> None:
    rng = np.random.default_rng(5)
    on = np.concatenate([harmonic(150, 0.7), np.zeros(int(0.3 * SR))] * 3)
    active_power = float(np.mean(harmonic(150, 0.7) ** 2))
    noise = rng.standard_normal(on.size) * math.sqrt(active_power / 10 ** (snr_true_db / 10))
    assert snr_db(spectral_frames(on + noise, SR)) == pytest.approx(snr_true_db, abs=2.0)


def test_every_new_measure_is_a_measure_and_none_has_a_reason() -> None:
    m = measure_segment(vowel(), SR, pitch_floor_hz=80, pitch_ceiling_hz=250)
    new = ("jitter_ddp_pct", "shimmer_apq11_pct", "shimmer_dda_pct", "hnr_db_standard",
           "jitter_local_pct_standard", *FORMANT_NAMES, "alpha_ratio_db",
           "hammarberg_index_db", "spectral_slope_0_500", "spectral_slope_500_1500",
           "bandwidth_hz", "snr_db")
    assert set(new) <= set(MEASURES)
    for n in new:
        v = getattr(m, n)
        assert (v is not None and math.isfinite(v)) or n in m.missing, n
    short = measure_segment(np.zeros(100), SR)
    assert all(getattr(short, n) is None and n in short.missing for n in new)


def test_vectorised_edge_drops_equal_the_per_bin_numpy_loop() -> None:
    """``edge_drops_db`` (one sort of padded suffixes) is bit-equal to ``np.median`` and
    ``np.percentile(…, 90)`` bin by bin, on speech-like, noisy and telephone spectra."""
    rng = np.random.default_rng(11)
    cases = [vowel(duration_s=1.0), telephone(vowel(duration_s=1.0)),
             vowel(duration_s=0.3) + 1e-3 * rng.standard_normal(int(0.3 * SR))]
    for y in cases:
        frames = spectral_frames(y, SR)
        level = frames.ltas_db
        for k_below, k_gap in ((32, 8), (5, 3), (1, 1)):
            drops, floors = edge_drops_db(level, k_below, k_gap)
            idx = range(k_below, level.size - k_gap)
            ref_floor = np.array([np.percentile(level[i + k_gap:], 90) for i in idx])
            ref_drop = np.array([np.median(level[i - k_below:i]) for i in idx]) - ref_floor
            assert np.array_equal(floors, ref_floor) and np.array_equal(drops, ref_drop)


@pytest.mark.parametrize("kind", ["flat", "tilted", "vowel"])
def test_alpha_ratio_and_hammarberg_agree_with_opensmile_egemaps(kind: str) -> None:
    """Same-named eGeMAPSv02 features (voiced-frame means) on the same synthetic sound:
    within 1 dB (openSMILE frames and voices the sound by its own rules; the harmonic
    complexes agree to ~0.01 dB, the vowel's alpha ratio to ~0.6 dB; at F0 = 100 Hz openSMILE
    finds no voiced frame in the flat complex and reports 0)."""
    opensmile = pytest.importorskip("opensmile")
    y = {"flat": harmonic(150, 1.5), "tilted": harmonic(150, 1.5, slope_db_per_hz=-0.006),
         "vowel": vowel(duration_s=2.0)}[kind]
    m = measure_segment(y, SR, pitch_floor_hz=75, pitch_ceiling_hz=300)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    row = smile.process_signal(y.astype(np.float32), SR).iloc[0]
    assert m.alpha_ratio_db == pytest.approx(row["alphaRatioV_sma3nz_amean"], abs=1.0)
    assert m.hammarberg_index_db == pytest.approx(row["hammarbergIndexV_sma3nz_amean"], abs=1.0)
