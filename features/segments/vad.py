"""Speech segments: voice-activity detection and segmentation policies.

Segments are the unit of every score. Three policies:

``vad`` (default)
    Silero VAD (the ONNX model that the ``silero-vad`` package ships, run here with
    onnxruntime and numpy, so segmentation does not import torch) → speech regions; gaps
    shorter than ``merge_gap_s`` are merged, regions longer than ``max_segment_s`` are split
    at their quietest point, fragments shorter than ``min_segment_s`` join the nearer
    neighbour within ``max(merge_gap_s, min_segment_s)`` or are dropped.
``fixed``
    ``window_s`` windows with ``hop_s`` hop over the whole file (as older tools do), regardless
    of speech.
``transcript``
    one segment per Whisper segment (set by the pipeline from the transcript stream).

Invariants (tested): sorted, non-overlapping, inside ``[0, duration]``, each ≥ ``min_segment_s``
except under ``fixed`` where the last window may be shorter.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.errors import ModelUnavailable, ParameterError

#: the valid values of segments.policy
SEGMENT_POLICIES = ("vad", "fixed")

__all__ = [
    "SEGMENT_POLICIES",
    "Segment",
    "SegmentsConfig",
    "SileroVAD",
    "speech_probabilities",
    "speech_regions",
    "postprocess_regions",
    "fixed_segments",
    "segment_audio",
    "clear_vad_cache",
    "ClosedSegment",
    "StreamingSegmenter",
]


@dataclass(frozen=True, order=True)
class Segment:
    """A half-open time interval ``[start_s, end_s)`` in seconds."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start_s) and np.isfinite(self.end_s)):
            raise ParameterError(f"segment bounds must be finite; got {self.start_s}, {self.end_s}")
        if self.end_s < self.start_s:
            raise ParameterError(
                f"segment end {self.end_s:.3f} s is before its start {self.start_s:.3f} s")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


class SegmentsConfig(BaseModel):
    """Settings of segmentation (config section ``[segments]``)."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["vad", "fixed"] = Field(
        default="vad", description="'vad' (Silero speech regions) or 'fixed' (windows of window_s)")
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Silero speech probability")
    min_speech_ms: int = Field(250, ge=0, description="shorter VAD speech bursts are dropped")
    min_silence_ms: int = Field(300, ge=0, description="VAD silence needed to end a region")
    speech_pad_ms: int = Field(30, ge=0, description="padding added around VAD regions")
    merge_gap_s: float = Field(0.5, ge=0.0, description="merge regions closer than this")
    min_segment_s: float = Field(1.0, ge=0.0, description="shorter fragments merged/dropped")
    max_segment_s: float = Field(15.0, gt=0.0, description="longer regions split at a quiet point")
    window_s: float = Field(5.0, gt=0.0, description="window length of the 'fixed' policy")
    hop_s: float | None = Field(None, gt=0.0, description="hop of 'fixed'; None = window_s")

    @field_validator("policy", mode="before")
    @classmethod
    def _known_policy(cls, value: Any) -> Any:
        if value not in SEGMENT_POLICIES:
            extra = (" ('transcript' was offered by earlier configs but never built: segments "
                     "from the transcript's sentences would need the transcript before "
                     "segmentation)" if value == "transcript" else "")
            raise ValueError(f"unknown segments.policy {value!r}; valid: "
                             f"{', '.join(SEGMENT_POLICIES)}{extra}")
        return value

    @model_validator(mode="after")
    def _check(self) -> SegmentsConfig:
        if self.min_segment_s > self.max_segment_s:
            raise ValueError(
                f"min_segment_s ({self.min_segment_s}) must not exceed max_segment_s "
                f"({self.max_segment_s})")
        return self


# --------------------------------------------------------------------------------------------
# Silero VAD via onnxruntime
# --------------------------------------------------------------------------------------------

_FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of left context the v5 model expects at 16 kHz


def _silero_model_path() -> Path:
    """Path of ``silero_vad.onnx`` inside the installed ``silero-vad`` package.

    Found without importing the package (its ``__init__`` imports torch and sets torch's
    global thread count to 1).
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "Silero VAD is not installed: run `pip install silero-vad` "
            "(or use segments.policy = 'fixed').")
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "data" / "silero_vad.onnx"
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(
        "the silero-vad package has no data/silero_vad.onnx; reinstall it "
        "(`pip install --force-reinstall silero-vad`) or use segments.policy = 'fixed'.")


class SileroVAD:
    """Silero VAD v5 (ONNX) frame classifier.

    Load once with :meth:`load`; :meth:`probabilities` is then cheap (real-time factor ≈ 0.006
    on 2 cores). Thread-safe for concurrent calls: each call keeps its own recurrent state.
    """

    def __init__(self, *, num_threads: int = 1) -> None:
        self.num_threads = num_threads
        self._session = None

    @property
    def model_path(self) -> Path:
        return _silero_model_path()

    def load(self) -> SileroVAD:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, int(self.num_threads))
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        return self

    def probabilities(self, y: np.ndarray, sr: int = 16_000) -> np.ndarray:
        """Speech probability of every 512-sample (32 ms) frame of ``y`` (16 kHz mono).

        The same samples are not run through the model twice: the last few answers are
        kept, keyed by a BLAKE2b digest of the float32 samples (so the pipeline's
        segmentation and the transcript's speech gate share one pass over a file). The model
        is deterministic, so a kept answer is the answer a new pass would give.
        """
        if sr != 16_000:
            raise ParameterError(f"Silero VAD runs at 16000 Hz here; got sr={sr}")
        self.load()
        assert self._session is not None
        n_frames = int(np.ceil(len(y) / _FRAME))
        if n_frames == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(n_frames * _FRAME, dtype=np.float32)
        padded[: len(y)] = y
        key = (str(self.model_path), len(y),
               hashlib.blake2b(memoryview(padded).cast("B"), digest_size=20).digest())
        with _CACHE_LOCK:
            kept = _CACHE.get(key)
            if kept is not None:
                _CACHE.move_to_end(key)
                return kept.copy()
        out = self._run(padded, n_frames)
        with _CACHE_LOCK:
            _CACHE[key] = out.copy()
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return out

    def _run(self, padded: np.ndarray, n_frames: int) -> np.ndarray:
        assert self._session is not None
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros(_CONTEXT, dtype=np.float32)
        sr_arr = np.array(16_000, dtype=np.int64)
        out = np.empty(n_frames, dtype=np.float32)
        for i in range(n_frames):
            frame = padded[i * _FRAME:(i + 1) * _FRAME]
            x = np.concatenate([context, frame])[None, :]
            prob, state = self._session.run(None, {"input": x, "state": state, "sr": sr_arr})
            out[i] = float(np.asarray(prob).reshape(-1)[0])
            context = frame[-_CONTEXT:]
        return out


#: answers of :meth:`SileroVAD.probabilities` kept per (model, length, digest of samples)
_CACHE: OrderedDict[tuple[str, int, bytes], np.ndarray] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def clear_vad_cache() -> None:
    """Forget the kept VAD answers (benchmarks use this to time a fresh pass)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def speech_probabilities(y: np.ndarray, sr: int = 16_000,
                         vad: SileroVAD | None = None) -> np.ndarray:
    """Per-frame (32 ms) Silero speech probabilities of a 16 kHz signal."""
    return (vad or SileroVAD()).probabilities(y, sr)


def speech_regions(
    probs: np.ndarray,
    n_samples: int,
    *,
    sr: int = 16_000,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 300,
    speech_pad_ms: int = 30,
) -> list[tuple[int, int]]:
    """Turn frame probabilities into speech regions in samples (Silero's hysteresis rule).

    A region starts where the probability reaches ``threshold`` and ends after
    ``min_silence_ms`` below ``threshold - 0.15``; regions shorter than ``min_speech_ms`` are
    dropped, and each side is padded by ``speech_pad_ms`` (halving the pad where two regions
    would touch). This follows ``silero_vad.get_speech_timestamps``.
    """
    neg_threshold = max(threshold - 0.15, 0.01)
    min_speech = sr * min_speech_ms / 1000
    min_silence = sr * min_silence_ms / 1000
    pad = int(sr * speech_pad_ms / 1000)
    triggered = False
    regions: list[list[int]] = []
    start = 0
    temp_end = 0
    for i, p in enumerate(probs):
        pos = i * _FRAME
        if p >= threshold and temp_end:
            temp_end = 0
        if p >= threshold and not triggered:
            triggered = True
            start = pos
            continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = pos
            if pos - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                regions.append([start, temp_end])
            triggered = False
            temp_end = 0
    if triggered and n_samples - start > min_speech:
        regions.append([start, n_samples])
    for k, reg in enumerate(regions):
        if k == 0:
            reg[0] = max(0, reg[0] - pad)
        if k < len(regions) - 1:
            gap = regions[k + 1][0] - reg[1]
            if gap < 2 * pad:
                reg[1] += gap // 2
                regions[k + 1][0] = max(0, regions[k + 1][0] - gap // 2)
            else:
                reg[1] = min(n_samples, reg[1] + pad)
                regions[k + 1][0] = max(0, regions[k + 1][0] - pad)
        else:
            reg[1] = min(n_samples, reg[1] + pad)
    return [(a, b) for a, b in regions]


def _quietest_point(y: np.ndarray, sr: int, lo_s: float, hi_s: float) -> float:
    """Time in ``[lo_s, hi_s]`` of the 20-ms frame with the least energy."""
    hop = int(0.010 * sr)
    win = int(0.020 * sr)
    i0, i1 = int(lo_s * sr), int(hi_s * sr)
    chunk = y[i0:i1]
    if len(chunk) <= win:
        return (lo_s + hi_s) / 2
    n = 1 + (len(chunk) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    energy = np.mean(chunk[idx].astype(np.float64) ** 2, axis=1)
    best = int(np.argmin(energy))
    return lo_s + (best * hop + win / 2) / sr


def postprocess_regions(
    regions_s: Sequence[tuple[float, float]],
    y: np.ndarray,
    sr: int,
    *,
    merge_gap_s: float,
    min_segment_s: float,
    max_segment_s: float,
) -> list[Segment]:
    """Merge close regions, split long ones at their quietest point, absorb or drop short ones."""
    duration_s = len(y) / float(sr)
    merged: list[list[float]] = []
    for a, b in sorted(regions_s):
        a, b = max(0.0, a), min(duration_s, b)
        if b <= a:
            continue
        if merged and a - merged[-1][1] <= merge_gap_s:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    # split regions longer than max_segment_s at the quietest point of their middle part
    split: list[list[float]] = []
    stack = list(reversed(merged))
    while stack:
        a, b = stack.pop()
        if b - a <= max_segment_s:
            split.append([a, b])
            continue
        lo = a + max(min_segment_s, 0.25 * max_segment_s)
        hi = min(b - max(min_segment_s, 0.25 * max_segment_s), a + max_segment_s)
        cut = _quietest_point(y, sr, lo, hi) if hi > lo else a + max_segment_s
        stack.append([cut, b])
        stack.append([a, cut])
    # fragments shorter than min_segment_s join the nearer neighbour within reach
    # (gap ≤ max(merge_gap_s, min_segment_s), merged length ≤ max_segment_s) or are dropped
    reach = max(merge_gap_s, min_segment_s)
    final: list[list[float]] = []
    for k, (a, b) in enumerate(split):
        if b - a >= min_segment_s:
            final.append([a, b])
            continue
        prev = final[-1] if final else None
        nxt = split[k + 1] if k + 1 < len(split) else None
        gap_prev = a - prev[1] if prev is not None and b - prev[0] <= max_segment_s else None
        gap_next = nxt[0] - b if nxt is not None and nxt[1] - a <= max_segment_s else None
        candidates = [(g, side) for g, side in ((gap_prev, "prev"), (gap_next, "next"))
                      if g is not None and g <= reach]
        if not candidates:
            continue  # an isolated short burst (cough, click) is dropped
        _, side = min(candidates)
        if side == "prev" and prev is not None:
            prev[1] = b
        elif nxt is not None:
            nxt[0] = a
    return [Segment(round(a, 3), round(b, 3)) for a, b in final if b > a]


def fixed_segments(duration_s: float, window_s: float, hop_s: float | None = None) -> list[Segment]:
    """Windows of ``window_s`` every ``hop_s`` seconds covering ``[0, duration_s]``."""
    if window_s <= 0:
        raise ParameterError(f"window_s must be > 0; got {window_s}")
    hop = window_s if hop_s is None else hop_s
    if hop <= 0:
        raise ParameterError(f"hop_s must be > 0; got {hop_s}")
    out: list[Segment] = []
    t = 0.0
    while t < duration_s - 1e-9:
        out.append(Segment(round(t, 3), round(min(t + window_s, duration_s), 3)))
        if t + window_s >= duration_s:
            break
        t += hop
    return out


def segment_audio(y: np.ndarray, sr: int, config: SegmentsConfig | None = None,
                  *, vad: SileroVAD | None = None) -> list[Segment]:
    """Segments of a 16 kHz mono signal under ``config.policy`` (``vad`` or ``fixed``).

    Examples
    --------
    >>> import numpy as np
    >>> segment_audio(np.zeros(16000 * 3, dtype=np.float32), 16000)
    []
    """
    cfg = config or SegmentsConfig()
    duration_s = len(y) / float(sr)
    if cfg.policy == "fixed":
        return fixed_segments(duration_s, cfg.window_s, cfg.hop_s)
    probs = speech_probabilities(y, sr, vad)
    regions = speech_regions(
        probs, len(y), sr=sr, threshold=cfg.vad_threshold, min_speech_ms=cfg.min_speech_ms,
        min_silence_ms=cfg.min_silence_ms, speech_pad_ms=cfg.speech_pad_ms)
    regions_s = [(a / sr, b / sr) for a, b in regions]
    return postprocess_regions(regions_s, y, sr, merge_gap_s=cfg.merge_gap_s,
                               min_segment_s=cfg.min_segment_s, max_segment_s=cfg.max_segment_s)


# --------------------------------------------------------------------------------------------
# Streaming segmentation (live analysis)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedSegment:
    """A segment closed by :class:`StreamingSegmenter`, with its audio.

    Attributes
    ----------
    segment : Segment
        ``[start_s, end_s)`` in stream time (seconds since the first sample).
    audio : np.ndarray
        The segment's 16 kHz float32 samples.
    context : np.ndarray
        Up to ``context_s`` seconds of the audio just before the segment (acoustic context).
    """

    segment: Segment
    audio: np.ndarray
    context: np.ndarray


class StreamingSegmenter:
    """Silero VAD over a growing 16 kHz signal: segments close as the speaker pauses.

    The rules of :func:`segment_audio` applied online: Silero's hysteresis (a region starts at
    ``vad_threshold``, ends after ``min_silence_ms`` below ``vad_threshold - 0.15``; regions
    shorter than ``min_speech_ms`` are dropped), regions closer than ``merge_gap_s`` are merged
    (so a segment closes ``max(min_silence_ms, merge_gap_s)`` after the last speech),
    ``speech_pad_ms`` of padding, a region reaching ``max_segment_s`` is cut at its quietest
    point, and a closed fragment shorter than ``min_segment_s`` waits for the next region
    within ``max(merge_gap_s, min_segment_s)`` (joined) or is dropped. A closed segment is
    final. Memory is bounded: only the open region (≤ ``max_segment_s``) and ``context_s`` of
    audio before it are kept; the recurrent VAD state is carried from frame to frame.

    Parameters
    ----------
    config : SegmentsConfig
        Only ``policy = "vad"`` is streamed.
    vad : SileroVAD, optional
        A loaded model (shared across streams; every stream keeps its own state).
    context_s : float
        Audio kept before each segment for :attr:`ClosedSegment.context`.

    Examples
    --------
    >>> import numpy as np
    >>> seg = StreamingSegmenter(SegmentsConfig())                  # doctest: +SKIP
    >>> closed = seg.push(np.zeros(16000, dtype=np.float32))        # doctest: +SKIP
    >>> closed += seg.flush()                                        # doctest: +SKIP
    """

    SR = 16_000

    def __init__(self, config: SegmentsConfig | None = None, *, vad: SileroVAD | None = None,
                 context_s: float = 1.5) -> None:
        cfg = config or SegmentsConfig()
        if cfg.policy != "vad":
            raise ParameterError(
                f"live segmentation needs segments.policy = 'vad'; got {cfg.policy!r}")
        if context_s < 0:
            raise ParameterError(f"context_s must be >= 0; got {context_s}")
        self.config = cfg
        self.vad = (vad or SileroVAD()).load()
        sr = self.SR
        self._thr = cfg.vad_threshold
        self._neg = max(cfg.vad_threshold - 0.15, 0.01)
        self._min_speech = sr * cfg.min_speech_ms / 1000
        self._min_silence = sr * cfg.min_silence_ms / 1000
        self._pad = int(sr * cfg.speech_pad_ms / 1000)
        self._merge_gap = int(sr * cfg.merge_gap_s)
        self._min_seg = int(sr * cfg.min_segment_s)
        self._max_seg = int(sr * cfg.max_segment_s)
        self._reach = int(sr * max(cfg.merge_gap_s, cfg.min_segment_s))
        self._context = int(sr * context_s)
        # model state
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._ctx = np.zeros(_CONTEXT, dtype=np.float32)
        self._sr_arr = np.array(sr, dtype=np.int64)
        # audio: buf[0] is absolute sample buf_start; frames are processed from n_framed
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self._n_framed = 0
        # hysteresis (absolute samples)
        self._triggered = False
        self._raw_start = 0
        self._temp_end = 0
        # the open group of merged regions: start, end of its last finished raw region
        self._g_start: int | None = None
        self._g_end: int | None = None
        self._g_prev_end: int | None = None
        # a closed fragment shorter than min_segment_s waiting for a neighbour
        self._short: tuple[int, int] | None = None
        self._emitted_end = 0

    @property
    def received_samples(self) -> int:
        """Samples pushed so far."""
        return self._buf_start + len(self._buf)

    @property
    def buffered_samples(self) -> int:
        """Samples held now (bounded by ``max_segment_s`` + reach + ``context_s``)."""
        return len(self._buf)

    def push(self, y: np.ndarray) -> list[ClosedSegment]:
        """Add 16 kHz float samples; return the segments this closed (in order)."""
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if len(y):
            self._buf = np.concatenate([self._buf, y])
        out: list[ClosedSegment] = []
        end = self.received_samples
        while self._n_framed + _FRAME <= end:
            pos = self._n_framed
            frame = self._slice(pos, pos + _FRAME)
            x = np.concatenate([self._ctx, frame])[None, :]
            assert self.vad._session is not None
            prob, self._state = self.vad._session.run(
                None, {"input": x, "state": self._state, "sr": self._sr_arr})
            self._ctx = frame[-_CONTEXT:].copy()
            self._n_framed += _FRAME
            self._step(float(np.asarray(prob).reshape(-1)[0]), pos, out)
        self._trim()
        return out

    def flush(self) -> list[ClosedSegment]:
        """End of stream: close the open region (the trailing partial frame is not scored)."""
        out: list[ClosedSegment] = []
        n = self.received_samples
        if self._triggered:
            if n - self._raw_start > self._min_speech:
                self._raw_end(n)
            else:
                self._raw_drop()
            self._triggered = False
        if self._g_start is not None and self._g_end is not None:
            self._close_group(out, final=True)
        self._g_start = self._g_end = None
        return out

    # ---------------------------------------------------------------- internals
    def _slice(self, a: int, b: int) -> np.ndarray:
        a = max(a, self._buf_start)
        return self._buf[a - self._buf_start:max(a, b) - self._buf_start]

    def _step(self, p: float, pos: int, out: list[ClosedSegment]) -> None:
        if p >= self._thr and self._temp_end:
            self._temp_end = 0
        if p >= self._thr and not self._triggered:
            self._triggered = True
            self._raw_start = pos
            self._open(pos, out)
        elif p < self._neg and self._triggered:
            if not self._temp_end:
                self._temp_end = pos
            if pos - self._temp_end >= self._min_silence:
                if self._temp_end - self._raw_start > self._min_speech:
                    self._raw_end(self._temp_end)
                else:
                    self._raw_drop()
                self._triggered = False
                self._temp_end = 0
        # a group whose last region ended more than merge_gap ago closes
        if (not self._triggered and self._g_start is not None and self._g_end is not None
                and pos - self._g_end - 2 * self._pad > self._merge_gap):
            self._close_group(out)
        if (not self._triggered and self._short is not None
                and pos - self._short[1] > self._reach):
            self._short = None  # an isolated short burst (cough, click) is dropped
        # a group reaching max_segment_s is cut at its quietest point
        if self._g_start is not None:
            start = max(0, self._g_start - self._pad)
            if pos + _FRAME - start >= self._max_seg:
                self._cut(start, out)

    def _open(self, pos: int, out: list[ClosedSegment]) -> None:
        if self._g_start is not None and self._g_end is not None:
            if pos - self._g_end - 2 * self._pad <= self._merge_gap:
                self._g_prev_end, self._g_end = self._g_end, None  # merged
                return
            self._close_group(out)
        self._g_start, self._g_end, self._g_prev_end = pos, None, None
        if self._short is not None and pos - self._short[1] <= self._reach:
            self._g_start = self._short[0] + self._pad  # the short fragment joins
        self._short = None

    def _raw_end(self, end: int) -> None:
        self._g_end = end

    def _raw_drop(self) -> None:
        if self._g_prev_end is None:
            self._g_start = self._g_end = None  # the group was this too-short burst only
        else:
            self._g_end, self._g_prev_end = self._g_prev_end, None

    def _cut(self, start: int, out: list[ClosedSegment]) -> None:
        sr = self.SR
        lo = start + max(self._min_seg, self._max_seg // 4)
        hi = start + self._max_seg
        region = self._slice(start, hi)
        cut_s = _quietest_point(region, sr, (lo - start) / sr, (hi - start) / sr)
        cut = start + int(round(cut_s * sr))
        self._emit(start, cut, out)
        self._g_start = cut + self._pad  # the next segment starts at the cut
        if self._g_end is not None and self._g_end <= cut:
            self._g_start = self._g_end = None

    def _close_group(self, out: list[ClosedSegment], *, final: bool = False) -> None:
        assert self._g_start is not None and self._g_end is not None
        a = max(0, self._g_start - self._pad, self._emitted_end)
        b = min(self.received_samples, self._g_end + self._pad)
        self._g_start = self._g_end = self._g_prev_end = None
        if b - a >= self._min_seg:
            self._emit(a, b, out)
        elif not final:
            self._short = (a, b)

    def _emit(self, a: int, b: int, out: list[ClosedSegment]) -> None:
        a = max(a, self._emitted_end)
        if b <= a:
            return
        sr = self.SR
        seg = Segment(round(a / sr, 3), round(b / sr, 3))
        out.append(ClosedSegment(segment=seg, audio=self._slice(a, b).copy(),
                                 context=self._slice(a - self._context, a).copy()))
        self._emitted_end = b

    def _trim(self) -> None:
        """Drop audio no open region, waiting fragment or context can need."""
        keep_from = self._n_framed - _FRAME
        if self._g_start is not None:
            keep_from = min(keep_from, self._g_start - self._pad)
        if self._triggered:
            keep_from = min(keep_from, self._raw_start - self._pad)
        if self._short is not None:
            keep_from = min(keep_from, self._short[0])
        keep_from -= self._context
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:].copy()
            self._buf_start += drop
