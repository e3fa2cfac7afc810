"""Text sentiment of each segment's words (VADER or a transformer) plus lexical markers.

Reads the transcript stream's rows (``context["transcript"]``) and returns one
:class:`SentimentMeasures` per segment, or ``None`` for a segment without words (a segment
nobody said anything in has no sentiment; it is never scored neutral).

Backends
--------
``vader`` (default, offline)
    VADER (Hutto & Gilbert, 2014), the rule-based lexicon that ``vaderSentiment`` ships.
    Mapping: ``negative``, ``neutral``, ``positive`` are VADER's ``neg``, ``neu``, ``pos`` —
    the *proportions of the text* that fall in each valence class (rescaled to sum exactly
    to 1; VADER rounds them to 3 decimals). They are not class probabilities
    (``score_kind = "vader_proportions"``): ordinary sentences are mostly neutral words, so
    ``neutral`` dominates. ``compound`` is VADER's normalised sum of valences in [-1, 1];
    ``label`` follows the VADER authors' thresholds: positive if compound ≥ 0.05, negative
    if compound ≤ -0.05, neutral otherwise.
``transformers``
    Any Hugging Face text-classification model by hub id or local directory (default
    :data:`DEFAULT_TRANSFORMER_MODEL`, Barbieri et al., 2022 / Loureiro et al., 2022).
    Softmax class probabilities (``score_kind = "class_probabilities"``) mapped onto
    negative/neutral/positive whatever the model calls its classes (see
    :func:`map_labels`); a two-class model has ``neutral = None``. All segment texts of a
    file go through the model in one call, in length-sorted batches of ``batch_size``.

Lexical markers
---------------
Per segment, from :mod:`features.sentiment.lexicon`: rates (fraction of words) of
first-person singular
pronouns, absolutist words and negative-emotion words, with their counts, and the speech rate
in words per minute (from the transcript). Rates over a 10-word segment are very noisy; the
session-level rates (``session["lexical"]``, pooled over all words) are the ones to compare
between speakers. The word lists and VADER are English-only: for a transcript in another
language the VADER backend is skipped and the lexical markers are ``None``.

References
----------
Hutto, C. J., & Gilbert, E. (2014). VADER: A parsimonious rule-based model for sentiment
analysis of social media text. *Proceedings of ICWSM 2014*, 216–225.

Barbieri, F., Espinosa Anke, L., & Camacho-Collados, J. (2022). XLM-T: Multilingual language
models in Twitter for sentiment analysis and beyond. *Proceedings of LREC 2022*.

Loureiro, D., Barbieri, F., Neves, L., Espinosa Anke, L., & Camacho-Collados, J. (2022).
TimeLMs: Diachronic language models from Twitter. *Proceedings of ACL 2022: System
Demonstrations*, 251–260.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.errors import ModelUnavailable
from features.sentiment.lexicon import LexicalCounts, count_categories, tokenize
from features.sources import dist_version
from features.stream import Provenance, StreamOutput, StreamStatus

if TYPE_CHECKING:
    from features.audio.load import Audio
    from features.segments.vad import Segment

__all__ = [
    "SentimentMeasures",
    "SentimentConfig",
    "SentimentStream",
    "DEFAULT_TRANSFORMER_MODEL",
    "CANONICAL_LABELS",
    "map_labels",
    "vader_label",
]

#: the research default of the ``transformers`` backend (3 classes: negative/neutral/positive)
DEFAULT_TRANSFORMER_MODEL = "cardiffnlp/twitter-roberta-base-sentiment-latest"
CANONICAL_LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")
#: VADER authors' recommended compound thresholds (vaderSentiment README)
VADER_POSITIVE_THRESHOLD = 0.05
VADER_NEGATIVE_THRESHOLD = -0.05


class SentimentMeasures(BaseModel):
    """Sentiment and lexical markers of one segment's words."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    negative: float
    neutral: float | None = Field(
        description="None for two-class models, which estimate no neutral class")
    positive: float
    label: str
    compound: float | None = Field(None, description="VADER compound score in [-1, 1]")
    score_kind: Literal["vader_proportions", "class_probabilities"] = Field(
        "class_probabilities",
        description="VADER: proportions of the text per valence class; transformers: softmax")
    word_count: int = 0
    words_per_min: float | None = Field(None, description="from the transcript segment")
    first_person_singular_rate: float | None = Field(None, description="fraction of words")
    absolutist_rate: float | None = Field(None, description="fraction of words")
    negative_emotion_word_rate: float | None = Field(None, description="fraction of words")
    first_person_singular_count: int | None = None
    absolutist_count: int | None = None
    negative_emotion_word_count: int | None = None


class SentimentConfig(BaseModel):
    """Settings of the sentiment stream (config section ``[sentiment]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: Literal["vader", "transformers"] = Field(
        "vader", description="'vader' or 'transformers'")
    model: str | None = Field(
        None, description=f"HF id or local dir for 'transformers'; None = "
                          f"{DEFAULT_TRANSFORMER_MODEL}")
    revision: str | None = Field(None, description="hub revision of the transformers model")
    allow_pickle_weights: bool = Field(
        False, description="accept pytorch_model.bin (pickle) when no safetensors exist")
    label_map: dict[str, Literal["negative", "neutral", "positive"]] | None = Field(
        None, description="model label → canonical label, when the automatic mapping fails")
    batch_size: int = Field(32, ge=1, le=1024)
    max_length: int = Field(512, ge=8, le=8192, description="tokens per text (truncated)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"


# --------------------------------------------------------------------------------------------
# label mapping
# --------------------------------------------------------------------------------------------

_NAMED = {
    "negative": "negative", "neg": "negative", "bad": "negative",
    "neutral": "neutral", "neu": "neutral", "none": "neutral", "mixed": None,
    "positive": "positive", "pos": "positive", "good": "positive",
}
_STARS = re.compile(r"^([1-5])\s*stars?$")


def map_labels(id2label: Mapping[int, str],
               label_map: Mapping[str, str] | None = None) -> dict[int, str]:
    """Map a classifier's class indices onto ``negative`` / ``neutral`` / ``positive``.

    Rules, in order: an explicit ``label_map`` (model label → canonical); names
    (``negative``/``NEG``/``Negative``, ``neutral``/``NEU``, ``positive``/``POS``, case
    insensitive); star ratings (``1 star``..``5 stars``: 1–2 negative, 3 neutral, 4–5
    positive); generic ``LABEL_k`` names, read with the convention of the published
    sentiment models that use them — 3 classes ``LABEL_0/1/2`` = negative/neutral/positive
    (cardiffnlp/twitter-roberta-base-sentiment), 2 classes ``LABEL_0/1`` = negative/positive
    (SST-2 models). Several classes may map to one canonical label (their probabilities are
    added).

    Raises
    ------
    ModelUnavailable
        Some class cannot be mapped, or no class maps to negative or to positive; the message
        names the labels and the ``sentiment.label_map`` setting that fixes it.

    Examples
    --------
    >>> map_labels({0: "NEG", 1: "NEU", 2: "POS"})
    {0: 'negative', 1: 'neutral', 2: 'positive'}
    >>> map_labels({0: "LABEL_0", 1: "LABEL_1"})
    {0: 'negative', 1: 'positive'}
    """
    labels = {int(k): str(v) for k, v in id2label.items()}
    out: dict[int, str] = {}
    unknown: list[str] = []
    generic = all(re.fullmatch(r"label_\d+", v.strip().lower()) for v in labels.values())
    explicit = {k.strip().lower(): v for k, v in (label_map or {}).items()}
    bad = sorted(v for v in explicit.values() if v not in CANONICAL_LABELS)
    if bad:
        raise ModelUnavailable(f"sentiment.label_map values must be one of {CANONICAL_LABELS}; "
                               f"got {bad}")
    for idx, name in sorted(labels.items()):
        key = name.strip().lower()
        if key in explicit:
            out[idx] = explicit[key]
            continue
        if key in _NAMED and _NAMED[key] is not None:
            out[idx] = _NAMED[key]  # type: ignore[assignment]
            continue
        star = _STARS.match(key)
        if star:
            n = int(star.group(1))
            out[idx] = "negative" if n <= 2 else "neutral" if n == 3 else "positive"
            continue
        if generic and len(labels) in (2, 3):
            k = int(key.split("_")[1])
            order = ("negative", "positive") if len(labels) == 2 else CANONICAL_LABELS
            if 0 <= k < len(order):
                out[idx] = order[k]
                continue
        unknown.append(name)
    mapped = set(out.values())
    if unknown or not {"negative", "positive"} <= mapped:
        raise ModelUnavailable(
            f"cannot map the sentiment model's labels {sorted(labels.values())} onto "
            f"negative/neutral/positive (unmapped: {unknown or 'none'}; mapped: "
            f"{sorted(mapped)}). Set sentiment.label_map, e.g. "
            f"{{\"{next(iter(labels.values()))}\" = \"negative\", ...}}")
    return out


def vader_label(compound: float) -> str:
    """VADER's label for a compound score (thresholds ±0.05, Hutto & Gilbert)."""
    if compound >= VADER_POSITIVE_THRESHOLD:
        return "positive"
    if compound <= VADER_NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


# --------------------------------------------------------------------------------------------
# backends: texts → (negative, neutral|None, positive, label, compound|None)
# --------------------------------------------------------------------------------------------

_Scores = tuple[float, float | None, float, str, float | None]


class _VaderBackend:
    score_kind = "vader_proportions"
    english_only = True

    def __init__(self, config: SentimentConfig, num_threads: int) -> None:
        self.analyzer: Any = None
        self.model_id = "bundled:vader"
        self.revision: str | None = None

    def load(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise ModelUnavailable(f"the sentiment backend 'vader' needs vaderSentiment ({exc}); "
                                   "run `pip install vadersentiment`") from None
        self.analyzer = SentimentIntensityAnalyzer()
        ver = dist_version("vaderSentiment") or dist_version("vadersentiment")
        self.revision = f"vaderSentiment=={ver}" if ver else None

    def library_version(self) -> str | None:
        return dist_version("vaderSentiment") or dist_version("vadersentiment")

    def score(self, texts: list[str]) -> list[_Scores]:
        out: list[_Scores] = []
        for text in texts:
            s = self.analyzer.polarity_scores(text)
            neg, neu, pos = (max(0.0, float(s[k])) for k in ("neg", "neu", "pos"))
            total = neg + neu + pos
            if total > 0:
                neg, neu, pos = neg / total, neu / total, pos / total
            else:  # pragma: no cover - VADER returns neu = 1 for text without valence
                neg, neu, pos = 0.0, 1.0, 0.0
            compound = float(s["compound"])
            out.append((round(neg, 4), round(neu, 4), round(pos, 4), vader_label(compound),
                        round(compound, 4)))
        return out


class _TransformersBackend:
    score_kind = "class_probabilities"
    english_only = False

    def __init__(self, config: SentimentConfig, num_threads: int) -> None:
        self.config = config
        self.num_threads = num_threads
        self.model: Any = None
        self.tokenizer: Any = None
        self.index_map: dict[int, str] = {}
        self.model_id = config.model or DEFAULT_TRANSFORMER_MODEL
        self.revision: str | None = None
        self.two_class = False
        self.device = "cpu"

    def load(self) -> None:
        from features import sources as models

        cfg = self.config
        source = models.resolve_model(self.model_id, kind="transformers", revision=cfg.revision,
                                      allow_pickle=cfg.allow_pickle_weights,
                                      setting="sentiment.model")
        path = models.ensure_model(source, setting="sentiment.model")
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ModelUnavailable(
                f"the sentiment backend 'transformers' needs torch and transformers ({exc}); "
                "run `pip install torch transformers`, or use sentiment.backend = 'vader'"
            ) from None
        use_safetensors = None if cfg.allow_pickle_weights else True
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), local_files_only=True, use_safetensors=use_safetensors)
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load the sentiment model {self.model_id!r} from {path}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                "sentiment.model must be a text-classification model with a tokenizer") from None
        id2label = getattr(model.config, "id2label", None) or {}
        if len(id2label) != int(model.config.num_labels):
            raise ModelUnavailable(f"the sentiment model {self.model_id!r} has "
                                   f"{model.config.num_labels} classes but id2label "
                                   f"{id2label}; set sentiment.label_map")
        self.index_map = map_labels(id2label, cfg.label_map)
        self.two_class = "neutral" not in self.index_map.values()
        dev = cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = dev
        self.model = model.to(dev).eval()
        self.revision = ((source.commit or source.revision) if source.origin.startswith("hub")
                         else _dir_digest(path))

    def library_version(self) -> str | None:
        return dist_version("transformers")

    def score(self, texts: list[str]) -> list[_Scores]:
        import torch

        cfg = self.config
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs: list[list[float]] = [[] for _ in texts]
        max_len = min(cfg.max_length, int(getattr(self.tokenizer, "model_max_length", 512)
                                          or 512))
        with torch.inference_mode():
            for b in range(0, len(order), cfg.batch_size):
                idx = order[b:b + cfg.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=max_len, return_tensors="pt").to(self.device)
                logits = self.model(**enc).logits.float()
                p = torch.softmax(logits, dim=-1).cpu().tolist()
                for i, row in zip(idx, p, strict=True):
                    probs[i] = row
        out: list[_Scores] = []
        for row in probs:
            agg = {"negative": 0.0, "neutral": 0.0, "positive": 0.0}
            for k, pk in enumerate(row):
                agg[self.index_map[k]] += float(pk)
            total = sum(agg.values())
            agg = {k: v / total for k, v in agg.items()}
            label = max(agg, key=agg.__getitem__)
            neutral = None if self.two_class else round(agg["neutral"], 6)
            out.append((round(agg["negative"], 6), neutral, round(agg["positive"], 6), label,
                        None))
        return out


def _dir_digest(path: Any) -> str | None:
    """sha256 (16 hex) over a local model directory's config and weight files."""
    import hashlib
    from pathlib import Path

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file() and (
        f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return f"sha256:{h.hexdigest()[:16]}"


_BACKENDS: dict[str, type[_VaderBackend] | type[_TransformersBackend]] = {
    "vader": _VaderBackend, "transformers": _TransformersBackend}


# --------------------------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------------------------

class SentimentStream:
    """Sentiment and lexical markers of each segment's transcript.

    Parameters
    ----------
    config : SentimentConfig
        The ``[sentiment]`` config section.
    num_threads : int, keyword-only
        Thread budget (kept for the contract; the transformer runs under torch's process-wide
        thread setting, which this stream does not change).

    Notes
    -----
    ``session`` holds ``score_kind``, ``label_map`` (class index → canonical label, transformers
    only), ``n_scored``, ``empty_segments`` (indices of segments without words, which have no
    row), ``language`` and ``lexical`` (rates and counts pooled over every word of the file).
    """

    name = "sentiment"
    requires: tuple[str, ...] = ("transcript",)

    def __init__(self, config: SentimentConfig | None = None, *, num_threads: int = 2) -> None:
        self.config = config if config is not None else SentimentConfig()
        self.num_threads = num_threads
        self._backend: _VaderBackend | _TransformersBackend | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the lexicon or the transformer once (``ModelUnavailable`` with a remedy)."""
        if self._backend is not None:
            return
        backend = _BACKENDS[self.config.backend](self.config, self.num_threads)
        backend.load()
        self._backend = backend

    def provenance(self) -> Provenance:
        cfg = self.config
        b = self._backend
        options: dict[str, Any] = {"score_kind": _BACKENDS[cfg.backend].score_kind}
        if cfg.backend == "vader":
            options["label_thresholds"] = [VADER_NEGATIVE_THRESHOLD, VADER_POSITIVE_THRESHOLD]
        else:
            options.update(batch_size=cfg.batch_size, max_length=cfg.max_length,
                           device=cfg.device, label_map=cfg.label_map,
                           index_map=(b.index_map if isinstance(b, _TransformersBackend)
                                      else None))
        return Provenance(
            backend=cfg.backend,
            model_id=b.model_id if b is not None else (
                "bundled:vader" if cfg.backend == "vader"
                else cfg.model or DEFAULT_TRANSFORMER_MODEL),
            revision=b.revision if b is not None else cfg.revision,
            library_version=b.library_version() if b is not None else None,
            options=options)

    def run(self, audio: Audio | None, segments: Sequence[Segment],
            context: dict[str, StreamOutput]) -> StreamOutput:
        """Score every segment's words; ``None`` for segments without words."""
        t0 = time.perf_counter()
        n = len(segments)
        tr = (context or {}).get("transcript")
        if tr is None:
            return StreamOutput.skipped(self.name, "no transcript: the transcript stream did "
                                        "not run (enable transcript to get sentiment)", n,
                                        self.provenance())
        if tr.status != StreamStatus.OK:
            why = f": {tr.reason}" if tr.reason else ""
            return StreamOutput.skipped(self.name, f"no transcript: the transcript stream was "
                                        f"{tr.status.value}{why}", n, self.provenance())
        if len(tr.rows) != n:
            raise ValueError(f"transcript has {len(tr.rows)} rows for {n} segments")
        language = tr.session.get("language")
        english = language in (None, "en") or str(language).lower().startswith("en")
        self.load()
        assert self._backend is not None
        warnings: list[str] = []
        if tr.session.get("language_suspect"):
            warnings.append("sentiment: the transcript may not be English or is unreliable "
                            "(see the transcript warnings); these scores inherit that doubt")
        if not english and self._backend.english_only:
            return StreamOutput.skipped(
                self.name, f"the transcript language is {language!r}; VADER and the lexical "
                "word lists are English-only (use sentiment.backend = 'transformers' with a "
                "multilingual model for sentiment)", n, self.provenance())

        texts: list[str] = []
        where: list[int] = []
        empty: list[int] = []
        for i, row in enumerate(tr.rows):
            text = (getattr(row, "text", "") or "").strip() if row is not None else ""
            if row is None or getattr(row, "word_count", 0) == 0 or not tokenize(text):
                empty.append(i)
                continue
            texts.append(text)
            where.append(i)
        with self._lock:
            scores = self._backend.score(texts) if texts else []
        rows: list[SentimentMeasures | None] = [None] * n
        pooled = {"word_count": 0, "first_person_singular_count": 0, "absolutist_count": 0,
                  "negative_emotion_word_count": 0}
        for i, text, (neg, neu, pos, label, compound) in zip(where, texts, scores, strict=True):
            lex = count_categories(tokenize(text))
            for k in pooled:
                pooled[k] += getattr(lex, k)
            rows[i] = _measures(neg, neu, pos, label, compound, self._backend.score_kind, lex,
                                tr.rows[i], english)
        if empty:
            warnings.append(f"sentiment: {len(empty)} segment(s) without words have no "
                            "sentiment row")
        if not english:
            warnings.append(f"sentiment: transcript language {language!r}: lexical markers "
                            "(English word lists) left out")
        pooled_counts = LexicalCounts(**pooled)
        session: dict[str, Any] = {
            "score_kind": self._backend.score_kind,
            "n_scored": len(where),
            "empty_segments": empty,
            "empty_reason": "no words in the transcript of these segments" if empty else None,
            "language": language,
            "lexical": None if not english or not pooled_counts.word_count else {
                "word_count": pooled_counts.word_count,
                "first_person_singular_count": pooled_counts.first_person_singular_count,
                "absolutist_count": pooled_counts.absolutist_count,
                "negative_emotion_word_count": pooled_counts.negative_emotion_word_count,
                "first_person_singular_rate": pooled_counts.first_person_singular_rate,
                "absolutist_rate": pooled_counts.absolutist_rate,
                "negative_emotion_word_rate": pooled_counts.negative_emotion_word_rate,
            },
        }
        if isinstance(self._backend, _TransformersBackend):
            session["label_map"] = {str(k): v for k, v in self._backend.index_map.items()}
        return StreamOutput(name=self.name, status=StreamStatus.OK, provenance=self.provenance(),
                            rows=rows, session=session, warnings=warnings,
                            elapsed_s=round(time.perf_counter() - t0, 4))


def _measures(neg: float, neu: float | None, pos: float, label: str, compound: float | None,
              score_kind: str, lex: LexicalCounts, transcript_row: Any,
              english: bool) -> SentimentMeasures:
    wpm = getattr(transcript_row, "words_per_min", None)
    return SentimentMeasures(
        negative=neg, neutral=neu, positive=pos, label=label, compound=compound,
        score_kind=score_kind,  # type: ignore[arg-type]
        word_count=lex.word_count,
        words_per_min=wpm,
        first_person_singular_rate=lex.first_person_singular_rate if english else None,
        absolutist_rate=lex.absolutist_rate if english else None,
        negative_emotion_word_rate=lex.negative_emotion_word_rate if english else None,
        first_person_singular_count=lex.first_person_singular_count if english else None,
        absolutist_count=lex.absolutist_count if english else None,
        negative_emotion_word_count=lex.negative_emotion_word_count if english else None,
    )
