"""Spectral balance (eGeMAPS) and signal quality of one segment, in numpy.

One pass of short-time power spectra (20 ms Hamming frames every 10 ms, as eGeMAPS's
``fftmagH25`` level) serves every measure here:

=============================  ===========================================================
measure                        method
=============================  ===========================================================
``alpha_ratio_db``             10·log10(power 1–5 kHz / power 50–1000 Hz) per voiced frame,
                               mean over voiced frames (Eyben et al. 2016, eGeMAPS; the
                               high/low orientation of openSMILE's ``alphaRatio``, so speech
                               reads negative, as in published eGeMAPS tables).
``hammarberg_index_db``        10·log10(max power bin 0–2 kHz / max power bin 2–5 kHz) per
                               voiced frame, mean over voiced frames (Hammarberg et al. 1980).
``spectral_slope_0_500``,      least-squares slope of the power spectrum in dB
``spectral_slope_500_1500``    (10·log10 power) against frequency over the bins of 0–500 Hz
                               and 500–1500 Hz, dB/Hz, per voiced frame, mean over voiced
                               frames.
``bandwidth_hz``               the segment's effective band: the largest drop of the long-term
                               average spectrum (median of the kHz below a frequency minus the
                               90th percentile above it) when it is ≥ 35 dB (a channel's
                               edge; speech's own roll-off stays under 30 dB), placed where
                               the level is 20 dB above the floor; else the Nyquist
                               frequency. Blackman–Harris spectrum (side lobes −92 dB).
``snr_db``                     10·log10((P_loud − P_noise) / P_noise) with frame powers:
                               P_noise = mean of the quietest 10 % of frames, P_loud = mean of
                               the loudest 50 %. A rough, blind estimate; a segment with no
                               pause or closure inside reads low (its quietest frames hold
                               speech).
=============================  ===========================================================

Voiced frames are those whose centre's nearest frame of the segment's pitch track is voiced.

References
----------
Eyben, F., et al. (2016). The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for voice
research and affective computing. *IEEE Trans. Affective Computing* 7(2), 190–202.
Hammarberg, B., et al. (1980). Perceptual and acoustic correlates of abnormal voice
qualities. *Acta Oto-Laryngologica* 90, 441–451.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal.windows import blackmanharris

__all__ = ["FRAME_S", "HOP_S", "SpectralFrames", "spectral_frames", "band_measures",
           "bandwidth_hz", "snr_db", "BAND_NEEDS_HZ", "edge_drops_db"]

#: analysis frame and hop (eGeMAPS ``gemapsv01b_frame25``: 20 ms Hamming, 10 ms)
FRAME_S = 0.020
HOP_S = 0.010
#: highest frequency each band-dependent measure reads (the band must reach it)
BAND_NEEDS_HZ: dict[str, float] = {
    "alpha_ratio_db": 5000.0,
    "hammarberg_index_db": 5000.0,
    "spectral_slope_0_500": 500.0,
    "spectral_slope_500_1500": 1500.0,
}
_TINY = 1e-30
_CLIFF_DB = 35.0
_EDGE_DB = 20.0


@dataclass(frozen=True)
class SpectralFrames:
    """Short-time power spectra of a segment.

    Attributes
    ----------
    power : np.ndarray, shape (n_frames, n_bins)
        |FFT|² of each Hamming-windowed frame.
    freqs_hz : np.ndarray, shape (n_bins,)
    times_s : np.ndarray, shape (n_frames,)
        Frame centres (s from the segment start).
    frame_power : np.ndarray, shape (n_frames,)
        Mean squared sample of each (unwindowed) frame.
    ltas_db : np.ndarray, shape (n_bins,)
        Long-term average spectrum (dB) with a 4-term Blackman–Harris window (side lobes
        −92 dB, so strong low frequencies do not leak over a band edge as Hamming's −43 dB do).
    sr : int
    """

    power: np.ndarray
    freqs_hz: np.ndarray
    times_s: np.ndarray
    frame_power: np.ndarray
    ltas_db: np.ndarray
    sr: int


def spectral_frames(x: np.ndarray, sr: int) -> SpectralFrames:
    """Frame ``x`` (20 ms Hamming, 10 ms hop) and take each frame's power spectrum."""
    n = int(round(FRAME_S * sr))
    hop = int(round(HOP_S * sr))
    nfft = 1 << max(0, int(n - 1).bit_length())
    if x.size < n:
        return SpectralFrames(np.zeros((0, nfft // 2 + 1)), np.fft.rfftfreq(nfft, 1.0 / sr),
                              np.zeros(0), np.zeros(0), np.zeros(0), sr)
    count = 1 + (x.size - n) // hop
    idx = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    frames = x[idx]
    spec = np.fft.rfft(frames * np.hamming(n)[None, :], nfft, axis=1)
    wide = np.fft.rfft(frames * blackmanharris(n)[None, :], nfft, axis=1)
    ltas = np.mean(wide.real ** 2 + wide.imag ** 2, axis=0)
    return SpectralFrames(power=spec.real ** 2 + spec.imag ** 2,
                          freqs_hz=np.fft.rfftfreq(nfft, 1.0 / sr),
                          times_s=(hop * np.arange(count) + n / 2.0) / sr,
                          frame_power=np.mean(frames ** 2, axis=1),
                          ltas_db=10.0 * np.log10(ltas + _TINY), sr=sr)


def _slope_db_per_hz(power: np.ndarray, f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (f >= lo) & (f <= hi)
    if np.count_nonzero(sel) < 2:
        return np.full(power.shape[0], np.nan)
    fx = f[sel] - np.mean(f[sel])
    y = 10.0 * np.log10(power[:, sel] + _TINY)
    return (y - y.mean(axis=1, keepdims=True)) @ fx / float(fx @ fx)


def band_measures(frames: SpectralFrames, voiced: np.ndarray) -> dict[str, float | None]:
    """The eGeMAPS spectral-balance measures, means over the voiced frames.

    Parameters
    ----------
    frames : SpectralFrames
    voiced : np.ndarray of bool, shape (n_frames,)

    Returns
    -------
    dict
        ``alpha_ratio_db``, ``hammarberg_index_db``, ``spectral_slope_0_500``,
        ``spectral_slope_500_1500``; ``None`` without voiced frames.
    """
    names = tuple(BAND_NEEDS_HZ)
    p = frames.power[np.asarray(voiced, dtype=bool)]
    if p.shape[0] == 0:
        return dict.fromkeys(names)
    f = frames.freqs_hz
    low = p[:, (f >= 50) & (f < 1000)].sum(axis=1)
    high = p[:, (f >= 1000) & (f <= 5000)].sum(axis=1)
    lo_max = p[:, f < 2000].max(axis=1)
    hi_sel = (f >= 2000) & (f <= 5000)
    hi_max = p[:, hi_sel].max(axis=1) if np.any(hi_sel) else np.zeros(p.shape[0])
    out = {
        "alpha_ratio_db": 10.0 * np.log10((high + _TINY) / (low + _TINY)),
        "hammarberg_index_db": 10.0 * np.log10((lo_max + _TINY) / (hi_max + _TINY)),
        "spectral_slope_0_500": _slope_db_per_hz(p, f, 0.0, 500.0),
        "spectral_slope_500_1500": _slope_db_per_hz(p, f, 500.0, 1500.0),
    }
    result: dict[str, float | None] = {}
    for k, v in out.items():
        v = v[np.isfinite(v)]
        result[k] = float(np.mean(v)) if v.size else None
    return result


def bandwidth_hz(frames: SpectralFrames) -> float | None:
    """Effective bandwidth (Hz) of the segment from its long-term average spectrum.

    The drop at a frequency is the median level (dB) of the 1 kHz below it minus the 90th
    percentile of the levels 250 Hz or more above it (a percentile, not the maximum: a
    resampler's images and stray tones may poke out). A channel's band edge gives a drop of
    50–80 dB; the natural roll-off of speech gives under 30 dB (LibriSpeech, JFK and synthetic
    vowels, see ``docs/measures.md``). Where the largest drop is at least 35 dB, the bandwidth
    is the highest frequency, at most 250 Hz above that point, still 20 dB above the floor
    (that 90th percentile); otherwise the band reaches the Nyquist frequency. ``None`` for no
    frames.
    """
    if frames.power.shape[0] == 0:
        return None
    f = frames.freqs_hz
    level = frames.ltas_db
    df = float(f[1] - f[0])
    k_below = max(1, int(round(1000.0 / df)))
    k_gap = max(1, int(round(250.0 / df)))
    drops, floors = edge_drops_db(level, k_below, k_gap)
    cand = np.arange(k_below, f.size - k_gap)
    keep = f[cand] >= 1000.0
    if not np.any(keep):
        return float(frames.sr / 2.0)
    drops, floors, cand = drops[keep], floors[keep], cand[keep]
    j = int(np.argmax(drops))  # the first of equal maxima, as a strict ">" scan keeps
    best, best_i, best_floor = float(drops[j]), int(cand[j]), float(floors[j])
    if best < _CLIFF_DB:
        return float(frames.sr / 2.0)
    ok = np.nonzero(level[:best_i + k_gap + 1] >= best_floor + _EDGE_DB)[0]
    return float(f[int(ok[-1])]) if ok.size else float(f[best_i])


def edge_drops_db(level: np.ndarray, k_below: int, k_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """For every bin ``i`` in ``k_below … len(level) − k_gap − 1``: the median of
    ``level[i − k_below:i]`` minus the 90th percentile of ``level[i + k_gap:]`` (the drop), and
    that percentile (the floor), in one vectorised pass.

    Equal to ``np.median`` / ``np.percentile(…, 90)`` (linear method) bin by bin: the suffixes
    are sorted as rows padded with +inf, and the percentile is interpolated with numpy's own
    virtual index and ``_lerp`` arithmetic (tested against the per-bin loop).
    """
    n = level.size
    idx = np.arange(k_below, n - k_gap)
    if idx.size == 0:
        return np.zeros(0), np.zeros(0)
    below = np.lib.stride_tricks.sliding_window_view(level, k_below)[idx - k_below]
    med = np.median(below, axis=1)
    start = idx + k_gap
    m = n - start  # suffix lengths
    cols = np.arange(n)[None, :]
    src = start[:, None] + cols
    suffix = np.where(cols < m[:, None], level[np.minimum(src, n - 1)], np.inf)
    suffix.sort(axis=1)
    virtual = (m - 1) * (90 / 100)  # numpy's "linear" virtual index
    lo = np.floor(virtual).astype(int)
    top = virtual >= m - 1  # numpy takes the last value there
    lo[top] = m[top] - 1
    hi = np.where(top, m - 1, lo + 1)
    t = virtual - np.floor(virtual)
    rows = np.arange(idx.size)
    a, b = suffix[rows, lo], suffix[rows, hi]
    diff = b - a
    floor = np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
    return med - floor, floor


def snr_db(frames: SpectralFrames) -> float | None:
    """Blind SNR (dB) of the segment from its frame powers (see the module docstring).

    ``None`` with fewer than 10 frames or a noise floor of digital silence.
    """
    p = np.sort(frames.frame_power)
    if p.size < 10:
        return None
    noise = float(np.mean(p[:max(1, p.size // 10)]))
    loud = float(np.mean(p[p.size // 2:]))
    if noise <= 0.0:
        return None
    return float(10.0 * np.log10(max(loud - noise, noise * 1e-3) / noise))
