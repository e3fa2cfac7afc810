"""Live analysis: scores while the person is still talking.

:meth:`fusion.engine.analyzer.Analyzer.stream` returns a :class:`LiveSession`. Audio arrives in
chunks of any size (int16 or float, any rate — resampled to 16 kHz incrementally by soxr's
streaming resampler); a streaming Silero VAD (:class:`features.segments.vad.StreamingSegmenter`)
closes a segment at a pause or at ``segments.max_segment_s``; the segment then runs through
every enabled stream of the Analyzer (the same stream objects as a file analysis; the
transcript hears ``context_s`` of the audio before the segment as acoustic context, never its
text as a prompt) and through the same :class:`~fusion.scoring.fuser.Fuser`.

Work per segment is bounded: the streams see one segment (plus its context) and fusion sees the
speaker's last :data:`MAX_HISTORY` segments, never the whole session. A segment once returned
is final. Its scores use what was known then:

* the speaker profile (``fusion.speaker_profile``) for the profile's speaker — reference
  ``"profile"``;
* else the same speaker's earlier segments of this session and the segment itself — reference
  ``"session"``, ``warmup`` while fewer than the model's ``normalisation.min_segments``
  segments exist (the first segment rests on population values only, the second on the
  session median with the population SD as its scale, as in a short file);
* the population z-scores always contribute, as in a file analysis.

Each segment carries its speaker label (``speaker``) and the fuser's own account of its
reference (``scores.stress.reference``, as in a file analysis); :meth:`LiveSession.segment_info`
repeats them with ``warmup``, and the WebSocket endpoint sends them beside the segment.

Examples
--------
>>> from fusion.engine.analyzer import Analyzer
>>> live = Analyzer().load().stream(sample_rate=48_000)   # doctest: +SKIP
>>> for chunk in chunks:                                   # doctest: +SKIP
...     for seg in live.feed(chunk):
...         print(seg.start_s, seg.scores.stress.value)
>>> result = live.close()                                  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from features.audio.load import audio_from_signal
from features.errors import AudioTooLongError, InvalidSamplesError, ParameterError
from features.registry import stream_names
from features.segments.vad import ClosedSegment, Segment, SileroVAD, StreamingSegmenter
from fusion._version import package_version
from fusion.schema import (
    SegmentResult,
    SessionResult,
    SessionStatus,
    SourceInfo,
    StreamInfo,
    result_models,
)
from fusion.scoring.summary import session_summary
from fusion.scoring.vector import FUSION_STREAMS

if TYPE_CHECKING:
    from fusion.engine.analyzer import Analyzer
    from fusion.scoring.fuser import Fuser

__all__ = ["LiveSession", "LiveSegmentInfo", "MAX_HISTORY", "MIN_SAMPLE_RATE",
           "MAX_SAMPLE_RATE", "LIVE_SOURCE_PATH"]

log = logging.getLogger("vocalfusion.live")

#: earlier segments of one speaker that fusion sees (bounded work per segment)
MAX_HISTORY = 120
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
#: ``source.path`` of a live session (there is no file)
LIVE_SOURCE_PATH = "<live>"
_SR = 16_000
_SPEAKERS_MODES = ("off", "auto")
_MERGE_SIMILARITY = 0.80  # features.speakers.config.SpeakersConfig.merge_similarity default
_MAX_SPEAKERS = 6


@dataclass(frozen=True)
class LiveSegmentInfo:
    """What a live session knows about one emitted segment beyond its SegmentResult.

    Attributes
    ----------
    speaker : str
        Online speaker label (``S1``, ``S2``, …, or the session's ``speaker_id``).
    reference : {"profile", "session", "population"}
        What the speaker z-scores were measured against.
    warmup : bool
        True while the speaker has fewer than the minimum baseline segments (no session
        baseline yet: only population z-scores carry evidence).
    processing_s : float
        Wall time from the segment's close to its result (streams + fusion).
    """

    speaker: str
    reference: Literal["profile", "session", "population"]
    warmup: bool
    processing_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "reference": self.reference, "warmup": self.warmup,
                "processing_s": round(self.processing_s, 4)}


class _Speakers:
    """Online speaker labels from running voiceprints (GE2E, cosine similarity)."""

    def __init__(self, num_speakers: int | None, first_label: str | None) -> None:
        from features.speakers.encoder import SpeakerEncoder

        self.encoder = SpeakerEncoder().load()
        self.num_speakers = num_speakers
        self.first_label = first_label
        self.centroids: list[np.ndarray] = []
        self.labels: list[str] = []

    def assign(self, y: np.ndarray) -> str:
        from features.speakers.result import voiceprint_similarity

        vp = np.asarray(self.encoder.embed_utterance(y), dtype=np.float64)
        if not np.all(np.isfinite(vp)) or float(np.linalg.norm(vp)) == 0.0:
            return self.labels[0] if self.labels else self._new(vp)
        sims = [voiceprint_similarity(vp, c) for c in self.centroids]
        cap = self.num_speakers or _MAX_SPEAKERS
        if sims and (max(sims) >= _MERGE_SIMILARITY or len(self.centroids) >= cap):
            k = int(np.argmax(sims))
            c = self.centroids[k] + vp
            self.centroids[k] = c / np.linalg.norm(c)
            return self.labels[k]
        return self._new(vp)

    def _new(self, vp: np.ndarray) -> str:
        n = len(self.labels)
        label = self.first_label if n == 0 and self.first_label else f"S{n + 1}"
        norm = float(np.linalg.norm(vp))
        self.centroids.append(vp / norm if norm > 0 else vp)
        self.labels.append(label)
        return label


class LiveSession:
    """One live stream through an :class:`~fusion.engine.analyzer.Analyzer`.

    Not thread-safe: one producer feeds a session (many sessions may share one Analyzer).

    Parameters
    ----------
    analyzer : Analyzer
        A loaded analyzer (its streams, VAD and fuser are shared, never copied).
    sample_rate : int
        Rate of the fed samples, 8000–48000 Hz.
    speaker_id : str, optional
        The speaker's id (``SessionResult.speaker_id``; the label of the profile's speaker).
    num_speakers : int, optional
        Fixed number of speakers for ``speakers_mode = "auto"``.
    speakers_mode : {"off", "auto"}
        ``off``: one speaker; ``auto``: online labels from running voiceprints.
    context_s : float
        Audio before each segment that the streams hear as acoustic context.
    max_duration_s : float, optional
        Longest session; default ``audio.max_duration_s`` of the config.
    """

    def __init__(self, analyzer: Analyzer, *, sample_rate: int, speaker_id: str | None = None,
                 num_speakers: int | None = None, speakers_mode: str = "off",
                 context_s: float = 1.5, max_duration_s: float | None = None) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
                or not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
            raise ParameterError(f"sample_rate must be an integer {MIN_SAMPLE_RATE}–"
                                 f"{MAX_SAMPLE_RATE} Hz; got {sample_rate!r}")
        if speakers_mode not in _SPEAKERS_MODES:
            raise ParameterError(f"speakers_mode must be one of {', '.join(_SPEAKERS_MODES)} "
                                 f"for a live (mono) stream; got {speakers_mode!r}")
        if num_speakers is not None and not 1 <= int(num_speakers) <= _MAX_SPEAKERS * 4:
            raise ParameterError(f"num_speakers must be 1–{_MAX_SPEAKERS * 4}; "
                                 f"got {num_speakers!r}")
        analyzer.load()
        cfg = analyzer.config_
        self.analyzer = analyzer
        self.config = cfg
        self.sample_rate = int(sample_rate)
        self.speaker_id = speaker_id
        self.speakers_mode = speakers_mode
        self.context_s = float(context_s)
        self.max_duration_s = float(max_duration_s if max_duration_s is not None
                                    else cfg.audio.max_duration_s)
        vad = analyzer._vad if analyzer._vad is not None else SileroVAD(num_threads=1).load()
        self._segmenter = StreamingSegmenter(cfg.segments, vad=vad, context_s=self.context_s)
        self._resampler: Any = None
        if self.sample_rate != _SR:
            import soxr

            self._resampler = soxr.ResampleStream(self.sample_rate, _SR, 1, dtype="float32",
                                                  quality="HQ")
        self._sha = hashlib.sha256()
        self._n_in = 0
        self._segment_model, self._session_model = result_models()
        self._results: list[SegmentResult] = []
        self._infos: list[LiveSegmentInfo] = []
        self._history: dict[str, deque[SegmentResult]] = {}
        self._stream_infos: dict[str, StreamInfo] = {}
        self._warnings: list[str] = []
        self._closed = False
        self._lock = threading.Lock()
        self._fuser: Fuser | None = analyzer._fuser
        self._fuser_no_profile: Fuser | None = None
        if self._fuser is not None:
            self._fuser_no_profile = copy.copy(self._fuser)
            self._fuser_no_profile.profile_ = None
        self._speakers = _Speakers(num_speakers, speaker_id) if speakers_mode == "auto" else None

    # ------------------------------------------------------------------ public
    @property
    def received_s(self) -> float:
        """Seconds of audio received so far."""
        return self._n_in / float(self.sample_rate)

    @property
    def buffered_samples(self) -> int:
        """16-kHz samples held by the segmenter now (bounded)."""
        return self._segmenter.buffered_samples

    @property
    def results(self) -> list[SegmentResult]:
        """The segments emitted so far (final)."""
        return list(self._results)

    def segment_info(self, index: int) -> LiveSegmentInfo:
        """Speaker label, reference and warm-up flag of emitted segment ``index``."""
        return self._infos[index]

    def feed(self, samples: np.ndarray | bytes) -> list[SegmentResult]:
        """Add audio; return the segments that closed (each final, in order).

        Parameters
        ----------
        samples : np.ndarray or bytes
            Mono samples at ``sample_rate``: int16 (bytes are little-endian int16) or float in
            [-1, 1]. Any length, empty included.

        Raises
        ------
        ParameterError
            Not mono, an odd number of bytes, or the session is closed.
        InvalidSamplesError
            NaN or infinite samples.
        AudioTooLongError
            The session would pass ``max_duration_s``.
        """
        if self._closed:
            raise ParameterError("this live session is closed; start a new one")
        pcm16, y = self._convert(samples)
        if len(pcm16) == 0:
            return []
        if (self._n_in + len(pcm16)) / self.sample_rate > self.max_duration_s:
            raise AudioTooLongError(
                LIVE_SOURCE_PATH, f"more than {self.max_duration_s:.0f} s of audio "
                "(audio.max_duration_s)")
        self._sha.update(pcm16.astype("<i2", copy=False).tobytes())
        self._n_in += len(pcm16)
        y16 = self._resampler.resample_chunk(y) if self._resampler is not None else y
        return self._process(self._segmenter.push(y16))

    def close(self) -> SessionResult:
        """End the stream: close the open segment and return the session's result.

        The result has the schema of a file analysis: ``source.path`` is ``"<live>"``,
        ``source.format`` is ``"pcm_s16le"``, ``source.sha256`` the digest of the received PCM
        (int16 little-endian; float input is converted to int16 first).
        """
        if self._closed:
            raise ParameterError("this live session is already closed")
        tail = np.zeros(0, dtype=np.float32)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        closed = self._segmenter.push(tail) + self._segmenter.flush()
        self._process(closed)
        self._closed = True
        return self._session_result()

    # ------------------------------------------------------------------ internals
    def _convert(self, samples: np.ndarray | bytes) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(samples, (bytes, bytearray, memoryview)):
            raw = bytes(samples)
            if len(raw) % 2:
                raise ParameterError(f"int16 PCM needs an even number of bytes; got {len(raw)}")
            samples = np.frombuffer(raw, dtype="<i2")
        arr = np.asarray(samples)
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            raise ParameterError(f"a live stream is mono: samples must have shape (n,); "
                                 f"got {arr.shape}")
        if arr.dtype.kind in "iu":
            pcm16 = arr.astype(np.int16, copy=False) if arr.dtype == np.int16 else \
                np.clip(arr, -32768, 32767).astype(np.int16)
            return pcm16, (pcm16.astype(np.float32) / 32768.0)
        if arr.dtype.kind != "f":
            raise ParameterError(f"samples must be int16 or float; got dtype {arr.dtype}")
        y = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(y)):
            raise InvalidSamplesError(LIVE_SOURCE_PATH, "samples contain NaN or infinite values")
        pcm16 = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
        return pcm16, y

    def _process(self, closed: list[ClosedSegment]) -> list[SegmentResult]:
        return [self._analyse(c) for c in closed]

    def _analyse(self, closed: ClosedSegment) -> SegmentResult:
        t0 = time.perf_counter()
        az = self.analyzer
        seg = closed.segment
        ctx_s = len(closed.context) / _SR
        y = np.concatenate([closed.context, closed.audio])
        audio = audio_from_signal(y, _SR, name=LIVE_SOURCE_PATH)
        local = Segment(round(ctx_s, 6), round(ctx_s + len(closed.audio) / _SR, 6))
        outputs = az._run_streams(audio, [local])
        row: dict[str, Any] = {}
        for name, out in outputs.items():
            self._stream_infos[name] = StreamInfo(status=out.status, reason=out.reason,
                                                  provenance=out.provenance)
            self._warnings.extend(f"{name}: {w}" for w in out.warnings
                                  if f"{name}: {w}" not in self._warnings[-50:])
            r = out.rows[0]
            if name in self._segment_model.model_fields and r is not None:
                row[name] = _shift(r.model_dump(mode="json") if hasattr(r, "model_dump") else r,
                                   seg.start_s - ctx_s)
        speaker = self._speakers.assign(closed.audio) if self._speakers is not None \
            else (self.speaker_id or "S1")
        result = self._segment_model.model_validate(
            {"index": len(self._results), "start_s": seg.start_s, "end_s": seg.end_s,
             "speaker": speaker, **row})
        result, reference, warmup = self._score(result, speaker)
        info = LiveSegmentInfo(speaker=speaker, reference=reference, warmup=warmup,
                               processing_s=time.perf_counter() - t0)
        self._results.append(result)
        self._infos.append(info)
        return result

    def _score(self, seg: SegmentResult, speaker: str
               ) -> tuple[SegmentResult, Literal["profile", "session", "population"], bool]:
        if self._fuser is None or self._fuser_no_profile is None:
            return seg, "population", False
        hist = self._history.setdefault(speaker, deque(maxlen=MAX_HISTORY))
        profile_speaker = self._speakers is None or speaker == (self.speaker_id or "S1") \
            or len(self._history) == 1
        fuser = self._fuser if profile_speaker else self._fuser_no_profile
        window = [*hist, seg]
        scored, _ = fuser.fuse(window, self._infos_for_fusion())
        out = scored[-1].model_copy(update={"index": seg.index, "start_s": seg.start_s,
                                            "end_s": seg.end_s})
        hist.append(seg)
        spec = fuser.spec_
        assert spec is not None
        warm = fuser.profile_ is None and len(window) < spec.normalisation.min_segments
        if warm and out.scores is not None:
            out = out.model_copy(update={"scores": out.scores.model_copy(update={
                "stress": out.scores.stress.model_copy(update={"warmup": True}),
                "depression": out.scores.depression.model_copy(update={"warmup": True})})})
        stated = out.scores.stress.reference if out.scores is not None else None
        if stated is not None:  # the fuser's own account (scores.stress.reference)
            return out, stated, warm
        if fuser.profile_ is not None:
            return out, "profile", False
        return out, ("population" if warm else "session"), warm

    def _infos_for_fusion(self) -> dict[str, StreamInfo]:
        infos = {**self.analyzer._unavailable, **self._stream_infos}
        return {k: infos[k] for k in stream_names() if k in infos}

    def _session_result(self) -> SessionResult:
        cfg = self.config
        segs = list(self._results)
        speech_s = float(sum(s.duration_s for s in segs))
        insufficient = speech_s < cfg.audio.min_speech_s
        warnings = list(self._warnings)
        if insufficient:
            warnings.append(
                f"insufficient speech: {speech_s:.1f} s detected, at least "
                f"{cfg.audio.min_speech_s:.1f} s needed for scores (audio.min_speech_s)")
        infos = self._infos_for_fusion()
        streams = list(infos) + [s for s in FUSION_STREAMS if s not in infos]
        fuser = self._fuser
        if fuser is not None and fuser.spec_ is not None:
            summary = session_summary(segs, threshold=cfg.fusion.threshold, streams=streams,
                                      min_words=fuser.spec_.normalisation.min_words,
                                      scored=not insufficient and bool(segs))
        else:
            summary = session_summary(segs, threshold=cfg.fusion.threshold,
                                      streams=list(stream_names()), scored=False)
        return self._session_model(
            package_version=package_version(),
            analysed_at=datetime.now(UTC),
            status=SessionStatus.INSUFFICIENT_SPEECH if insufficient else SessionStatus.OK,
            source=SourceInfo(path=LIVE_SOURCE_PATH, sha256=self._sha.hexdigest(),
                              duration_s=round(self.received_s, 6),
                              original_sr=self.sample_rate, channels=1, format="pcm_s16le",
                              decoder="live"),
            segments=segs,
            streams=infos,
            fusion=fuser.info() if fuser is not None else None,
            summary=summary,
            speaker_id=self.speaker_id,
            config=cfg.to_dict(),
            config_hash=cfg.config_hash(),
            warnings=warnings,
        )


def _shift(obj: Any, offset_s: float) -> Any:
    """``obj`` (a stream row as JSON) with every ``start_s``/``end_s`` moved by ``offset_s``
    (segment-local times → stream times)."""
    if isinstance(obj, dict):
        return {k: (round(v + offset_s, 6) if k in ("start_s", "end_s")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)
                    else _shift(v, offset_s)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shift(v, offset_s) for v in obj]
    return obj
