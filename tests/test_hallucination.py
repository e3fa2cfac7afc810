"""Whisper hallucination vs real repeated speech (reliability class 9).

Repetition alone is not a hallucination: a reading in which every sentence is spoken twice
compresses like a Whisper repetition loop. The transcript stream judges Whisper's segments
against the audio (:mod:`features.transcript.judge`): words over no speech are dropped,
repetitive text over speech is decoded again in shorter windows, and any speech that still
loses its words is reported in ``session["dropped_speech_s"]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from features.audio.load import load_audio
from features.segments.vad import segment_audio
from features.transcript.judge import (
    DropReport,
    judge_segment,
    merge_intervals,
    speech_seconds,
    word_span,
)
from features.transcript.stream import TranscriptConfig, TranscriptStream, word_error_rate
from tests.test_transcript import SENTENCES

GATES = {"compression_ratio_threshold": 2.4, "no_speech_threshold": 0.6}


def _seg(words: list[tuple[str, float, float, float]], *, ratio: float = 1.5,
         no_speech: float = 0.05) -> SimpleNamespace:
    return SimpleNamespace(start=words[0][1], end=words[-1][2], words=words,
                           no_speech_prob=no_speech, compression_ratio=ratio)


# ------------------------------------------------------------------------- pure judge

def test_judge_drops_words_over_no_speech() -> None:
    # the hum's segment: Whisper unsure of its words, all piled up at the window's end
    hum = _seg([("I'm", 18.58, 19.98, 0.11), ("going", 19.98, 19.98, 0.14),
                ("to", 19.98, 19.98, 0.90), ("go", 19.98, 19.98, 0.07)], ratio=2.31,
               no_speech=0.93)
    assert judge_segment(hum, [], final=False, **GATES) == "hallucination"
    # the same words over speech are kept (a hard recording, not an invention)
    assert judge_segment(hum, [(18.0, 20.0)], final=False, **GATES) == "keep"
    # a confident segment is never questioned, speech or not
    sure = _seg([("hello", 1.0, 1.4, 0.95), ("there", 1.4, 1.8, 0.9)])
    assert judge_segment(sure, [], final=False, **GATES) == "keep"


def test_judge_repetition_over_speech_is_decoded_again_then_kept_when_sure() -> None:
    words = [("the", 0.5, 0.7, 0.9), ("train", 0.7, 1.0, 0.95), ("the", 3.0, 3.2, 0.9),
             ("train", 3.2, 3.5, 0.95)]
    twice = _seg(words, ratio=2.8)
    speech = [(0.4, 1.1), (2.9, 3.6)]
    assert judge_segment(twice, speech, final=False, **GATES) == "redecode"
    assert judge_segment(twice, speech, final=True, **GATES) == "keep"
    unsure = _seg([(w, a, b, 0.2) for w, a, b, _ in words], ratio=2.8)
    assert judge_segment(unsure, speech, final=True, **GATES) == "repetitive"
    # a loop over no speech is dropped at once, without a second decoding
    assert judge_segment(twice, [], final=False, **GATES) == "repetitive"


def test_judge_helpers() -> None:
    assert word_span(_seg([("a", 1.0, 1.5, 0.9), ("b", 2.0, 2.5, 0.9)])) == (1.0, 2.5)
    no_times = SimpleNamespace(start=3.0, end=4.0, words=None, no_speech_prob=None,
                               compression_ratio=None)
    assert word_span(no_times) == (3.0, 4.0)
    assert merge_intervals([(2.0, 3.0), (0.0, 1.0)], gap_s=1.0) == [(0.0, 3.0)]
    assert speech_seconds(0.0, 10.0, [(1.0, 2.0), (9.5, 12.0)]) == pytest.approx(1.5)
    assert DropReport().dropped_speech_s == 0.0
    with pytest.raises(ValueError):
        DropReport(dropped_speech_s=-1.0)


# ------------------------------------------------------------------------- real Whisper

@pytest.mark.parametrize("batch_size", [1, 8])
def test_sentences_spoken_twice_keep_their_words(speech_factory: Callable[..., Path],
                                                 batch_size: int) -> None:
    """Eight sentences, each spoken twice in a row (≈ 63 s of espeak-ng speech): before the
    judge, Whisper's compression gate threw away about half of the words (WER 0.50, seven
    segments dropped as repetitive)."""
    text = " ".join(f"{s} {s}" for s in SENTENCES)
    audio = load_audio(speech_factory(text))
    segs = segment_audio(audio.y, audio.sr)
    stream = TranscriptStream(TranscriptConfig(batch_size=batch_size), num_threads=2)
    stream.load()
    t0 = time.perf_counter()
    out = stream.run(audio, segs, {})
    rtf = (time.perf_counter() - t0) / audio.duration_s
    wer = word_error_rate(text, out.session["text"])
    assert wer < 0.15, (wer, out.session["text"])
    assert out.session["n_words"] >= 0.9 * len(text.split())
    assert out.session["n_segments_dropped_repetitive"] == 0
    assert out.session["dropped_speech_s"] == 0.0
    assert not any("dropped" in w for w in out.warnings), out.warnings
    assert rtf < 1.0  # loose: shared CI cores; the figures are in docs/reliability.md
