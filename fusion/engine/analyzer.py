"""The Analyzer: load models once, segment, run the streams, align, fuse.

Examples
--------
>>> from fusion.engine.analyzer import Analyzer
>>> analyzer = Analyzer().load()                       # doctest: +SKIP
>>> result = analyzer.process_file("examples/jfk.flac")  # doctest: +SKIP
>>> result.to_dataframe().head()                        # doctest: +SKIP

An Analyzer keeps no per-file state: :meth:`Analyzer.run_file` returns an
:class:`AnalysisRun` (the result, the embeddings and the stage timings of that call), so one
Analyzer serves many threads (the HTTP server does).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.audio.load import (
    Audio,
    audio_from_signal,
    channel_axis,
    load_audio,
    load_channels,
)
from features.errors import ModelUnavailable, ParameterError
from features.registry import stream_names, stream_spec, stream_specs
from features.segments.vad import Segment, SegmentsConfig, SileroVAD, segment_audio
from features.speakers.config import SpeakersConfig
from features.stream import Provenance, Stream, StreamOutput, StreamStatus
from fusion._version import package_version
from fusion.config import Config, config_model, load_config
from fusion.engine.speakers import (
    FOCUS_KEY,
    find_speakers,
    focus_label,
    identify,
    load_encoder,
    speaker_summaries,
    split_at_turns,
)
from fusion.schema import (
    DiarizationInfo,
    FusionInfo,
    SegmentResult,
    SessionResult,
    SessionStatus,
    SessionSummary,
    SourceInfo,
    StreamInfo,
    result_models,
)
from fusion.scoring.summary import session_summary
from fusion.scoring.vector import FUSION_STREAMS

__all__ = ["Analyzer", "AnalysisRun", "analyze", "SPEAKERS_CONTEXT"]

log = logging.getLogger("vocalfusion")

#: context key under which streams find each segment's speaker (rows: labels or ids)
SPEAKERS_CONTEXT = "speakers"


@dataclass(frozen=True)
class AnalysisRun:
    """One analysis call's outputs: what belongs to this file and to no other call.

    Attributes
    ----------
    result : SessionResult
        The JSON-ready result.
    embeddings : dict of str to ndarray
        Per-segment embeddings by stream (e.g. ``"emotion"``: shape (n_segments, dim), NaN
        rows where a segment has none); only streams that made embeddings appear.
    timings : dict of str to float
        Wall-clock seconds per stage: ``decode`` (files only), ``segments``, ``streams``,
        ``stream:<name>``, ``speakers``, ``fusion``, ``total``.
    """

    result: SessionResult
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _restore_torch_threads(n: int) -> None:
    """Set torch's intra-op threads if torch is already imported (never import it here)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


class Analyzer:
    """Runs the whole analysis. Construct with a config, call :meth:`load` once, then
    :meth:`process_file` / :meth:`process_signal` as often as you like.

    Parameters
    ----------
    config : Config, optional
        Engine configuration; default ``configs/default.toml``.
    streams : sequence of str, optional
        Restrict to these streams (e.g. ``["prosody"]``); default: every enabled stream.
    """

    def __init__(self, config: Config | None = None, *,
                 streams: Sequence[str] | None = None) -> None:
        self.config = config
        self.streams = tuple(streams) if streams is not None else None
        self._loaded = False
        self._streams: dict[str, Stream] = {}
        self._unavailable: dict[str, StreamInfo] = {}
        self._vad: SileroVAD | None = None
        self._vad_lock = threading.Lock()
        self._fuser: Any = None
        self._encoder: Any = None
        self._encoder_missing: str | None = None

    # ------------------------------------------------------------------ loading
    @property
    def config_(self) -> Config:
        if self.config is None:
            self.config = load_config()
        elif not isinstance(self.config, config_model()):
            # a Config made before a stream was registered: add that stream's default section
            self.config = config_model().model_validate(self.config.to_dict())
        return self.config

    def load(self) -> Analyzer:
        """Load every enabled stream's models once; unavailable ones are recorded as skipped."""
        if self._loaded:
            return self
        cfg = self.config_
        if self.streams is not None:
            unknown = [s for s in self.streams if s not in stream_names()]
            if unknown:
                raise ParameterError(f"unknown stream(s) {unknown}; valid: "
                                     f"{', '.join(stream_names())}")
        if cfg.runtime.offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        n_threads = cfg.runtime.num_threads
        for spec in stream_specs():
            name = spec.name
            section = cfg.stream_section(name)
            if self.streams is not None and name not in self.streams:
                continue
            if not getattr(section, "enabled", False):
                self._unavailable[name] = StreamInfo(
                    status=StreamStatus.SKIPPED, reason=f"disabled in config ({name}.enabled)")
                continue
            stream = spec.create(section, num_threads=n_threads)
            t0 = time.perf_counter()
            try:
                stream.load()
            except ModelUnavailable as exc:
                log.info("%s stream skipped: %s", name, exc)
                self._unavailable[name] = StreamInfo(
                    status=StreamStatus.SKIPPED, reason=str(exc),
                    provenance=_safe_provenance(stream))
                continue
            except Exception as exc:  # a broken model must not stop the other streams
                log.exception("%s stream failed to load", name)
                self._unavailable[name] = StreamInfo(
                    status=StreamStatus.FAILED,
                    reason=f"could not load: {type(exc).__name__}: {exc}",
                    provenance=_safe_provenance(stream))
                continue
            log.info("%s stream loaded in %.1f s", name, time.perf_counter() - t0)
            self._streams[name] = stream
        # a stream whose requirement is unavailable is skipped with that reason
        for name, stream in list(self._streams.items()):
            missing = [r for r in stream_spec(name).requires if r not in self._streams]
            if missing:
                del self._streams[name]
                self._unavailable[name] = StreamInfo(
                    status=StreamStatus.SKIPPED,
                    reason=f"needs the {', '.join(missing)} stream, which is not available",
                    provenance=_safe_provenance(stream))
        if cfg.segments.policy == "vad":
            self._vad = SileroVAD(num_threads=1).load()
        if cfg.fusion.enabled:
            from fusion.scoring.fuser import Fuser

            self._fuser = Fuser(cfg.fusion).load()
        profile = self._fuser.profile_ if self._fuser is not None else None
        self._encoder, self._encoder_missing = load_encoder(
            cfg.speakers, n_threads, need_voiceprints=cfg.speakers.voiceprints or (
                profile is not None and profile.voiceprint is not None))
        if self._encoder_missing:
            log.warning("%s", self._encoder_missing)
        _restore_torch_threads(n_threads)
        self._loaded = True
        return self

    # ------------------------------------------------------------------ processing
    def process_file(self, path: str | os.PathLike[str], *,
                     contours: bool = False,
                     speaker_ids: Mapping[str, str] | None = None) -> SessionResult:
        """Analyse one audio file (any common format). Raises an ``AudioError`` for bad input.

        ``contours=True`` keeps the prosody stream's frame contours in the result
        (:meth:`~fusion.schema.SessionResult.contours`). ``speaker_ids``: speaker label → id
        (``{"S2": "P01"}``); the key ``""`` names the focus speaker (``--speaker-id P01``).
        """
        return self.run_file(path, contours=contours, speaker_ids=speaker_ids).result

    def run_file(self, path: str | os.PathLike[str], *, contours: bool = False,
                 speaker_ids: Mapping[str, str] | None = None) -> AnalysisRun:
        """:meth:`process_file`, returning the result with this call's embeddings and timings."""
        t0 = time.perf_counter()
        audio = self.read_audio(path)
        channels = None
        if self.config_.speakers.mode == "channels" and audio.source.channels > 1:
            cfg = self.config_
            channels = load_channels(path, max_duration_s=cfg.audio.max_duration_s,
                                     timeout_s=cfg.audio.decode_timeout_s)
        decode_s = time.perf_counter() - t0
        run = self.run_audio(audio, contours=contours, channels=channels,
                             speaker_ids=speaker_ids)
        timings = {"decode": decode_s, **run.timings,
                   "total": run.timings.get("total", 0.0) + decode_s}
        return AnalysisRun(result=run.result, embeddings=run.embeddings, timings=timings)

    def read_audio(self, path: str | os.PathLike[str], *, isolate: bool = False) -> Audio:
        """Decode ``path`` under this config's limits, exactly as :meth:`process_file` does."""
        cfg = self.config_
        return load_audio(path, max_duration_s=cfg.audio.max_duration_s,
                          timeout_s=cfg.audio.decode_timeout_s, isolate=isolate)

    def process_signal(self, y: np.ndarray, sr: int, *, name: str = "<signal>",
                       contours: bool = False,
                       speaker_ids: Mapping[str, str] | None = None) -> SessionResult:
        """Analyse an in-memory signal of shape (n,) or (n, channels) at ``sr`` Hz."""
        return self.run_signal(y, sr, name=name, contours=contours,
                               speaker_ids=speaker_ids).result

    def run_signal(self, y: np.ndarray, sr: int, *, name: str = "<signal>",
                   contours: bool = False,
                   speaker_ids: Mapping[str, str] | None = None) -> AnalysisRun:
        """:meth:`process_signal`, returning the result with embeddings and timings."""
        max_s = self.config_.audio.max_duration_s
        audio = audio_from_signal(y, sr, name=name, max_duration_s=max_s)
        channels = None
        arr = np.asarray(y)
        if self.config_.speakers.mode == "channels" and arr.ndim == 2:
            if channel_axis(arr.shape, name=name) == 0:
                arr = arr.T  # (channels, n) as librosa gives it
            if arr.shape[1] > 1:
                cols = [audio_from_signal(np.ascontiguousarray(arr[:, c]), sr, name=name,
                                          max_duration_s=max_s).y for c in range(arr.shape[1])]
                n = min(len(c) for c in cols)
                channels = np.stack([c[:n] for c in cols], axis=1)
        return self.run_audio(audio, contours=contours, channels=channels,
                              speaker_ids=speaker_ids)

    def stream_infos(self) -> dict[str, StreamInfo]:
        """Status and provenance of every configured stream after :meth:`load`."""
        self.load()
        infos = dict(self._unavailable)
        for name, stream in self._streams.items():
            infos[name] = StreamInfo(status=StreamStatus.OK, provenance=_safe_provenance(stream))
        return {k: infos[k] for k in stream_names() if k in infos}

    def fusion_info(self) -> FusionInfo | None:
        """The loaded fusion model's name and calibration status (``None``: fusion disabled)."""
        self.load()
        return self._fuser.info() if self._fuser is not None else None

    def process_audio(self, audio: Audio, *,
                      segments: SegmentsConfig | None = None,
                      speakers: SpeakersConfig | None = None,
                      channels: np.ndarray | None = None,
                      speaker_ids: Mapping[str, str] | None = None) -> SessionResult:
        """Analyse an already-loaded :class:`~features.audio.load.Audio`.

        ``segments`` and ``speakers`` replace the configured segmentation and speaker settings
        for this call only (the models are shared); the result's ``config`` and
        ``config_hash`` record what was used.
        """
        return self.run_audio(audio, segments=segments, speakers=speakers, channels=channels,
                              speaker_ids=speaker_ids).result

    def run_audio(self, audio: Audio, *, segments: SegmentsConfig | None = None,
                  contours: bool = False,
                  speakers: SpeakersConfig | None = None,
                  channels: np.ndarray | None = None,
                  speaker_ids: Mapping[str, str] | None = None) -> AnalysisRun:
        """:meth:`process_audio`, returning the result with this call's embeddings and
        timings (nothing is kept on the Analyzer, so concurrent calls do not mix).

        ``contours=True`` also measures the prosody stream's frame contours (kept in the
        result, not in its JSON); :class:`ParameterError` when the prosody stream is off.
        ``channels``: the un-mixed 16 kHz channels, shape (n, channels), for
        ``speakers.mode = "channels"``; ``speaker_ids``: see :meth:`process_file`.
        """
        self.load()
        if contours and "prosody" not in self._streams:
            raise ParameterError("contours=True needs the prosody stream (prosody.enabled = "
                                 "true, and 'prosody' among the Analyzer's streams)")
        cfg = self.config_
        if segments is not None and segments != cfg.segments:
            cfg = cfg.model_copy(update={"segments": segments})
        if speakers is not None and speakers != cfg.speakers:
            cfg = cfg.model_copy(update={"speakers": speakers})
        t_start = time.perf_counter()
        segments_ = self.segment(audio, cfg.segments)
        t_segments = time.perf_counter()
        speech_s = float(sum(s.duration_s for s in segments_))
        insufficient = speech_s < cfg.audio.min_speech_s
        # speakers: label every segment, split at speaker changes, name the known speakers
        sc = cfg.speakers
        profile = self._fuser.profile_ if self._fuser is not None else None
        profile_vp = profile.voiceprint if profile is not None else None
        want_vp = sc.voiceprints or profile_vp is not None
        if (sc.mode == "auto" or want_vp) and self._encoder is None and \
                self._encoder_missing is None:
            with self._vad_lock:  # a per-call speakers setting: load the encoder once
                if self._encoder is None and self._encoder_missing is None:
                    self._encoder, self._encoder_missing = load_encoder(
                        sc, cfg.runtime.num_threads, need_voiceprints=want_vp)
        found = find_speakers(audio.y, segments_, sc, encoder=self._encoder,
                              unavailable=self._encoder_missing, channels=channels,
                              voiceprints=want_vp)
        ids = identify(found, profile_voiceprint=profile_vp,
                       profile_id=profile.speaker_id if profile is not None else None,
                       has_profile=profile is not None,
                       profile_path=cfg.fusion.speaker_profile, cfg=sc,
                       speaker_ids=speaker_ids)
        focus = focus_label(found, sc, ids)
        if speaker_ids and FOCUS_KEY in speaker_ids:
            target = focus or (found.speakers[0].label if len(found.speakers) == 1 else None)
            if target is not None:
                ids.names[target] = speaker_ids[FOCUS_KEY]
        segments_, labels, overlap = split_at_turns(found)
        names = [ids.names.get(lab, lab) for lab in labels]
        t_speakers = time.perf_counter()
        outputs = self._run_streams(audio, segments_, speakers=names)
        frames = self._contours(audio, segments_, outputs) if contours else None
        t_streams = time.perf_counter()
        embeddings = {name: out.embeddings for name, out in outputs.items()
                      if out.embeddings is not None}
        segment_model, session_model = result_models()
        seg_results = _assemble(segments_, outputs, segment_model, speakers=names,
                                overlap=overlap)
        stream_infos = {**self._unavailable,
                        **{name: _stream_info(out) for name, out in outputs.items()}}
        stream_infos = {k: stream_infos[k] for k in stream_names() if k in stream_infos}
        warnings = list(audio.warnings) + list(found.warnings) + ids.warnings
        for name, out in outputs.items():
            warnings.extend(f"{name}: {w}" for w in out.warnings)
        if insufficient:
            warnings.append(
                f"insufficient speech: {speech_s:.1f} s detected, at least "
                f"{cfg.audio.min_speech_s:.1f} s needed for scores (audio.min_speech_s)")
        fusion_info: FusionInfo | None = None
        profile_speakers = None
        if not ids.profile_applies_to_all:
            profile_speakers = ({ids.names.get(ids.profile_label, ids.profile_label)}
                                if ids.profile_label is not None else set())
        if self._fuser is not None:
            seg_results, summary = self._fuser.fuse(seg_results, stream_infos,
                                                   insufficient_speech=insufficient,
                                                   profile_speakers=profile_speakers)
            fusion_info = self._fuser.info()
        else:
            summary = session_summary(seg_results, threshold=cfg.fusion.threshold,
                                      streams=list(stream_names()), scored=False)
        min_words = (self._fuser.spec_.normalisation.min_words if self._fuser is not None
                     else 5)
        cov_streams = list(stream_infos) + [s for s in FUSION_STREAMS if s not in stream_infos]
        scored = self._fuser is not None and not insufficient

        def summarize(segs: Sequence[SegmentResult]) -> SessionSummary:
            return session_summary(segs, threshold=cfg.fusion.threshold, streams=cov_streams,
                                   min_words=min_words, scored=scored)

        speaker_list = speaker_summaries(found, seg_results, summarize, focus=focus, ids=ids,
                                         keep_voiceprints=sc.voiceprints)
        lead = next((s for s in speaker_list if s.focus), None)
        if lead is not None and len(speaker_list) > 1 and lead.summary is not None:
            summary = lead.summary  # the session summary leads with the focus speaker
        t_end = time.perf_counter()
        timings = {
            "segments": t_segments - t_start,
            "speakers": t_speakers - t_segments,
            "streams": t_streams - t_speakers,
            **{f"stream:{n}": float(o.elapsed_s or 0.0) for n, o in outputs.items()},
            "fusion": t_end - t_streams,
            "total": t_end - t_start,
        }
        src = audio.source
        result = session_model(
            package_version=package_version(),
            analysed_at=datetime.now(UTC),
            status=SessionStatus.INSUFFICIENT_SPEECH if insufficient else SessionStatus.OK,
            source=SourceInfo(path=src.path, sha256=src.sha256, duration_s=round(src.duration_s, 6),
                              original_sr=src.original_sr, channels=src.channels,
                              format=src.format, decoder=src.decoder,
                              dead_channels=list(src.dead_channels)),
            segments=seg_results,
            streams=stream_infos,
            fusion=fusion_info,
            summary=summary,
            speaker_id=lead.speaker_id if lead is not None else None,
            speakers=speaker_list,
            diarization=DiarizationInfo(mode=found.mode, backend=found.backend,
                                        num_speakers=found.num_speakers,
                                        count_estimated=found.count_estimated,
                                        focus=sc.focus, policy=found.policy),
            config=cfg.to_dict(),
            config_hash=cfg.config_hash(),
            warnings=warnings,
        )
        if frames is not None:
            result.keep_contours(frames)
        return AnalysisRun(result=result, embeddings=embeddings, timings=timings)

    def _contours(self, audio: Audio, segments: list[Segment],
                  outputs: dict[str, StreamOutput[Any]]) -> Any:
        """The prosody stream's frame contours, with the pitch range its run used."""
        out, stream = outputs["prosody"], self._streams["prosody"]
        if out.status != StreamStatus.OK:
            return None
        return stream.contours(  # type: ignore[attr-defined]
            audio, segments, pitch_floor_hz=out.session["pitch_floor_hz"],
            pitch_ceiling_hz=out.session["pitch_ceiling_hz"])

    def segment(self, audio: Audio, config: SegmentsConfig | None = None) -> list[Segment]:
        """Segments of ``audio`` under ``config`` (default: the configured policy)."""
        cfg = config or self.config_.segments
        if cfg.policy == "vad" and self._vad is None:
            with self._vad_lock:  # concurrent requests load the VAD once
                if self._vad is None:
                    self._vad = SileroVAD(num_threads=1).load()
        return segment_audio(audio.y, audio.sr, cfg, vad=self._vad)

    def _run_streams(self, audio: Audio, segments: list[Segment], *,
                     speakers: Sequence[str] | None = None) -> dict[str, StreamOutput[Any]]:
        outputs: dict[str, StreamOutput[Any]] = {}
        # the speaker of every segment, for streams that adapt to the speaker (prosody's
        # pitch range); a context entry, not a stream of the result
        base: dict[str, StreamOutput[Any]] = {}
        if speakers is not None:
            base[SPEAKERS_CONTEXT] = StreamOutput(name=SPEAKERS_CONTEXT, rows=list(speakers))
        pending = dict(self._streams)
        parallel = self.config_.runtime.parallel_streams
        while pending:
            ready = [n for n in pending if all(r in outputs for r in stream_spec(n).requires)]
            if not ready:  # unreachable: requirements were checked in load()
                raise RuntimeError(f"stream dependency cycle among {list(pending)}")
            if parallel and len(ready) > 1:
                with ThreadPoolExecutor(max_workers=len(ready),
                                        thread_name_prefix="vf-stream") as pool:
                    futures = {n: pool.submit(self._run_one, pending[n], audio, segments,
                                              {**base, **outputs})
                               for n in ready}
                    for n, fut in futures.items():
                        outputs[n] = fut.result()
            else:
                for n in ready:
                    outputs[n] = self._run_one(pending[n], audio, segments, {**base, **outputs})
            for n in ready:
                del pending[n]
        return outputs

    @staticmethod
    def _run_one(stream: Stream, audio: Audio, segments: list[Segment],
                 context: dict[str, StreamOutput[Any]]) -> StreamOutput[Any]:
        t0 = time.perf_counter()
        try:
            out = stream.run(audio, segments, dict(context))
        except Exception as exc:  # one stream's failure costs that stream only
            log.exception("%s stream failed on %s", stream.name, audio.name)
            out = StreamOutput(name=stream.name, status=StreamStatus.FAILED,
                               reason=f"{type(exc).__name__}: {exc}",
                               provenance=_safe_provenance(stream),
                               rows=[None] * len(segments))
        if len(out.rows) != len(segments):
            raise RuntimeError(f"{stream.name} stream returned {len(out.rows)} rows for "
                               f"{len(segments)} segments")
        out.elapsed_s = round(time.perf_counter() - t0, 4)
        return out

    def stream(self, *, sample_rate: int, speaker_id: str | None = None,
               num_speakers: int | None = None, speakers_mode: str = "off") -> Any:
        """A :class:`fusion.engine.live.LiveSession`: ``feed(samples)`` → closed segments,
        ``close()`` → the SessionResult (see :mod:`fusion.engine.live`)."""
        from fusion.engine.live import LiveSession

        return LiveSession(self.load(), sample_rate=sample_rate, speaker_id=speaker_id,
                           num_speakers=num_speakers, speakers_mode=speakers_mode)

    # ------------------------------------------------------------------ many files
    def process_files(self, paths: Iterable[str | os.PathLike[str]]) -> Any:
        """Analyse many files in this process; one segment table (``MultiIndex(file, start,
        end)``), files in input order, the shape of ``process_file(p).to_dataframe()``.

        Uses the models loaded here, one file after another. Failed files are logged, left out
        and listed in ``df.attrs["errors"]``. For a worker pool (per-file timeout, crash
        isolation) use :func:`fusion.batch.runner.process_files_dataframe` with
        ``num_workers > 1`` (the engine layer does not import the batch layer); for resumable
        output on disk :func:`fusion.batch.runner.run_batch` or ``vocalfusion batch``.
        """
        from fusion.engine.many import analyze_files_in_process

        return analyze_files_in_process(self, paths)

    def process_folder(self, folder: str | os.PathLike[str]) -> Any:
        """Analyse every audio file below ``folder`` (sorted); see :meth:`process_files`."""
        from fusion.files import find_audio_files

        return self.process_files(find_audio_files(Path(folder)))


def _safe_provenance(stream: Any) -> Provenance | None:
    try:
        return stream.provenance()
    except Exception:  # provenance is best effort for a stream that failed to load
        return None


def _stream_info(out: StreamOutput[Any]) -> StreamInfo:
    session = {k: v for k, v in out.session.items() if _jsonable(v)}
    return StreamInfo(status=out.status, reason=out.reason, provenance=out.provenance,
                      warnings=list(out.warnings), elapsed_s=out.elapsed_s, session=session)


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


def _assemble(segments: Sequence[Segment], outputs: dict[str, StreamOutput[Any]],
              model: type[SegmentResult] = SegmentResult, *,
              speakers: Sequence[str] | None = None,
              overlap: Sequence[bool] | None = None) -> list[SegmentResult]:
    results = []
    for i, seg in enumerate(segments):
        fields: dict[str, Any] = {}
        for name, out in outputs.items():
            if name in model.model_fields:
                fields[name] = out.rows[i]
        results.append(model(index=i, start_s=seg.start_s, end_s=seg.end_s,
                             speaker=speakers[i] if speakers is not None else None,
                             overlap=bool(overlap[i]) if overlap is not None else False,
                             **fields))
    return results


_ANALYZERS: dict[str, Analyzer] = {}


def analyze(
    source: str | os.PathLike[str] | np.ndarray,
    *,
    sr: int | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | dict[str, Any] | None = None,
    contours: bool = False,
) -> SessionResult:
    """Analyse one recording (file path or array) with a cached :class:`Analyzer`.

    Parameters
    ----------
    source : path or np.ndarray
        An audio file, or samples of shape (n,) / (n, channels) (then ``sr`` is required).
    sr : int, optional
        Sample rate of an array ``source``.
    config : Config or path, optional
        Config object or TOML path; default ``configs/default.toml``.
    overrides : list of "section.key=value" or dict, optional
    contours : bool
        Keep the frame contours (F0, intensity, HNR, F1–F3 on a 10-ms grid) in the result:
        :meth:`SessionResult.contours`. Needs the prosody stream.

    Examples
    --------
    >>> import fusion
    >>> result = fusion.analyze("examples/jfk.flac")  # doctest: +SKIP
    >>> df = result.to_dataframe()                     # doctest: +SKIP
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    # the whole config, speed-only settings included: an Analyzer built for other threads
    # must not be reused
    key = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    analyzer = _ANALYZERS.get(key)
    if analyzer is None:
        _ANALYZERS.clear()  # keep at most one set of loaded models per process
        analyzer = _ANALYZERS[key] = Analyzer(cfg).load()
    if isinstance(source, np.ndarray):
        if sr is None:
            raise ParameterError("analyze(array) needs the sample rate: analyze(y, sr=16000)")
        return analyzer.process_signal(source, sr, contours=contours)
    return analyzer.process_file(source, contours=contours)
