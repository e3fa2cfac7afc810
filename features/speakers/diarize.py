"""Speaker diarization of one recording: who speaks when.

``auto`` (backend ``resemblyzer``): GE2E embeddings of ``window_s`` windows every ``hop_s``
over each VAD speech segment → spectral clustering with an eigengap count and a voiceprint
merge threshold (:mod:`~features.speakers.cluster`) → temporal smoothing (a majority filter
over the window labels, then turns shorter than ``min_turn_s`` inside a segment join their
more similar neighbour) → each VAD segment is split where the speaker changes, so no turn
straddles two voices. A change is placed midway between the centres of the two windows that
disagree, so its time is known to about ``hop_s / 2``.

``off`` keeps one speaker ``S1``; ``channels`` is in :mod:`~features.speakers.channels`;
the ``pyannote`` backend in :mod:`~features.speakers.pyannote_backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.errors import ParameterError
from features.segments.vad import Segment
from features.speakers.cluster import centroids, cluster_embeddings
from features.speakers.config import SpeakersConfig
from features.speakers.encoder import FRAME_HOP_S, SR, SpeakerEncoder, mel_frames
from features.speakers.result import SpeakerInfo, SpeakersResult, SpeakerTurn

__all__ = ["diarize", "single_speaker", "Window", "speech_windows"]

#: below this much speech, speakers are not told apart (one speaker, with a warning)
MIN_SPEECH_FOR_CLUSTERING_S = 3.0


@dataclass(frozen=True)
class Window:
    """One embedding window: frames ``[f0, f1)`` of segment ``seg``; it labels ``[t0_s, t1_s)``."""

    seg: int
    f0: int
    f1: int
    t0_s: float
    t1_s: float


def speech_windows(segments: Sequence[Segment], window_s: float, hop_s: float) -> list[Window]:
    """Embedding windows over each segment and the stretch of time each one labels.

    A segment shorter than ``window_s`` is one window; otherwise windows start every
    ``hop_s`` and the last one ends at the segment's end. Window ``i`` labels the time from
    the midpoint of its centre and its predecessor's to the midpoint with its successor's.
    """
    win = max(1, int(round(window_s / FRAME_HOP_S)))
    hop = max(1, int(round(hop_s / FRAME_HOP_S)))
    out: list[Window] = []
    for k, seg in enumerate(segments):
        f0 = int(round(seg.start_s / FRAME_HOP_S))
        f1 = max(f0 + 1, int(round(seg.end_s / FRAME_HOP_S)))
        if f1 - f0 <= win:
            out.append(Window(k, f0, f1, seg.start_s, seg.end_s))
            continue
        starts = list(range(f0, f1 - win + 1, hop))
        if starts[-1] + win < f1:
            starts.append(f1 - win)
        centres = [(s + win / 2.0) * FRAME_HOP_S for s in starts]
        for i, s in enumerate(starts):
            t0 = seg.start_s if i == 0 else (centres[i - 1] + centres[i]) / 2.0
            t1 = seg.end_s if i == len(starts) - 1 else (centres[i] + centres[i + 1]) / 2.0
            out.append(Window(k, s, s + win, t0, t1))
    return out


def _embed(encoder: SpeakerEncoder, mel: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Embeddings of the windows, batched by length."""
    out = np.zeros((len(windows), 256), dtype=np.float32)
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_len.setdefault(w.f1 - w.f0, []).append(i)
    for n_frames, idx in by_len.items():
        starts = np.array([windows[i].f0 for i in idx])
        out[idx] = encoder.embed_windows(mel, starts, n_frames)
    return out


def _majority_filter(labels: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(labels) < 3:
        return labels
    half = width // 2
    out = labels.copy()
    for i in range(len(labels)):
        lo, hi = max(0, i - half), min(len(labels), i + half + 1)
        counts = np.bincount(labels[lo:hi])
        best = int(np.argmax(counts))
        if counts[best] > counts[labels[i]]:
            out[i] = best
    return out


def _absorb_short_runs(labels: np.ndarray, windows: Sequence[Window], emb: np.ndarray,
                       cents: np.ndarray, min_turn_s: float) -> np.ndarray:
    """Runs shorter than ``min_turn_s`` inside one segment take a neighbour's label."""
    labels = labels.copy()
    changed = True
    while changed:
        changed = False
        runs: list[tuple[int, int]] = []
        i = 0
        while i < len(labels):
            j = i
            while j + 1 < len(labels) and labels[j + 1] == labels[i] and \
                    windows[j + 1].seg == windows[i].seg:
                j += 1
            runs.append((i, j + 1))
            i = j + 1
        for a, b in sorted(runs, key=lambda r: windows[r[1] - 1].t1_s - windows[r[0]].t0_s):
            dur = windows[b - 1].t1_s - windows[a].t0_s
            if dur >= min_turn_s:
                break
            seg = windows[a].seg
            options = [labels[a - 1]] if a > 0 and windows[a - 1].seg == seg else []
            if b < len(labels) and windows[b].seg == seg:
                options.append(labels[b])
            if not options:
                continue  # the whole segment: a short turn of its own is allowed
            mean = emb[a:b].mean(axis=0)
            best = max(options, key=lambda lab: float(cents[lab] @ mean))
            labels[a:b] = best
            changed = True
            break
    return labels


def single_speaker(segments: Sequence[Segment], *, mode: str = "off", reason: str = "",
                   warnings: Sequence[str] = (), backend: str = "none") -> SpeakersResult:
    """Every segment to speaker ``S1`` (``mode = "off"``, or too little speech)."""
    turns = [SpeakerTurn(start_s=s.start_s, end_s=s.end_s, speaker="S1") for s in segments]
    speech = float(sum(s.duration_s for s in segments))
    speakers = [SpeakerInfo(label="S1", speech_s=speech)] if turns else []
    return SpeakersResult(
        mode=mode, backend=backend, num_speakers=len(speakers), count_estimated=False,  # type: ignore[arg-type]
        turns=turns, speakers=speakers,
        policy=reason or "diarization off: all speech is one speaker, S1",
        warnings=list(warnings))


def diarize(
    y: np.ndarray,
    segments: Sequence[Segment],
    config: SpeakersConfig | None = None,
    *,
    sr: int = SR,
    encoder: SpeakerEncoder | None = None,
    voiceprints: bool = False,
) -> SpeakersResult:
    """Label every speech segment with its speaker, splitting segments at speaker changes.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono float32 signal at 16 kHz (what :func:`features.audio.load.load_audio` gives).
    segments : sequence of Segment
        Speech segments (VAD), sorted and non-overlapping.
    config : SpeakersConfig, optional
        ``mode`` must be ``auto`` or ``off`` here (``channels`` needs the un-mixed channels:
        :func:`features.speakers.channels.diarize_channels`).
    sr : int
        Must be 16000.
    encoder : SpeakerEncoder, optional
        A loaded encoder to reuse (default: load one).
    voiceprints : bool
        Attach each speaker's voiceprint (unit-norm mean embedding, 256 values).

    Returns
    -------
    SpeakersResult

    Raises
    ------
    ParameterError
        Bad signal, rate or mode. ``ModelUnavailable`` when the encoder cannot be loaded.
    """
    cfg = config or SpeakersConfig()
    if sr != SR:
        raise ParameterError(f"diarization needs 16 kHz audio; got {sr} Hz")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"diarization needs a mono signal; got shape {y.shape} "
                             "(use speakers.mode = 'channels' for one speaker per channel)")
    segs = sorted(segments)
    if cfg.mode == "channels":
        raise ParameterError("speakers.mode = 'channels' needs the file's channels: use "
                             "features.speakers.channels.diarize_channels")
    if cfg.mode == "off":
        return single_speaker(segs)
    if cfg.backend == "pyannote":
        from features.speakers.pyannote_backend import diarize_pyannote

        return diarize_pyannote(y, segs, cfg)
    if not segs:
        return SpeakersResult(mode="auto", backend="resemblyzer", num_speakers=0,
                              count_estimated=cfg.num_speakers is None, turns=[], speakers=[],
                              policy="no speech was found, so there is no speaker to label",
                              warnings=["no speech found: no speaker labels"])
    speech_s = float(sum(s.duration_s for s in segs))
    if speech_s < MIN_SPEECH_FOR_CLUSTERING_S and (cfg.num_speakers or 0) <= 1:
        return single_speaker(
            segs, mode="auto", backend="resemblyzer",
            reason=f"{speech_s:.1f} s of speech is too little to tell voices apart; "
                   "all of it is one speaker, S1",
            warnings=[f"only {speech_s:.1f} s of speech (< {MIN_SPEECH_FOR_CLUSTERING_S:.0f} s):"
                      " one speaker assumed"])

    enc = (encoder or SpeakerEncoder()).load()
    windows = speech_windows(segs, cfg.window_s, cfg.hop_s)
    # one level for the whole file (the encoder was trained on -30 dBFS speech): the level
    # of the speech, not of the silences, decides the gain
    speech_idx = np.concatenate([np.arange(int(s.start_s * SR), min(len(y), int(s.end_s * SR)))
                                 for s in segs])
    rms = float(np.sqrt(np.mean(np.square(y[speech_idx], dtype=np.float64)))) \
        if len(speech_idx) else 0.0
    gain = 10.0 ** ((-30.0 - 20.0 * np.log10(rms)) / 20.0) if rms > 0 else 1.0
    mel = mel_frames(y * np.float32(max(gain, 1.0)))
    emb = _embed(enc, mel, windows)
    weights = np.array([w.t1_s - w.t0_s for w in windows])
    live = np.linalg.norm(emb, axis=1) > 0
    labels = np.zeros(len(windows), dtype=np.int64)
    if live.any():
        labels[live] = cluster_embeddings(
            emb[live], num_speakers=cfg.num_speakers, max_speakers=cfg.max_speakers,
            merge_similarity=cfg.merge_similarity, weights_s=weights[live],
            min_speaker_s=cfg.min_speaker_s)
    k = int(labels.max()) + 1
    cents = centroids(emb.astype(np.float64), labels, k)
    width = 2 * int(round(cfg.min_turn_s / (2 * cfg.hop_s))) + 1
    smoothed = np.concatenate([
        _majority_filter(labels[[i for i, w in enumerate(windows) if w.seg == s]], width)
        for s in range(len(segs))]) if windows else labels
    smoothed = _absorb_short_runs(smoothed, windows, emb, cents, cfg.min_turn_s)

    overlap = np.zeros(len(windows), dtype=bool)
    if cfg.overlap_margin > 0 and k > 1:
        sims = emb @ cents.T
        top2 = np.sort(sims, axis=1)[:, -2:]
        overlap = (top2[:, 1] - top2[:, 0] < cfg.overlap_margin) & \
            (top2[:, 0] > cfg.merge_similarity - 0.1)

    # labels S1, S2, … in order of first appearance
    order: dict[int, str] = {}
    for lab in smoothed:
        order.setdefault(int(lab), f"S{len(order) + 1}")
    turns: list[SpeakerTurn] = []
    for i, w in enumerate(windows):
        spk, ov = order[int(smoothed[i])], bool(overlap[i])
        prev = turns[-1] if turns else None
        if prev is not None and i > 0 and windows[i - 1].seg == w.seg and \
                prev.speaker == spk and prev.overlap == ov:
            turns[-1] = SpeakerTurn(start_s=prev.start_s, end_s=w.t1_s, speaker=spk, overlap=ov)
        else:
            turns.append(SpeakerTurn(start_s=w.t0_s, end_s=w.t1_s, speaker=spk, overlap=ov))
    speakers = []
    for lab, name in sorted(order.items(), key=lambda kv: int(kv[1][1:])):
        mine = (smoothed == lab) & ~overlap
        vp = None
        if voiceprints:
            m = emb[mine].mean(axis=0) if mine.any() else cents[lab]
            vp = [float(v) for v in m / max(float(np.linalg.norm(m)), 1e-12)]
        speakers.append(SpeakerInfo(
            label=name, speech_s=float(sum(t.duration_s for t in turns
                                           if t.speaker == name and not t.overlap)),
            voiceprint=vp))
    how = (f"{cfg.num_speakers} speakers (fixed by speakers.num_speakers)"
           if cfg.num_speakers else f"{len(speakers)} speakers (estimated: eigengap, then "
           f"voiceprints more alike than {cfg.merge_similarity:.2f} merged)")
    return SpeakersResult(
        mode="auto", backend="resemblyzer", num_speakers=len(speakers),
        count_estimated=cfg.num_speakers is None, turns=turns, speakers=speakers,
        policy=f"GE2E embeddings of {cfg.window_s:g} s windows every {cfg.hop_s:g} s over the "
               f"speech, clustered into {how}; segments are split where the speaker changes",
        warnings=[])
