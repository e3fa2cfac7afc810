"""One speaker per channel (call and interview recordings): ``speakers.mode = "channels"``.

Policy (stated in every result): speech segments are found on the mix-down as usual; within
them, each 100 ms frame belongs to the channel with the most energy; frames where no channel
is within 50 dB of the file's loudest frame are pauses and take their neighbours' channel;
runs shorter than ``min_turn_s`` inside a segment join their neighbour; each segment is split
where the dominant channel changes. Crosstalk (one voice leaking into the other microphone
some 20-40 dB down) therefore never makes a turn of its own. A frame where a second channel
is within ``channel_dominance_db`` of the loudest is marked as overlap (two people talking
at once). Channels that are entirely digital silence are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.errors import ParameterError
from features.segments.vad import Segment
from features.speakers.config import MAX_CHANNELS, SpeakersConfig
from features.speakers.result import SpeakerInfo, SpeakersResult, SpeakerTurn

__all__ = ["diarize_channels"]

_FRAME_S = 0.1
_QUIET_DB = 50.0


def _frame_db(x: np.ndarray, sr: int, start: int, stop: int, hop: int) -> np.ndarray:
    """Energy in dB of each ``hop``-sample frame of ``x[start:stop]`` (one column per channel)."""
    seg = x[start:stop].astype(np.float64)
    n = max(1, len(seg) // hop)
    seg = seg[: n * hop] if len(seg) >= hop else np.pad(seg, ((0, hop - len(seg)), (0, 0)))
    e = np.mean(np.square(seg.reshape(n, hop, -1)), axis=1)
    return np.asarray(10.0 * np.log10(np.maximum(e, 1e-20)))


def diarize_channels(
    frames: np.ndarray,
    segments: Sequence[Segment],
    config: SpeakersConfig | None = None,
    *,
    sr: int = 16_000,
) -> SpeakersResult:
    """Label each speech segment with the channel that dominates it (``ch0``, ``ch1``, …).

    Parameters
    ----------
    frames : np.ndarray, shape (n, channels)
        The un-mixed channels (:func:`features.audio.load.load_channels`).
    segments : sequence of Segment
        Speech segments found on the mix-down.
    config : SpeakersConfig, optional
        Uses ``min_turn_s`` and ``channel_dominance_db``.
    sr : int
        Sample rate of ``frames`` in Hz.

    Raises
    ------
    ParameterError
        Fewer than 2 or more than :data:`MAX_CHANNELS` channels, or fewer than 2 live ones.
    """
    cfg = config or SpeakersConfig(mode="channels")
    x = np.asarray(frames)
    if x.ndim != 2:
        raise ParameterError(
            f"speakers.mode = 'channels' needs the file's channels, shape (n, channels); got "
            f"shape {x.shape} (a mono file has one channel: use speakers.mode = 'auto')")
    n_ch = x.shape[1]
    if n_ch < 2:
        raise ParameterError(
            "speakers.mode = 'channels' needs a multi-channel file (one speaker per channel); "
            "this one has 1 channel: use speakers.mode = 'auto' to find the speakers by voice")
    if n_ch > MAX_CHANNELS:
        raise ParameterError(
            f"speakers.mode = 'channels' takes 2 to {MAX_CHANNELS} channels (one speaker "
            f"each); this file has {n_ch}: use speakers.mode = 'auto'")
    if sr <= 0:
        raise ParameterError(f"sample rate must be positive; got {sr} Hz")
    live = [c for c in range(n_ch) if np.any(x[:, c] != 0)]
    dead = [c for c in range(n_ch) if c not in live]
    warnings = [f"channels {dead} are digital silence and were left out"] if dead else []
    if len(live) < 2:
        raise ParameterError(
            f"speakers.mode = 'channels' needs at least 2 channels with sound; only "
            f"{live or 'none'} of {n_ch} have any (use speakers.mode = 'auto')")
    hop = max(1, int(round(_FRAME_S * sr)))
    segs = sorted(segments)
    per_seg: list[tuple[Segment, np.ndarray]] = []
    for seg in segs:
        i0 = int(round(seg.start_s * sr))
        i1 = max(i0 + 1, min(len(x), int(round(seg.end_s * sr))))
        per_seg.append((seg, _frame_db(x[:, live], sr, i0, i1, hop)))
    loudest = max((float(db.max()) for _, db in per_seg), default=0.0)

    turns: list[SpeakerTurn] = []
    for seg, db in per_seg:
        lab = np.argmax(db, axis=1)
        srt = np.sort(db, axis=1)
        quiet = srt[:, -1] < loudest - _QUIET_DB
        ov = (~quiet) & (srt[:, -1] - srt[:, -2] < cfg.channel_dominance_db)
        if quiet.all():
            lab[:] = int(np.argmax(db.mean(axis=0)))
        else:  # pauses take the nearest voiced frame's channel
            voiced = np.flatnonzero(~quiet)
            nearest = voiced[np.abs(np.arange(len(lab))[:, None] - voiced[None, :]).argmin(axis=1)]
            lab = lab[nearest]
        lab = _absorb_short(lab, max(1, int(round(cfg.min_turn_s / _FRAME_S))))
        ov = _absorb_short(ov.astype(np.int64), max(1, int(round(0.3 / _FRAME_S)))).astype(bool)
        n = len(lab)
        edges = np.linspace(seg.start_s, seg.end_s, n + 1)
        start = 0
        for i in range(1, n + 1):
            if i == n or lab[i] != lab[start] or ov[i] != ov[start]:
                turns.append(SpeakerTurn(start_s=float(edges[start]), end_s=float(edges[i]),
                                         speaker=f"ch{live[int(lab[start])]}",
                                         overlap=bool(ov[start])))
                start = i
    names = sorted({t.speaker for t in turns}, key=lambda s: int(s[2:]))
    speakers = [SpeakerInfo(label=s, speech_s=float(sum(t.duration_s for t in turns
                                                        if t.speaker == s and not t.overlap)))
                for s in names]
    return SpeakersResult(
        mode="channels", backend="channels", num_speakers=len(speakers), count_estimated=False,
        turns=turns, speakers=speakers, warnings=warnings,
        policy=(f"one speaker per channel ({len(live)} live of {n_ch}): each 100 ms of speech "
                f"belongs to the loudest channel; turns shorter than {cfg.min_turn_s:g} s join "
                f"a neighbour; a second channel within {cfg.channel_dominance_db:g} dB marks "
                "overlap"))


def _absorb_short(lab: np.ndarray, min_frames: int) -> np.ndarray:
    """Runs shorter than ``min_frames`` take the label of their longer neighbour."""
    lab = lab.copy()
    while True:
        change = np.flatnonzero(np.diff(lab)) + 1
        bounds = np.concatenate([[0], change, [len(lab)]])
        runs = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
        if len(runs) <= 1:
            return lab
        short = [(b - a, i) for i, (a, b) in enumerate(runs) if b - a < min_frames]
        if not short:
            return lab
        _, i = min(short)
        a, b = runs[i]
        left = runs[i - 1] if i > 0 else None
        right = runs[i + 1] if i + 1 < len(runs) else None
        pick = max((r for r in (left, right) if r is not None), key=lambda r: r[1] - r[0])
        lab[a:b] = lab[pick[0]]
