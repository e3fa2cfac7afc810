"""Sentiment stream and lexical markers.

VADER runs for real. The transformers backend is exercised with a tiny *randomly initialised*
BERT classifier and a word-level tokenizer built in a temp dir: those tests check mechanics
only (probabilities, label mapping, batching, rows); the scores mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from features.audio.load import audio_from_signal, load_audio
from features.errors import ModelUnavailable
from features.segments.vad import Segment, segment_audio
from features.sentiment.lexicon import (
    ABSOLUTIST,
    FIRST_PERSON_SINGULAR,
    NEGATIVE_EMOTION,
    count_categories,
    tokenize,
)
from features.sentiment.stream import (
    SentimentConfig,
    SentimentMeasures,
    SentimentStream,
    map_labels,
    vader_label,
)
from features.stream import StreamOutput, StreamStatus
from features.transcript.stream import SegmentTranscript, TranscriptConfig, TranscriptStream, Word

POSITIVE = "I love this wonderful day, everything is great and I am so happy."
NEUTRAL = "The report has twelve pages and four tables."
NEGATIVE = "I feel terrible and hopeless, I hate everything and I am so sad."


def transcript_output(texts: list[str | None], *, language: str | None = "en",
                      suspect: bool = False) -> tuple[StreamOutput, list[Segment]]:
    """A transcript StreamOutput in the shape TranscriptStream returns (one row per text)."""
    segs, rows = [], []
    for i, text in enumerate(texts):
        seg = Segment(float(3 * i), float(3 * i + 2))
        segs.append(seg)
        if text is None:
            rows.append(SegmentTranscript(note="no speech found"))
            continue
        toks = text.split()
        step = seg.duration_s / max(1, len(toks))
        words = [Word(text=t, start_s=seg.start_s + k * step,
                      end_s=seg.start_s + (k + 1) * step, probability=0.9)
                 for k, t in enumerate(toks)]
        rows.append(SegmentTranscript(text=" ".join(toks), words=words, word_count=len(words),
                                      words_per_min=len(words) / (seg.duration_s / 60)))
    out = StreamOutput(name="transcript", rows=rows,
                       session={"language": language, "language_suspect": suspect})
    return out, segs


@pytest.fixture(scope="module")
def vader() -> SentimentStream:
    s = SentimentStream(SentimentConfig())
    s.load()
    return s


# ------------------------------------------------------------------------- lexicon

def test_tokenize_and_counts() -> None:
    assert tokenize("I’m sure — it's ALL done, isn't it?") == ["i'm", "sure", "it's", "all",
                                                              "done", "isn't", "it"]
    c = count_categories(tokenize("I always feel so alone. My life, I'm never calm!"))
    assert c.word_count == 10
    assert c.first_person_singular_count == 3          # I, my, I'm
    assert c.absolutist_count == 2                     # always, never
    assert c.negative_emotion_word_count == 1          # alone
    assert c.first_person_singular_rate == pytest.approx(0.3)
    empty = count_categories([])
    assert empty.word_count == 0 and empty.absolutist_rate is None  # no fake 0


def test_word_lists() -> None:
    assert len(ABSOLUTIST) == 19  # Al-Mosaiwi & Johnstone (2018)
    assert {"i", "me", "my", "mine", "myself"} <= FIRST_PERSON_SINGULAR
    assert not (ABSOLUTIST & NEGATIVE_EMOTION) and not (FIRST_PERSON_SINGULAR & ABSOLUTIST)
    assert all(w == w.lower() and tokenize(w) == [w] for w in NEGATIVE_EMOTION | ABSOLUTIST)


def test_negative_emotion_words_agree_with_vader_lexicon(vader: SentimentStream) -> None:
    """Independent check of our open list against VADER's human-rated valences."""
    lexicon = vader._backend.analyzer.lexicon  # type: ignore[union-attr]
    rated = {w: lexicon[w] for w in NEGATIVE_EMOTION if w in lexicon}
    assert not [w for w, v in rated.items() if v > 0], "a negative-emotion word rated positive"
    negative = [w for w, v in rated.items() if v < 0]
    assert len(negative) >= 0.9 * len(NEGATIVE_EMOTION)


# ------------------------------------------------------------------------- label mapping

@pytest.mark.parametrize("id2label,expected", [
    ({0: "negative", 1: "neutral", 2: "positive"}, ["negative", "neutral", "positive"]),
    ({0: "NEG", 1: "NEU", 2: "POS"}, ["negative", "neutral", "positive"]),
    ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, ["negative", "neutral", "positive"]),
    ({0: "LABEL_0", 1: "LABEL_1"}, ["negative", "positive"]),
    ({0: "NEGATIVE", 1: "POSITIVE"}, ["negative", "positive"]),
    ({0: "Positive", 1: "Negative", 2: "Neutral"}, ["positive", "negative", "neutral"]),
    ({0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"},
     ["negative", "negative", "neutral", "positive", "positive"]),
])
def test_map_labels(id2label: dict[int, str], expected: list[str]) -> None:
    assert list(map_labels(id2label).values()) == expected


def test_map_labels_unknown_and_explicit() -> None:
    with pytest.raises(ModelUnavailable, match="sentiment.label_map"):
        map_labels({0: "joy", 1: "anger"})
    assert map_labels({0: "joy", 1: "anger"}, {"anger": "negative", "JOY": "positive"}) == {
        0: "positive", 1: "negative"}
    with pytest.raises(ModelUnavailable, match="label_map"):
        map_labels({0: "joy", 1: "anger"}, {"anger": "angry", "joy": "positive"})


def test_vader_label_thresholds() -> None:
    assert [vader_label(c) for c in (0.05, 0.049, -0.049, -0.05)] == [
        "positive", "neutral", "neutral", "negative"]


# ------------------------------------------------------------------------- VADER stream

def test_vader_orders_clear_sentences(vader: SentimentStream) -> None:
    tr, segs = transcript_output([POSITIVE, NEUTRAL, NEGATIVE])
    out = vader.run(None, segs, {"transcript": tr})
    assert out.status == StreamStatus.OK and len(out.rows) == 3
    pos, neu, neg = out.rows
    assert all(isinstance(r, SentimentMeasures) for r in out.rows)
    assert [r.label for r in out.rows] == ["positive", "neutral", "negative"]
    assert pos.compound > neu.compound > neg.compound
    assert pos.positive > neu.positive and neg.negative > neu.negative
    for r in out.rows:
        assert r.score_kind == "vader_proportions"
        assert r.negative + r.neutral + r.positive == pytest.approx(1.0, abs=1e-3)
        assert -1.0 <= r.compound <= 1.0
    # lexical markers of the negative sentence: I ×3, everything, terrible/hopeless/hate/sad
    assert neg.word_count == 13
    assert neg.first_person_singular_count == 3
    assert neg.absolutist_count == 1
    assert neg.negative_emotion_word_count == 4
    assert neg.first_person_singular_rate == pytest.approx(3 / 13)
    assert neg.words_per_min == pytest.approx(13 / (2 / 60))
    assert neu.first_person_singular_rate == 0.0  # words present, none in the category
    lex = out.session["lexical"]
    assert lex["word_count"] == sum(r.word_count for r in out.rows)


def test_segments_without_words_get_no_row(vader: SentimentStream) -> None:
    tr, segs = transcript_output([POSITIVE, None, "", NEGATIVE])
    out = vader.run(None, segs, {"transcript": tr})
    assert out.status == StreamStatus.OK
    assert out.rows[1] is None and out.rows[2] is None  # never a neutral 0
    assert out.rows[0] is not None and out.rows[3] is not None
    assert out.session["empty_segments"] == [1, 2]
    assert any("without words" in w for w in out.warnings)


@pytest.mark.parametrize("status", [StreamStatus.SKIPPED, StreamStatus.FAILED, None])
def test_no_transcript_means_skipped(vader: SentimentStream, status: StreamStatus | None
                                     ) -> None:
    segs = [Segment(0.0, 2.0), Segment(3.0, 5.0)]
    ctx = {} if status is None else {"transcript": StreamOutput(
        name="transcript", status=status, reason="model not installed", rows=[None, None])}
    out = vader.run(None, segs, ctx)
    assert out.status == StreamStatus.SKIPPED
    assert out.rows == [None, None]
    assert "transcript" in out.reason
    if status is not None:
        assert "model not installed" in out.reason


def test_non_english_transcript(vader: SentimentStream) -> None:
    tr, segs = transcript_output(["das ist gut"], language="de")
    out = vader.run(None, segs, {"transcript": tr})
    assert out.status == StreamStatus.SKIPPED and "English-only" in out.reason
    tr, segs = transcript_output([POSITIVE], suspect=True)
    out = vader.run(None, segs, {"transcript": tr})
    assert out.status == StreamStatus.OK
    assert any("may not be English" in w for w in out.warnings)


def test_from_real_transcript(vader: SentimentStream, speech_factory: Callable[..., Path]
                              ) -> None:
    """espeak-ng (synthetic) speech → bundled Whisper → VADER, three sentences apart."""
    parts = []
    for text in (POSITIVE, NEUTRAL, NEGATIVE):
        parts += [load_audio(speech_factory(text)).y, np.zeros(16000 * 2, np.float32)]
    audio = audio_from_signal(np.concatenate(parts), 16000, name="three-sentences")
    segs = segment_audio(audio.y, audio.sr)
    assert len(segs) == 3
    ts = TranscriptStream(TranscriptConfig())
    ts.load()
    tr = ts.run(audio, segs, {})
    out = vader.run(audio, segs, {"transcript": tr})
    assert [r.label for r in out.rows] == ["positive", "neutral", "negative"], [
        t.text for t in tr.rows]
    assert out.provenance is not None and out.provenance.backend == "vader"


# ------------------------------------------------------------------------- transformers

def _tiny_classifier(path: Path, id2label: dict[int, str], *, pickle_only: bool = False) -> Path:
    """A tiny random BERT text classifier with a word-level tokenizer (mechanics only)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = sorted(set(tokenize(" ".join([POSITIVE, NEUTRAL, NEGATIVE]))))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({w: i + 4 for i, w in enumerate(words)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]",
                                            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]",
                            model_max_length=64).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                     initializer_range=0.5, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})
    model = BertForSequenceClassification(cfg).eval()
    if pickle_only:
        cfg.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    else:
        model.save_pretrained(path)
    return path


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("id2label", [{0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
                                      {0: "NEG", 1: "NEU", 2: "POS"}])
def test_transformers_backend_mechanics(tmp_path: Path, offline: None,
                                        id2label: dict[int, str]) -> None:
    model_dir = _tiny_classifier(tmp_path / "clf", id2label)
    texts = [POSITIVE, None, NEUTRAL, NEGATIVE, "calm", POSITIVE + " " + NEUTRAL]
    tr, segs = transcript_output(texts)
    s = SentimentStream(SentimentConfig(backend="transformers", model=str(model_dir),
                                        batch_size=32))
    s.load()
    out = s.run(None, segs, {"transcript": tr})
    assert out.status == StreamStatus.OK and len(out.rows) == len(texts)
    assert out.rows[1] is None
    assert out.session["label_map"] == {"0": "negative", "1": "neutral", "2": "positive"}
    for r in out.rows:
        if r is None:
            continue
        assert r.score_kind == "class_probabilities" and r.compound is None
        probs = {"negative": r.negative, "neutral": r.neutral, "positive": r.positive}
        assert all(0.0 <= p <= 1.0 for p in probs.values())
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert r.label == max(probs, key=probs.__getitem__)
    scored = [r for r in out.rows if r is not None]
    assert len({round(r.positive, 6) for r in scored}) > 1  # texts are really distinguished
    # batching: one text per batch gives the same numbers as one padded batch
    s1 = SentimentStream(SentimentConfig(backend="transformers", model=str(model_dir),
                                         batch_size=1))
    s1.load()
    out1 = s1.run(None, segs, {"transcript": tr})
    for a, b in zip(out.rows, out1.rows, strict=True):
        if a is None:
            assert b is None
            continue
        assert a.negative == pytest.approx(b.negative, abs=1e-5)
        assert a.positive == pytest.approx(b.positive, abs=1e-5)
    prov = out.provenance
    assert prov is not None and prov.backend == "transformers"
    assert prov.model_id == str(model_dir) and prov.revision.startswith("sha256:")


def test_transformers_two_class_model_has_no_neutral(tmp_path: Path, offline: None) -> None:
    model_dir = _tiny_classifier(tmp_path / "clf2", {0: "NEGATIVE", 1: "POSITIVE"})
    tr, segs = transcript_output([POSITIVE, NEGATIVE])
    s = SentimentStream(SentimentConfig(backend="transformers", model=str(model_dir)))
    s.load()
    out = s.run(None, segs, {"transcript": tr})
    for r in out.rows:
        assert r.neutral is None
        assert r.negative + r.positive == pytest.approx(1.0, abs=1e-5)
        assert r.label in ("negative", "positive")


def test_transformers_pickle_only_model_refused(tmp_path: Path, offline: None) -> None:
    model_dir = _tiny_classifier(tmp_path / "pkl", {0: "NEG", 1: "NEU", 2: "POS"},
                                 pickle_only=True)
    s = SentimentStream(SentimentConfig(backend="transformers", model=str(model_dir)))
    with pytest.raises(ModelUnavailable, match="allow_pickle_weights"):
        s.load()


def test_transformers_hub_model_offline(tmp_path: Path, offline: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    s = SentimentStream(SentimentConfig(backend="transformers"))  # the research default
    with pytest.raises(ModelUnavailable, match="offline"):
        s.load()
