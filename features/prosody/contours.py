"""Frame-level contours of the prosody stream: F0, intensity, HNR and F1–F3 on a 10-ms grid.

Computed only when asked (``fusion.analyze(path, contours=True)``), per segment, in the Praat
worker process (task ``contours`` of :mod:`features.prosody._praat_worker`), from the same
samples and pitch range as the segment measures. The grid is the file's: frame ``k`` is at
``k × 0.01 s`` from the start of the file, and a segment has the frames of the grid inside
``[start_s, end_s)``. Each column takes the value of the nearest frame of its Praat analysis
(all run at a 0.01-s step, so the nearest frame is at most 5 ms away); where the analysis has no
value the column is NaN:

==============  ==========================================================================
column          Praat analysis
==============  ==========================================================================
f0_hz           ``To Pitch (ac)``, time step 0.01 s, the file's pitch range; NaN unvoiced
intensity_db    ``To Intensity``, minimum pitch = pitch floor, 0.01 s, subtract mean; dB re
                2·10⁻⁵ with full scale = 1 Pa (relative); NaN for digital silence
hnr_db          ``To Harmonicity (cc)``, 0.01 s, pitch floor, 0.1, 1.0; NaN where Praat
                marks the frame unvoiced (−200 dB)
f1_hz … f3_hz   ``To Formant (burg)`` with the arguments of :data:`FORMANT_ARGS`; NaN on
                unvoiced frames (as the segment statistics) and where no k-th formant
==============  ==========================================================================

Memory: the values are float32 (6 × 4 bytes a frame) with an int64 frame number and an int32
segment number: 36 bytes a frame, 360 000 frames (13 MB) an hour of speech.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.prosody.formants import FORMANT_ARGS, voiced_at

__all__ = ["CONTOUR_STEP_S", "CONTOUR_COLUMNS", "Contours", "clip_contours", "grid_start",
           "assemble_contours"]

#: the grid step (s)
CONTOUR_STEP_S = 0.01
#: the value columns, in the order of the worker's arrays
CONTOUR_COLUMNS: tuple[str, ...] = ("f0_hz", "intensity_db", "hnr_db", "f1_hz", "f2_hz",
                                    "f3_hz")
#: bytes a frame: six float32 values, the int64 frame number and the int32 segment
BYTES_PER_FRAME = 4 * len(CONTOUR_COLUMNS) + 8 + 4


@dataclass(frozen=True)
class Contours:
    """The contours of one file.

    Attributes
    ----------
    frame : ndarray of int64, shape (n,)
        Grid frame numbers (time = ``frame × step_s`` from the start of the file), ascending.
    segment : ndarray of int32, shape (n,)
        Index of the segment each frame belongs to.
    values : dict of str to ndarray of float32, shape (n,)
        One array per name of :data:`CONTOUR_COLUMNS`; NaN where undefined.
    step_s : float
        The grid step.
    """

    frame: np.ndarray
    segment: np.ndarray
    values: dict[str, np.ndarray]
    step_s: float = CONTOUR_STEP_S

    @property
    def n_frames(self) -> int:
        return int(self.frame.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self.frame.nbytes + self.segment.nbytes
                   + sum(v.nbytes for v in self.values.values()))


def grid_start(start_s: float, step_s: float = CONTOUR_STEP_S) -> int:
    """The first grid frame at or after ``start_s``."""
    return int(math.ceil(start_s / step_s - 1e-9))


def _nearest(times_s: np.ndarray, x1: float, dx: float, values: np.ndarray) -> np.ndarray:
    """``values`` of the nearest frame to each time (NaN outside the analysis' frames)."""
    i = np.rint((times_s - x1) / dx).astype(np.int64)
    ok = (i >= 0) & (i < values.size)
    out = np.full(times_s.shape, np.nan)
    out[ok] = values[i[ok]]
    return out


def clip_contours(x: np.ndarray, sr: int, floor_hz: float, ceiling_hz: float,
                  step_s: float = CONTOUR_STEP_S) -> np.ndarray:
    """Contours of one clip at local times ``0, step_s, 2·step_s, …`` (below its duration).

    Parameters
    ----------
    x : np.ndarray, shape (n,)
        The clip's samples (its first sample is on the grid).
    sr : int
        Sample rate (Hz).
    floor_hz, ceiling_hz : float
        Pitch range (the file's, as for the segment measures).

    Returns
    -------
    np.ndarray, shape (6, n_frames), float64
        Rows in the order of :data:`CONTOUR_COLUMNS`; NaN where undefined (also every value
        of a clip too short for an analysis' window, or digitally silent).
    """
    import parselmouth
    from parselmouth.praat import call

    x = np.asarray(x, dtype=np.float64)
    n = int(math.ceil(x.size / sr / step_s - 1e-9)) if x.size else 0
    out = np.full((len(CONTOUR_COLUMNS), n), np.nan)
    if n == 0 or not np.all(np.isfinite(x)):
        return out
    x = x - float(np.mean(x))
    if float(np.max(np.abs(x))) < 1e-9:
        return out
    t = np.arange(n) * step_s
    snd = parselmouth.Sound(x, sampling_frequency=sr)
    pitch = None
    try:
        pitch = snd.to_pitch_ac(time_step=step_s, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)
        f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
        f0[f0 <= 0] = np.nan
        out[0] = _nearest(t, pitch.x1, pitch.dx, f0)
    except parselmouth.PraatError:
        pass
    try:
        inten = snd.to_intensity(minimum_pitch=floor_hz, time_step=step_s, subtract_mean=True)
        db = np.asarray(inten.values, dtype=np.float64).ravel()
        db[db < -299.0] = np.nan
        out[1] = _nearest(t, inten.x1, inten.dx, db)
    except parselmouth.PraatError:
        pass
    try:
        harm = call(snd, "To Harmonicity (cc)", step_s, floor_hz, 0.1, 1.0)
        h = np.asarray(harm.values, dtype=np.float64).ravel()
        h[h <= -199.0] = np.nan
        out[2] = _nearest(t, harm.x1, harm.dx, h)
    except parselmouth.PraatError:
        pass
    if pitch is not None:
        a = FORMANT_ARGS
        try:
            formant = call(snd, "To Formant (burg)", step_s, a["max_formants"],
                           a["max_formant_hz"], a["window_s"], a["pre_emphasis_hz"])
            ft = np.asarray(formant.xs(), dtype=np.float64)
            voiced = voiced_at(ft, pitch)
            for k in (1, 2, 3):
                f = np.full(ft.size, np.nan)
                f[voiced] = [formant.get_value_at_time(k, tt) for tt in ft[voiced]]
                out[2 + k] = _nearest(t, formant.x1, formant.dx, f)
        except parselmouth.PraatError:
            pass
    return out


def assemble_contours(starts_s: Sequence[float], ends_s: Sequence[float],
                      arrays: Sequence[Any], step_s: float = CONTOUR_STEP_S) -> Contours:
    """One :class:`Contours` from the per-segment arrays of :func:`clip_contours`.

    ``arrays[i]`` is segment ``i``'s flat (or (6, m)) array computed from a clip that starts at
    grid frame :func:`grid_start` of ``starts_s[i]``; frames at or after ``ends_s[i]`` are
    dropped. An array that is not an array (a lost segment) gives NaN frames.
    """
    n_col = len(CONTOUR_COLUMNS)
    frames: list[np.ndarray] = []
    segs: list[np.ndarray] = []
    cols: list[list[np.ndarray]] = [[] for _ in range(n_col)]
    for i, (s, e, arr) in enumerate(zip(starts_s, ends_s, arrays, strict=True)):
        k0 = grid_start(s, step_s)
        k1 = grid_start(e, step_s)  # first frame not inside [s, e)
        m = max(0, k1 - k0)
        vals = np.full((n_col, m), np.nan, dtype=np.float32)
        if isinstance(arr, np.ndarray) and arr.size:
            a = arr.reshape(n_col, -1)
            w = min(m, a.shape[1])
            vals[:, :w] = a[:, :w]
        frames.append(np.arange(k0, k0 + m, dtype=np.int64))
        segs.append(np.full(m, i, dtype=np.int32))
        for c in range(n_col):
            cols[c].append(vals[c])
    if not frames:
        empty = np.zeros(0, dtype=np.float32)
        return Contours(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32),
                        {c: empty.copy() for c in CONTOUR_COLUMNS}, step_s)
    return Contours(np.concatenate(frames), np.concatenate(segs),
                    {c: np.concatenate(cols[j]) for j, c in enumerate(CONTOUR_COLUMNS)},
                    step_s)
