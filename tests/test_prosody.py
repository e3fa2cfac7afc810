"""Prosody stream against known truth.

Synthetic signals here are labelled so: the "vowels" are glottal-pulse trains through two
formant resonators (numpy/scipy), the speech is espeak-ng (synthetic). The only human speech is
the bundled JFK example.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import soundfile as sf
from parselmouth.praat import call
from pydantic import ValidationError
from scipy.signal import lfilter, resample_poly

from features.audio.load import audio_from_signal, load_audio
from features.errors import ParameterError
from features.prosody.cpps import cpps_from_cepstrogram, power_cepstrogram, sound_cpps_db
from features.prosody.stream import (
    MEASURES,
    ProsodyConfig,
    ProsodyMeasures,
    ProsodyStream,
    measure_segment,
    pitch_range_two_pass,
    speaker_pitch_range,
)
from features.prosody.syllables import Interval, detect_silences
from features.segments.vad import Segment, segment_audio
from features.stream import Stream, StreamStatus

SR = 16_000
_OVERSAMPLE = 16  # pulses are placed on a 256 kHz grid (3.9 µs), then decimated


# --------------------------------------------------------------------------------------------
# synthetic signals with known truth
# --------------------------------------------------------------------------------------------

def _resonator(f_hz: float, bw_hz: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order digital resonator (Klatt 1980) with unit gain at 0 Hz."""
    r = math.exp(-math.pi * bw_hz / sr)
    c = -r * r
    b = 2 * r * math.cos(2 * math.pi * f_hz / sr)
    a = 1 - b - c
    return np.array([a]), np.array([1.0, -b, -c])


def synthetic_vowel(f0_hz: float, duration_s: float = 1.0, *, jitter_sd: float = 0.0,
                    seed: int = 0) -> tuple[np.ndarray, float]:
    """Synthetic /a/-like vowel: glottal pulses (period SD ``jitter_sd`` × period, i.i.d.
    Gaussian) through formant resonators at 700 and 1220 Hz, at 16 kHz.

    Returns the signal and its *true* local jitter in percent (mean absolute difference of
    consecutive periods / mean period, the definition Praat's "jitter (local)" estimates).
    """
    rng = np.random.default_rng(seed)
    hi_sr = SR * _OVERSAMPLE
    periods: list[float] = []
    t, total = 0.0, duration_s
    while t < total:
        p = (1.0 / f0_hz) * (1.0 + jitter_sd * rng.standard_normal())
        periods.append(p)
        t += p
    times = np.cumsum([0.0] + periods[:-1]) + 0.01
    n = int((duration_s + 0.03) * hi_sr)
    x = np.zeros(n)
    idx = np.round(times * hi_sr).astype(int)
    x[idx[idx < n]] = 1.0
    # glottal low-pass (two real poles) then two formants
    x = lfilter([1.0], [1.0, -0.99], x)
    x = lfilter([1.0], [1.0, -0.99], x)
    for f, bw in ((700.0, 80.0), (1220.0, 90.0)):
        b, a = _resonator(f, bw, hi_sr)
        x = lfilter(b, a, x)
    y = resample_poly(x, 1, _OVERSAMPLE)
    y = 0.5 * y / np.max(np.abs(y))
    per = np.diff(np.round(times * hi_sr) / hi_sr)  # the periods actually placed
    true_jitter_pct = 100.0 * np.mean(np.abs(np.diff(per))) / np.mean(per)
    return y.astype(np.float32), float(true_jitter_pct)


def _assert_clean(row: ProsodyMeasures) -> None:
    """Every measure is finite or None-with-a-reason; never NaN or Inf."""
    d = row.model_dump()
    for name in MEASURES:
        v = d[name]
        if v is None:
            assert name in row.missing and row.missing[name], name
        else:
            assert math.isfinite(v), (name, v)
            assert name not in row.missing, name
    assert set(row.missing) <= set(MEASURES)


# --------------------------------------------------------------------------------------------
# F0, jitter, pulses
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_f0_of_synthetic_vowel_within_1_percent(f0: float) -> None:
    y, _ = synthetic_vowel(f0)
    m = measure_segment(y, SR)
    _assert_clean(m)
    for name in ("f0_mean_hz", "f0_median_hz", "f0_p5_hz", "f0_p95_hz"):
        assert abs(getattr(m, name) - f0) / f0 < 0.01, (name, getattr(m, name))
    assert m.f0_mean_st == pytest.approx(12 * math.log2(f0 / 100), abs=0.2)
    assert m.f0_range_st < 0.2
    assert m.voiced_fraction > 0.9
    assert m.hnr_db > 20  # a clean synthetic vowel is very periodic
    assert m.jitter_local_pct < 0.3


def test_jitter_recovered_and_monotonic() -> None:
    """Random period perturbation of SD 0 %, 1 %, 3 %: Praat's jitter (local) within 25 %
    (+0.1 percentage point) of the true value computed from the placed periods."""
    measured, truth = [], []
    for sd in (0.0, 0.01, 0.03):
        y, true_pct = synthetic_vowel(120.0, 2.0, jitter_sd=sd, seed=3)
        m = measure_segment(y, SR, pitch_floor_hz=75, pitch_ceiling_hz=300)
        _assert_clean(m)
        measured.append(m.jitter_local_pct)
        truth.append(true_pct)
        assert abs(m.jitter_local_pct - true_pct) <= 0.25 * true_pct + 0.1, (sd, m, true_pct)
    assert measured[0] < measured[1] < measured[2]
    assert truth[1] == pytest.approx(1.128, rel=0.2)  # E|ΔT|/T = 2σ/√π for i.i.d. Gaussian


def test_point_process_equals_praat_periodic_cc() -> None:
    """Reusing the pitch gives the same pulses as Praat's "To PointProcess (periodic, cc)"."""
    y, _ = synthetic_vowel(150.0, jitter_sd=0.01)
    snd = parselmouth.Sound(y.astype(np.float64), sampling_frequency=SR)
    pitch = snd.to_pitch_ac(pitch_floor=75.0, pitch_ceiling=600.0)
    ours = call([snd, pitch], "To PointProcess (cc)")
    praat = call(snd, "To PointProcess (periodic, cc)", 75.0, 600.0)
    n = call(ours, "Get number of points")
    assert n == call(praat, "Get number of points") > 100
    for i in (1, n // 2, n):
        assert call(ours, "Get time from index", i) == call(praat, "Get time from index", i)


# --------------------------------------------------------------------------------------------
# CPPS
# --------------------------------------------------------------------------------------------

def _praat_cpps(snd: parselmouth.Sound, fit: str = "Robust") -> float:
    pc = call(snd, "To PowerCepstrogram", 60.0, 0.002, 5000.0, 50.0)
    return call(pc, "Get CPPS", False, 0.01, 0.001, 60.0, 330.0, 0.05, "Parabolic", 0.001,
                0.0, "Straight", fit)


def test_cpps_equals_praat_get_cpps(jfk_path: Path) -> None:
    rng = np.random.default_rng(0)
    jfk = load_audio(jfk_path).y[: 2 * SR].astype(np.float64)
    vowel, _ = synthetic_vowel(130.0, 1.0, jitter_sd=0.01)
    signals = {"jfk": jfk, "vowel": vowel.astype(np.float64),
               "noise": 0.1 * rng.standard_normal(SR // 2)}
    for name, y in signals.items():
        snd = parselmouth.Sound(y, sampling_frequency=SR)
        assert sound_cpps_db(snd) == pytest.approx(_praat_cpps(snd), abs=1e-9), name
        pc = call(snd, "To PowerCepstrogram", 60.0, 0.002, 5000.0, 50.0)
        m = call(pc, "To Matrix")
        ls = cpps_from_cepstrogram(m.values, x1=m.x1, dx=m.dx, xmin=m.xmin, xmax=m.xmax,
                                   qmax=m.ymax, fit_method="least_squares")
        assert ls == pytest.approx(_praat_cpps(snd, "Least squares"), abs=1e-9), name
    # and it means something: a periodic vowel is far more prominent than noise
    assert sound_cpps_db(parselmouth.Sound(signals["vowel"], sampling_frequency=SR)) > \
        sound_cpps_db(parselmouth.Sound(signals["noise"], sampling_frequency=SR)) + 5


@pytest.mark.parametrize("sr,seconds", [(16_000, 2.0), (44_100, 1.0), (8_000, 1.5),
                                        (16_000, 0.08)])
def test_power_cepstrogram_equals_praat(jfk_path: Path, sr: int, seconds: float) -> None:
    """The numpy cepstrogram against Praat's ``To PowerCepstrogram`` on real speech (JFK),
    resampled to 44.1 and 8 kHz, and shorter than the 0.1-s window (one frame)."""
    y = load_audio(jfk_path).y.astype(np.float64)
    if sr != SR:
        y = resample_poly(y, sr, SR)
    snd = parselmouth.Sound(y[: int(seconds * sr)], sampling_frequency=sr)
    ours, geometry = power_cepstrogram(snd)
    m = call(call(snd, "To PowerCepstrogram", 60.0, 0.002, 5000.0, 50.0), "To Matrix")
    assert ours.shape == m.values.shape
    assert geometry == {"x1": m.x1, "dx": m.dx, "xmin": m.xmin, "xmax": m.xmax,
                        "qmax": m.ymax}
    np.testing.assert_allclose(ours, m.values, rtol=1e-6, atol=1e-9 * float(m.values.max()))
    assert sound_cpps_db(snd) == pytest.approx(_praat_cpps(snd), abs=1e-8)


# --------------------------------------------------------------------------------------------
# syllables and pauses
# --------------------------------------------------------------------------------------------

#: syllables of the test text, counted by hand word by word
_TEXT_SYLLABLES = [
    ("The", 1), ("weather", 2), ("was", 1), ("calm", 1), ("this", 1), ("morning", 2),
    ("so", 1), ("we", 1), ("walked", 1), ("to", 1), ("the", 1), ("market", 2),
    ("Later", 2), ("we", 1), ("talked", 1), ("about", 2), ("the", 1), ("garden", 2),
    ("and", 1), ("the", 1), ("long", 1), ("summer", 2), ("ahead", 2),
]
_TEXT = ("The weather was calm this morning, so we walked to the market. "
         "Later we talked about the garden and the long summer ahead.")
_IPA_VOWELS = set("aeiouæɑɒɐəɚɛɜɝɪʊʌɔɨʉøœɤɯy")


def _ipa_nuclei(ipa: str) -> int:
    """Syllable nuclei in espeak-ng's IPA: maximal runs of vowel letters (a diphthong is one)."""
    count, in_vowel = 0, False
    for ch in ipa:
        is_v = ch in _IPA_VOWELS
        if is_v and not in_vowel:
            count += 1
        if ch != "ː":
            in_vowel = is_v
    return count


def test_ipa_nuclei_counter() -> None:
    assert _ipa_nuclei("ðə wˈɛðɚ wʌz kˈɑːm ðɪs mˈɔːɹnɪŋ") == 8
    assert _ipa_nuclei("sˌoʊ lˈeɪɾɚ ɐbˌaʊt") == 5  # so 1, la-ter 2, a-bout 2


def _speech_bounds(y: np.ndarray) -> tuple[int, int]:
    """First and last sample above 1 % of the peak (espeak-ng pads with silence)."""
    idx = np.flatnonzero(np.abs(y) > 0.01 * np.max(np.abs(y)))
    return int(idx[0]), int(idx[-1]) + 1


def test_syllable_rate_tracks_espeak_rate(speech_factory: Callable[..., Path]) -> None:
    n_syl = sum(n for _, n in _TEXT_SYLLABLES)
    assert n_syl == 31
    ipa = subprocess.run(["espeak-ng", "-v", "en-us", "-q", "--ipa", _TEXT], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    assert _ipa_nuclei(ipa) == n_syl  # the synthetic voice says every syllable we counted
    nominal, measured = [], []
    for wpm in (100, 140, 180, 220, 260):
        audio = load_audio(speech_factory(_TEXT, rate_wpm=wpm))
        a, b = _speech_bounds(audio.y)
        seg = Segment(a / SR, b / SR)
        out = ProsodyStream(ProsodyConfig()).run(audio, [seg], {})
        row = out.rows[0]
        _assert_clean(row)
        true_rate = n_syl / seg.duration_s
        assert row.speech_rate_syl_per_s == pytest.approx(true_rate, rel=0.15), (wpm, row)
        assert row.articulation_rate_syl_per_s >= row.speech_rate_syl_per_s
        nominal.append(wpm)
        measured.append(row.speech_rate_syl_per_s)
    assert np.corrcoef(nominal, measured)[0, 1] >= 0.95


def test_pauses_of_known_length() -> None:
    """Two synthetic vowels with a 0.5 s silent gap (plus a 0.12 s gap that is no pause)."""
    v, _ = synthetic_vowel(140.0, 0.6)
    rng = np.random.default_rng(1)
    gap = lambda s: 1e-4 * rng.standard_normal(int(s * SR))  # noqa: E731 - quiet room noise
    y = np.concatenate([v, gap(0.12), v, gap(0.5), v]).astype(np.float32)
    m = measure_segment(y, SR)
    _assert_clean(m)
    assert m.pause_count == 1
    assert m.mean_pause_s == pytest.approx(0.5, abs=0.06)
    assert m.pause_ratio == pytest.approx(0.5 / (len(y) / SR), abs=0.03)
    assert m.phonation_time_s == pytest.approx(len(y) / SR - 0.5, abs=0.08)
    assert m.syllable_count == 3  # three vowels, three nuclei
    # with a 0.6 s minimum the gap is not a pause any more; mean pause then has a reason
    m2 = measure_segment(y, SR, min_pause_s=0.6)
    assert m2.pause_count == 0 and m2.pause_ratio == 0.0
    assert m2.mean_pause_s is None and "no pause" in m2.missing["mean_pause_s"]


def test_detect_silences_matches_praat_textgrid() -> None:
    """Our interval rules reproduce Praat's "To TextGrid (silences)" on the same intensity."""
    v, _ = synthetic_vowel(140.0, 0.4)
    rng = np.random.default_rng(2)
    y = np.concatenate([1e-4 * rng.standard_normal(SR // 5), v,
                        1e-4 * rng.standard_normal(int(0.35 * SR)), v,
                        1e-4 * rng.standard_normal(int(0.08 * SR)), v[: SR // 20], v])
    snd = parselmouth.Sound(y.astype(np.float64), sampling_frequency=SR)
    inten = snd.to_intensity(minimum_pitch=50.0, time_step=0.016, subtract_mean=True)
    db = inten.values[0]
    tg = call(inten, "To TextGrid (silences)", -25.0, 0.25, 0.1, "silent", "sounding")
    n = call(tg, "Get number of intervals", 1)
    praat = [Interval(call(tg, "Get start time of interval", 1, i),
                      call(tg, "Get end time of interval", 1, i),
                      call(tg, "Get label of interval", 1, i) == "silent")
             for i in range(1, n + 1)]
    ours = detect_silences(db, x1=inten.x1, dx=inten.dx, xmin=inten.xmin, xmax=inten.xmax,
                           threshold_db=float(np.max(db)) - 25.0, min_silent_s=0.25,
                           min_sounding_s=0.1)
    assert len(ours) == len(praat) >= 3
    for o, p in zip(ours, praat, strict=True):
        assert o.silent == p.silent
        assert o.start_s == pytest.approx(p.start_s, abs=1e-9)
        assert o.end_s == pytest.approx(p.end_s, abs=1e-9)


# --------------------------------------------------------------------------------------------
# degenerate input
# --------------------------------------------------------------------------------------------

def test_short_segments_rows_present_with_reasons() -> None:
    v, _ = synthetic_vowel(120.0, 2.0)
    audio = audio_from_signal(v, SR)
    segs = [Segment(0.1, 0.12), Segment(0.3, 0.35), Segment(0.5, 0.599), Segment(0.7, 1.7)]
    out = ProsodyStream(ProsodyConfig()).run(audio, segs, {})
    assert out.status == StreamStatus.OK and len(out.rows) == len(segs)
    for row in out.rows[:3]:
        _assert_clean(row)
        assert all(getattr(row, n) is None for n in MEASURES)
        assert "shorter than" in row.missing["f0_mean_hz"]
    assert out.rows[3].f0_mean_hz == pytest.approx(120.0, rel=0.01)


@pytest.mark.parametrize("ms", [20, 50, 99])
def test_short_segments_praat_refusals_without_length_gate(ms: int) -> None:
    """With the length gate off, Praat's own refusals become reasons, never exceptions."""
    v, _ = synthetic_vowel(120.0, 0.2)
    m = measure_segment(v[: SR * ms // 1000], SR, min_segment_s=0.0)
    _assert_clean(m)
    # intensity needs 6.4 / 50 Hz = 128 ms, so timing measures are refused at all three lengths
    assert m.intensity_mean_db is None and "Praat" in m.missing["intensity_mean_db"]
    assert m.syllable_count is None
    if ms == 20:  # 20 ms < 3 periods of 75 Hz (40 ms): no pitch analysis
        assert m.f0_mean_hz is None and "Praat" in m.missing["f0_mean_hz"]


def test_silent_empty_and_nonfinite_segments() -> None:
    for y, word in ((np.zeros(SR), "silence"), (np.full(SR, 0.3), "silence"),
                    (np.zeros(0), "empty"), (np.array([0.1, np.nan] * SR), "NaN")):
        m = measure_segment(y, SR)
        _assert_clean(m)
        assert all(getattr(m, n) is None for n in MEASURES)
        assert word in m.missing["f0_mean_hz"]


def test_noise_clipped_and_dc_offset_stay_finite() -> None:
    rng = np.random.default_rng(5)
    v, _ = synthetic_vowel(160.0, 1.0)
    # a −54 dB noise floor, as any recording has: the cepstrum of a noiseless synthetic vowel
    # takes logs of spectral values near 1e-15, where float rounding alone moves CPPS
    v = v + 1e-3 * rng.standard_normal(v.size).astype(np.float32)
    base = measure_segment(v, SR)
    noise = measure_segment(0.1 * rng.standard_normal(SR), SR)
    _assert_clean(noise)
    clipped = np.clip(8.0 * v, -1.0, 1.0)
    m_clip = measure_segment(clipped, SR)
    _assert_clean(m_clip)
    assert m_clip.f0_mean_hz == pytest.approx(160.0, rel=0.01)
    m_dc = measure_segment(v + 0.4, SR)
    _assert_clean(m_dc)
    for name in ("f0_mean_hz", "jitter_local_pct", "shimmer_local_pct", "hnr_db", "cpps_db",
                 "intensity_mean_db"):  # DC is removed before analysis
        assert getattr(m_dc, name) == pytest.approx(getattr(base, name), rel=1e-4,
                                                     abs=1e-6), name
    m_int = measure_segment((v * 32767).astype(np.int16), SR)
    assert m_int.f0_mean_hz == pytest.approx(base.f0_mean_hz, rel=1e-3)


def test_digital_zeros_inside_a_segment_do_not_blow_up_intensity_sd() -> None:
    v, _ = synthetic_vowel(140.0, 0.5)
    y = np.concatenate([v, np.zeros(SR // 2, dtype=np.float32), v])
    m = measure_segment(y, SR)
    _assert_clean(m)
    assert m.intensity_sd_db < 30  # the −300 dB frames of digital silence are left out
    assert m.pause_count == 1


def test_bad_arguments_raise_parameter_error() -> None:
    v, _ = synthetic_vowel(120.0, 0.5)
    with pytest.raises(ParameterError, match="floor"):
        measure_segment(v, SR, pitch_floor_hz=300, pitch_ceiling_hz=200)
    with pytest.raises(ParameterError, match="positive"):
        measure_segment(v, 0)
    with pytest.raises(ParameterError, match="one-dimensional"):
        measure_segment(np.stack([v, v], axis=1), SR)
    with pytest.raises(ValidationError, match="pitch_floor_hz"):
        ProsodyConfig(pitch_floor_hz=300, pitch_ceiling_hz=200)
    with pytest.raises(ValidationError):
        ProsodyConfig(unknown=1)


# --------------------------------------------------------------------------------------------
# pitch range and the stream
# --------------------------------------------------------------------------------------------

def test_two_pass_pitch_range() -> None:
    v, _ = synthetic_vowel(200.0, 1.0, jitter_sd=0.005)
    floor, ceiling = speaker_pitch_range(v, SR)
    assert floor == pytest.approx(0.75 * 200, rel=0.02)
    assert ceiling == pytest.approx(1.5 * 200, rel=0.02)
    rng = np.random.default_rng(0)
    r = pitch_range_two_pass(0.1 * rng.standard_normal(SR), SR)
    assert (r.floor_hz, r.ceiling_hz, r.source) == (75.0, 600.0, "default")
    r = pitch_range_two_pass(v, SR, pitch_floor_hz=100.0)
    assert r.source == "config" and r.floor_hz == 100.0 and r.ceiling_hz > 200


def test_stream_on_jfk(jfk_path: Path) -> None:
    audio = load_audio(jfk_path)
    segments = segment_audio(audio.y, audio.sr)
    stream = ProsodyStream(ProsodyConfig(), num_threads=2)
    assert isinstance(stream, Stream)
    stream.load()
    prov = stream.provenance()
    assert prov.backend == "parselmouth" and prov.library_version == parselmouth.__version__
    assert prov.options["praat_version"] == parselmouth.PRAAT_VERSION
    assert prov.options["min_pause_s"] == 0.25
    out = stream.run(audio, segments, {})
    assert out.status == StreamStatus.OK and len(out.rows) == len(segments) >= 2
    assert out.session["pitch_range_source"] == "two-pass"
    for row in out.rows:
        _assert_clean(row)
        assert row.pitch_floor_hz == out.session["pitch_floor_hz"]
        # Kennedy speaks in a raised oratorical voice here: Praat (ac and cc, 60–700 Hz),
        # librosa pyin and openSMILE eGeMAPS all put this clip's median F0 at 230–240 Hz,
        # above the 90–200 Hz of conversational male speech.
        assert 150 < row.f0_median_hz < 300
        assert 0.3 < row.voiced_fraction < 1.0
        assert 0 < row.hnr_db < 30 and 0 < row.cpps_db < 30
    # "And so my fellow Americans, ask not what your country can do for you, ask what you
    # can do for your country": 9 + 2 + 17 = 28 syllables
    total = sum(r.syllable_count for r in out.rows)
    assert total == pytest.approx(28, rel=0.15)
    again = stream.run(audio, segments, {})
    assert [r.model_dump() for r in again.rows] == [r.model_dump() for r in out.rows]


def test_stream_config_range_disabled_and_empty() -> None:
    v, _ = synthetic_vowel(150.0, 1.5)
    audio = audio_from_signal(v, SR)
    out = ProsodyStream(ProsodyConfig(pitch_floor_hz=100, pitch_ceiling_hz=300)).run(
        audio, [Segment(0.0, 1.5)], {})
    assert out.session["pitch_range_source"] == "config"
    assert (out.rows[0].pitch_floor_hz, out.rows[0].pitch_ceiling_hz) == (100.0, 300.0)
    off = ProsodyStream(ProsodyConfig(enabled=False)).run(audio, [Segment(0.0, 1.0)], {})
    assert off.status == StreamStatus.SKIPPED and off.rows == [None]
    empty = ProsodyStream(ProsodyConfig()).run(audio, [], {})
    assert empty.rows == [] and empty.warnings == []


def test_prosody_does_not_import_torch(tmp_path: Path) -> None:
    v, _ = synthetic_vowel(150.0, 0.5)
    wav = tmp_path / "v.wav"
    sf.write(wav, v, SR)
    code = ("import sys; import features.prosody.stream as p; "
            "from features.audio.load import load_audio; "
            f"a = load_audio({str(wav)!r}); p.measure_segment(a.y, a.sr); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
