"""The streaming half of :mod:`features.audio.load`: check, mix down and resample audio block
by block.

A 2-hour 44.1 kHz stereo file is 2.5 GB of float32 and 5 GB of float64; decoding it whole and
converting it whole is what made loading one cost gigabytes. Here decoded samples arrive in
blocks of about :data:`BLOCK_S` seconds, and each block is checked (NaN/inf count, peak,
full-scale count), mixed to mono and fed to a streaming soxr resampler that writes into one
preallocated float32 output. Memory is that output plus a few blocks, whatever the duration.

The arithmetic is the whole-array arithmetic, block by block: integer PCM is scaled to float64
as before, the mix is the float64 mean of the live channels cast to float32, and
``soxr.ResampleStream`` gives the same samples as one-shot ``soxr.resample`` (bit-identical for
any block size; ``tests/test_audio_stream.py`` checks it against the whole-array reference).

Dead channels (digital silence for the whole file) must be known before the first block is
mixed. Blocks are held (at most :data:`HOLD_S` seconds of them) until every channel has shown a
non-zero sample, which for an ordinary recording happens in the first block. A channel still
silent after that is decided by reading on to the end without keeping anything, and then the
audio is decoded a second time (a block source is a callable that starts a fresh decode).

:class:`PipeReader` reads a decoder subprocess's output into caller-owned buffers, with a byte
bound and a time budget, for the ffmpeg path and for the isolated decoder process.
"""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from features.errors import ParameterError

__all__ = [
    "BLOCK_S",
    "HOLD_S",
    "FULL_SCALE",
    "BlockSource",
    "StreamResult",
    "PipeReader",
    "block_frames",
    "check_sample_dtype",
    "as_float64",
    "stream_mono",
]

#: seconds of audio per block (fewer for many channels: at most ~2 M samples per block)
BLOCK_S = 10.0
#: seconds of blocks held while deciding which channels are live, before decoding twice
HOLD_S = 30.0
#: a sample at or above this magnitude counts as full scale (clipping warning)
FULL_SCALE = 0.999
_MAX_BLOCK_SAMPLES = 1 << 21

#: a callable that starts a decode and yields raw ``(frames, channels)`` blocks
BlockSource = Callable[[], Iterator[np.ndarray]]


def block_frames(sr: int, channels: int) -> int:
    """Frames per block: :data:`BLOCK_S` seconds, at most about 2 M samples over all channels."""
    return max(1024, min(int(sr * BLOCK_S), _MAX_BLOCK_SAMPLES // max(1, channels)))


def check_sample_dtype(dtype: np.dtype) -> None:
    """Raise :class:`ParameterError` unless samples of ``dtype`` can be audio."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ParameterError(
            f"audio samples must be integer or floating point; got dtype {dtype}")


def as_float64(block: np.ndarray) -> np.ndarray:
    """Integer PCM → float64 in [-1, 1] (unsigned: offset binary); floats → float64.

    The result is C-contiguous, so a row's channel mean sums in the same order whatever the
    input's memory layout.
    """
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        if info.min == 0:  # unsigned (8-bit WAV)
            half = (info.max + 1) / 2
            return (block.astype(np.float64, order="C") - half) / half
        return block.astype(np.float64, order="C") / float(max(abs(info.min), info.max))
    check_sample_dtype(block.dtype)
    return block.astype(np.float64, order="C", copy=False)


def _nonzero_channels(block: np.ndarray) -> np.ndarray:
    """Per channel: does this raw block hold a sample that is not digital silence?

    NaN counts as not silent, as it did for the whole-array peak (``max(|y|) == 0`` is false).
    """
    zero: int = 0
    if np.issubdtype(block.dtype, np.unsignedinteger):
        zero = (int(np.iinfo(block.dtype).max) + 1) // 2
    return np.any(block != zero, axis=0)


@dataclass(frozen=True)
class StreamResult:
    """What :func:`stream_mono` found and made.

    Attributes
    ----------
    y : np.ndarray, shape (n,), float32
        Mono at the target rate, clipped to [-1, 1]; meaningless when ``n_bad`` > 0.
    frames : int
        Frames decoded (at the original rate).
    n_bad : int
        Samples (over all channels) that are NaN or infinite.
    peak : float
        Largest ``|sample|`` over all channels (0 for no samples).
    n_full_scale : int
        Samples (over all channels) with ``|sample| >= FULL_SCALE``.
    n_samples : int
        Samples (over all channels) behind ``peak`` and ``n_full_scale``.
    dead : tuple of int
        Channels left out of the mix-down because they are silent throughout.
    """

    y: np.ndarray
    frames: int
    n_bad: int
    peak: float
    n_full_scale: int
    n_samples: int
    dead: tuple[int, ...]

    @property
    def clipped_fraction(self) -> float:
        """Fraction of samples at full scale."""
        return self.n_full_scale / self.n_samples if self.n_samples else 0.0


class _Output:
    """Float32 output, preallocated to the expected length, grown only if the decode runs long.

    ``np.empty`` reserves address space; pages cost memory only once written, so an expected
    length that over-states the real one costs nothing, and the final trim (``resize``, a
    ``realloc`` that shrinks in place) copies nothing. Growing does copy (a transient second
    buffer), so callers give an expected length with a margin where it is an estimate. Nothing
    else holds a view of the buffer while it is filled, which makes ``refcheck=False`` safe.
    """

    def __init__(self, capacity: int) -> None:
        self._buf = np.empty(max(int(capacity), 1), dtype=np.float32)
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        end = self.n + len(x)
        if end > len(self._buf):
            self._buf.resize(max(end, len(self._buf) + len(self._buf) // 4), refcheck=False)
        np.clip(x, -1.0, 1.0, out=self._buf[self.n:end])  # resampling overshoot on clipped input
        self.n = end

    def take(self) -> np.ndarray:
        self._buf.resize(self.n, refcheck=False)
        out, self._buf = self._buf, np.empty(0, dtype=np.float32)
        return out


def _close(blocks: Iterator[np.ndarray]) -> None:
    close = getattr(blocks, "close", None)
    if close is not None:
        close()


def _chain(held: list[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    try:
        while held:
            yield held.pop(0)
        yield from rest
    finally:
        _close(rest)


def _live_channels(open_blocks: BlockSource, channels: int,
                   hold_frames: int) -> tuple[Iterator[np.ndarray], tuple[int, ...]]:
    """Start a decode and find the channels that are not silent throughout.

    Returns the blocks to mix (the held ones first, then the rest of the same decode; or a
    second decode when more than ``hold_frames`` had to be read to decide) and the indices of
    the live channels (empty when every channel is silent).
    """
    blocks = open_blocks()
    if channels == 1:
        return blocks, (0,)
    seen = np.zeros(channels, dtype=bool)
    held: list[np.ndarray] | None = []
    held_frames = 0
    try:
        for block in blocks:
            seen |= _nonzero_channels(block)
            if held is not None:
                held.append(block)
                held_frames += len(block)
                if held_frames > hold_frames:
                    held = None  # too much to keep: decide first, decode again afterwards
            if seen.all():
                break
    except BaseException:
        _close(blocks)
        raise
    live = tuple(int(i) for i in np.flatnonzero(seen))
    if held is None:
        _close(blocks)
        return open_blocks(), live
    if seen.all():
        return _chain(held, blocks), live
    _close(blocks)  # read to the end while every block fitted in ``held``
    return iter(held), live


def _mix(block: np.ndarray, live: tuple[int, ...], channels: int) -> np.ndarray:
    """Float64 block → float32 mono: the mean of the live channels (channel 0 if none)."""
    if channels == 1 or not live:
        mono = block[:, 0]
    elif len(live) == channels:
        mono = block.mean(axis=1, dtype=np.float64)
    else:
        mono = block[:, list(live)].mean(axis=1, dtype=np.float64)
    return mono.astype(np.float32)


def stream_mono(open_blocks: BlockSource, *, sr: int, channels: int, expected_frames: int,
                target_sr: int) -> StreamResult:
    """Check, mix down and resample a decode, one block at a time.

    Parameters
    ----------
    open_blocks : BlockSource
        Starts a decode and yields raw ``(frames, channels)`` blocks (any integer or float
        dtype, scaled as :func:`as_float64` does). Called a second time only when deciding the
        dead channels took more than :data:`HOLD_S` seconds of audio.
    sr : int
        Sample rate of the blocks, > 0.
    channels : int
        Channel count of the blocks.
    expected_frames : int
        Frames the decode is expected to give; sizes the output (it grows if there are more).
    target_sr : int
        Output rate; soxr "VHQ", streaming, when it differs from ``sr``.

    Returns
    -------
    StreamResult
        After the first block holding a NaN or infinite value, later blocks are only counted
        (frames, bad samples); nothing more is mixed or resampled.
    """
    import soxr

    blocks, live = _live_channels(open_blocks, channels, hold_frames=int(HOLD_S * sr))
    resampler = None
    capacity = expected_frames
    if sr != target_sr:
        resampler = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="VHQ")
        capacity = int(np.ceil(expected_frames * target_sr / sr)) + 16
    out = _Output(capacity)
    frames = n_bad = n_full = n_samples = 0
    peak = 0.0
    try:
        for raw in blocks:
            frames += raw.shape[0]
            if raw.dtype.kind == "f":
                n_bad += raw.size - int(np.count_nonzero(np.isfinite(raw)))
            if n_bad or raw.size == 0:
                continue
            block = as_float64(raw)
            magnitude = np.abs(block)
            peak = max(peak, float(magnitude.max()))
            n_full += int(np.count_nonzero(magnitude >= FULL_SCALE))
            n_samples += block.size
            del magnitude
            mono = _mix(block, live, channels)
            out.append(mono if resampler is None else resampler.resample_chunk(mono))
    finally:
        _close(blocks)
    if resampler is not None and frames and not n_bad:
        out.append(resampler.resample_chunk(np.empty(0, dtype=np.float32), last=True))
    dead = tuple(i for i in range(channels) if i not in live) if 0 < len(live) < channels else ()
    return StreamResult(y=out.take(), frames=frames, n_bad=n_bad, peak=peak,
                        n_full_scale=n_full, n_samples=n_samples, dead=dead)


class PipeReader:
    """Read a child process's stdout into caller-owned buffers, with a byte bound and a budget.

    The time budget counts the time spent waiting on the child (in the reads and the final
    wait), not the time the caller spends on what it has read: a decoder gets ``timeout_s`` of
    its own time however slowly its output is consumed, and one that stops answering is killed
    (``kill``, default ``proc.kill``) when the budget runs out. stderr is drained in a thread;
    its first 64 KiB are kept.

    Parameters
    ----------
    proc : subprocess.Popen
        Started with ``stdout=PIPE, stderr=PIPE``.
    limit_bytes : int
        More stdout than this kills the child and sets :attr:`exceeded`.
    timeout_s : float
        The time budget; when it runs out the child is killed and :attr:`expired` set.
    kill : callable, optional
        How to kill the child (e.g. its whole process group).
    """

    _ERR_KEEP = 1 << 16

    def __init__(self, proc: subprocess.Popen[bytes], *, limit_bytes: int, timeout_s: float,
                 kill: Callable[[], None] | None = None) -> None:
        if not (isinstance(proc.stdout, io.BufferedReader)
                and isinstance(proc.stderr, io.BufferedReader)):
            raise ParameterError("PipeReader needs a process started with buffered stdout and "
                                 "stderr pipes (stdout=PIPE, stderr=PIPE, the default bufsize)")
        self._proc = proc
        self._stdout = proc.stdout
        self._stderr = proc.stderr
        self._kill = kill if kill is not None else proc.kill
        self.limit_bytes = int(limit_bytes)
        self.timeout_s = float(timeout_s)
        #: bytes read from stdout so far
        self.total = 0
        #: more than ``limit_bytes`` arrived; the child was killed
        self.exceeded = False
        #: the time budget ran out; the child was killed
        self.expired = False
        self._spent = 0.0
        self._since: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._err = bytearray()
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    # -- threads ---------------------------------------------------------------------------

    def _drain_stderr(self) -> None:
        while True:
            chunk = self._stderr.read1(1 << 16)
            if not chunk:
                return
            room = self._ERR_KEEP - len(self._err)
            if room > 0:
                self._err += chunk[:room]

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._since is None:
                    self._cond.wait()
                    continue
                left = self.timeout_s - self._spent - (time.monotonic() - self._since)
                if left <= 0:
                    self.expired = True
                    break
                self._cond.wait(left)
        if self.expired:
            self._kill()

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        with self._cond:
            self._since = time.monotonic()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                if self._since is not None:
                    self._spent += time.monotonic() - self._since
                self._since = None

    # -- reading ---------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.limit_bytes and not self.exceeded:
            self.exceeded = True
            self._kill()

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (a byte view) from stdout; fewer bytes only at the end of the stream
        or when the byte bound is passed (then :attr:`exceeded` is set)."""
        got = 0
        with self._waiting():
            while got < len(buf) and not self.exceeded:
                n = self._stdout.readinto(buf[got:])
                if not n:
                    break
                got += n
                self._count(n)
        return got

    def readline(self, max_bytes: int) -> bytes:
        """One line of stdout (with its newline), at most ``max_bytes``; ``b""`` at the end."""
        with self._waiting():
            line = self._stdout.readline(max_bytes)
        self._count(len(line))
        return line

    def drain(self) -> None:
        """Read and drop the rest of stdout (counted against the byte bound)."""
        scratch = memoryview(bytearray(1 << 16))
        while not self.exceeded and self.readinto(scratch) == len(scratch):
            pass

    def finish(self) -> tuple[int, bytes]:
        """Wait for the child to exit; its exit status and (the start of) its stderr.

        Raises
        ------
        subprocess.TimeoutExpired
            The budget ran out and the child did not exit cleanly.
        """
        left = max(0.1, self.timeout_s - self._spent)
        with self._waiting():
            try:
                rc = self._proc.wait(timeout=left + 1.0)
            except subprocess.TimeoutExpired:
                self.expired = True
                self._kill()
                rc = self._proc.wait()
        self._err_thread.join(timeout=1.0)
        if self.expired and rc != 0:
            raise subprocess.TimeoutExpired(self._proc.args, self.timeout_s)
        return rc, bytes(self._err)

    def close(self) -> None:
        """Stop the watchdog; kill the child if it still runs."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._proc.poll() is None:
            self._kill()
            self._proc.wait()
