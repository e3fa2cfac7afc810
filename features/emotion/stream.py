"""Acoustic emotion stream: a wav2vec2-style audio model per segment.

Three backends (config ``emotion.backend``):

``classifier`` (default)
    Any Hugging Face audio-classification model (``AutoFeatureExtractor`` +
    ``AutoModelForAudioClassification``), by hub id or local directory; default
    ``superb/wav2vec2-base-superb-er`` (wav2vec 2.0 base fine-tuned on IEMOCAP sessions for
    four classes, SUPERB emotion-recognition task; Yang et al. 2021, arXiv:2105.01051). Per
    segment: the probability of each model class mapped onto the canonical labels of
    :class:`Emotion`, the top label, the entropy of the model's class distribution in bits and
    the pooled embedding (mean over time of the last hidden state).
``dimensional``
    Arousal, dominance and valence regression in the layout of
    ``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim`` (Wagner et al. 2023, "Dawn of
    the transformer era in speech emotion recognition", IEEE TPAMI, arXiv:2203.07378):
    ``Wav2Vec2Model`` → mean over time of the last hidden state → dense → tanh → dropout →
    out_proj. Its model card defines this head in Python (``RegressionHead`` +
    ``EmotionModel``) because transformers has no class for it; the same layout is built here
    (:func:`dimensional_model_class`) and loaded from the published safetensors weights. The
    outputs are approximately in [0, 1] (the model card) in the order arousal, dominance,
    valence (``id2label`` of its config).
``measures``
    The offline measures head (:mod:`features.emotion.measures_head`): a multinomial logistic
    model over the prosody stream's per-segment measures, shipped as JSON coefficients trained
    on the CC0 EmoDB copy. No hub, no neural network; it reads the prosody rows from the
    engine's context (or measures them itself when run alone). ``probabilities`` over angry,
    bored, disgust, fearful, happy, neutral, sad and ``arousal`` = P(high arousal);
    ``valence`` is ``None`` (see the module). With a speaker reference
    (:meth:`EmotionStream.set_speaker_reference`) its speaker-normalised variant runs.

Fallback (``emotion.fallback = "measures"``; opt-in, default ``"none"`` because the head's
cross-corpus binary arousal UAR without a speaker reference, 0.72, is below the 0.75 the
project set for an offline default — see ``docs/models.md``): when the configured hub model of
the ``classifier`` or ``dimensional`` backend is not available here, :meth:`EmotionStream.load`
loads the measures head instead, logs one line saying so, puts that line in every output's
warnings and records ``backend = "measures-head"`` with ``fallback_from`` in the provenance.

Windows: a segment longer than ``window_s`` is cut into ``window_s`` windows (a last window
shorter than ``min_window_s`` is merged into the one before). The model runs on each window
and the outputs (logits, regression values, embeddings) are averaged weighted by window
duration; class probabilities are the softmax of the averaged logits.

Batching never changes a number: windows are sorted by length; a model whose feature extractor
gives no attention mask (wav2vec2-base: ``return_attention_mask=False``; its group-normalised
convolution front end would see the padding) is only ever batched with windows of *exactly*
the same length. Models with an attention mask and a layer-normalised front end
(``feat_extract_norm="layer"``, e.g. wav2vec2-large-robust) are batched with zero padding
and the mask, which leaves every valid frame unchanged. Tested: batched == one by one within
1e-4.

Memory: a batch holds at most ``batch_size`` windows *and* at most ``max_batch_s`` seconds of
(padded) audio — the convolutional front end of wav2vec2 keeps about 0.8 KB of activations per
input sample alive (512 channels at a fifth of the sample rate, twice), so eight 8-s windows
cost about 1 GB while 16 s cost about 0.2 GB. The model input of a window is computed only when
its batch runs, and a batch is pooled as soon as it has run (only the pooled vector and the
outputs of each window are kept), so memory does not grow with the length of the file. The
embedding is read from the one module that produces the last hidden state (found once at load
on a probe input), not by asking the model for every layer's hidden states. ``quantize`` works
in place and releases the memory-mapped fp32 weights file (no fp32 copy stays beside the int8
model). oneDNN's cache of convolution primitives (one per input shape, i.e. per distinct window
length) is switched off for the process when :meth:`EmotionStream.load` runs first
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` unless set; see :func:`_limit_onednn_cache`).

Label mapping (documented choices): ``neu``/``neutral`` → neutral; ``hap``/``happy``/
``happiness``/``joy`` → happy; ``exc``/``excited`` → happy (the IEMOCAP four-class convention
that SUPERB follows merges *excited* into *happy*); ``ang``/``anger`` → angry; ``sad``/
``sadness`` → sad; ``fea``/``fear`` → fearful; ``dis``/``disgust`` → disgust; ``sur``/
``surprise``/``ps`` (TESS "pleasant surprise") → surprised; ``cal``/``calm`` → calm;
``bor``/``bored``/``boredom`` → bored (EmoDB). Classes
without a canonical label (IEMOCAP ``fru`` frustration, ``contempt``, ...) are
not forced onto one: their mass is reported as ``unmapped_probability`` and, with every raw
class, in ``model_probabilities``. ``emotion.label_map`` overrides or extends the table.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.emotion.measures_head import MeasuresHead, SpeakerReference
from features.errors import ModelUnavailable, ParameterError, UnsafeModelFileError
from features.sources import ModelSource, ensure_model, resolve_model
from features.stream import Provenance, StreamOutput

if TYPE_CHECKING:  # pragma: no cover
    from features.audio.load import Audio
    from features.segments.vad import Segment

__all__ = [
    "model_offline_reason",
    "Emotion",
    "EmotionMeasures",
    "EmotionConfig",
    "EmotionStream",
    "canonical_label",
    "window_bounds",
    "dimensional_model_class",
    "save_embeddings",
    "DEFAULT_CLASSIFIER_MODEL",
    "DIMENSIONAL_MODEL",
]

log = logging.getLogger(__name__)

#: default model of the classifier backend
DEFAULT_CLASSIFIER_MODEL = "superb/wav2vec2-base-superb-er"


def model_offline_reason(model: str) -> str:
    """The one line users see when the emotion model is not here and the hub is out of reach.

    The hub error, revision and cache path go to the log and to the provenance
    (``options["unavailable_detail"]``), not to this line.
    """
    return (f"model {model} not available offline; `vocalfusion models fetch` on a networked "
            "machine (or set emotion.model to a local copy)")
#: the published dimensional model (arousal, dominance, valence); licence CC BY-NC-SA 4.0
DIMENSIONAL_MODEL = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
#: every stream works on 16 kHz audio
_SR = 16_000
#: a window whose peak is below this (about -80 dBFS) is digital silence
_SILENCE_PEAK = 1e-4


class Emotion(StrEnum):
    """Canonical emotion labels every classifier's classes are mapped onto."""

    NEUTRAL = "neutral"
    CALM = "calm"
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"
    FEARFUL = "fearful"
    DISGUST = "disgust"
    SURPRISED = "surprised"
    BORED = "bored"


_ALIASES: dict[Emotion, tuple[str, ...]] = {
    Emotion.NEUTRAL: ("neu", "neutral", "neutrality"),
    Emotion.CALM: ("cal", "calm", "calmness"),
    Emotion.HAPPY: ("hap", "happy", "happiness", "joy", "joyful", "exc", "excited",
                    "excitement"),
    Emotion.SAD: ("sad", "sadness"),
    Emotion.ANGRY: ("ang", "angry", "anger"),
    Emotion.FEARFUL: ("fea", "fear", "fearful", "fearfulness", "afraid"),
    Emotion.DISGUST: ("dis", "disgust", "disgusted"),
    Emotion.SURPRISED: ("sur", "surprise", "surprised", "ps", "pleasant surprise"),
    Emotion.BORED: ("bor", "bored", "boredom"),
}
_ALIAS_TO_LABEL: dict[str, Emotion] = {a: e for e, names in _ALIASES.items() for a in names}
_DIMENSIONS = ("arousal", "dominance", "valence")


def _norm(label: str) -> str:
    return re.sub(r"[\s_-]+", " ", str(label).strip().lower())


def canonical_label(label: str, label_map: dict[str, str] | None = None) -> Emotion | None:
    """The canonical :class:`Emotion` of a model's class name, or ``None`` when there is none.

    >>> canonical_label("hap"), canonical_label("exc"), canonical_label("fru")
    (<Emotion.HAPPY: 'happy'>, <Emotion.HAPPY: 'happy'>, None)
    """
    if label_map:
        for key, value in label_map.items():
            if _norm(key) == _norm(label):
                return Emotion(value)
    return _ALIAS_TO_LABEL.get(_norm(label))


class EmotionMeasures(BaseModel):
    """Emotion of one segment: class probabilities (canonical labels) and/or dimensions.

    Attributes
    ----------
    probabilities : dict of str to float
        Canonical label → probability, for the canonical labels the model can express (a
        label the model has no class for is absent, not 0). Sums to
        ``1 - unmapped_probability``.
    top_label : str or None
        Canonical label with the highest probability; ``None`` when the classes without a
        canonical label together outweigh it (or for the dimensional backend).
    entropy_bits : float or None
        Shannon entropy of the model's own class distribution, in bits (0 = certain;
        log2(n_classes) = uniform).
    model_probabilities : dict of str to float
        The model's own class names → probability (for traceability).
    model_top_label : str or None
        The model's own most probable class.
    unmapped_probability : float or None
        Probability mass on model classes without a canonical label.
    arousal, valence, dominance : float or None
        Dimensional backend only; approximately in [0, 1] for the audeering model.
    n_windows : int
        Number of model windows the segment was cut into.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    probabilities: dict[str, float] = Field(default_factory=dict,
                                            description="canonical label → probability")
    top_label: str | None = None
    entropy_bits: float | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    n_windows: int = 0
    model_probabilities: dict[str, float] = Field(
        default_factory=dict, description="the model's own class → probability")
    model_top_label: str | None = None
    unmapped_probability: float | None = Field(
        None, description="mass on model classes without a canonical label")


class EmotionConfig(BaseModel):
    """Settings of the acoustic emotion stream (config section ``[emotion]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: Literal["classifier", "dimensional", "measures"] = Field(
        "classifier", description="'classifier', 'dimensional' or 'measures' (offline head)")
    fallback: Literal["measures", "none"] = Field(
        "none", description="when the hub model is unavailable: 'measures' = run the "
                                "offline measures head instead (one line says so); 'none' = "
                                "skip the stream")
    measures_model: str | None = Field(
        None, description="measures head JSON; None = the shipped "
                          "features/emotion/data/emotion_measures_head.json")
    min_measured_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="measures backend: a segment with a smaller fraction of the head's "
                    "measures gets no emotion (None with a reason)")
    model: str = Field(DEFAULT_CLASSIFIER_MODEL,
                       description="hub id, local directory")
    revision: str | None = Field(
        None, description="hub branch/tag/commit; None = known safetensors pin or 'main'")
    window_s: float = Field(8.0, gt=0.5, le=60.0, description="model window length")
    min_window_s: float = Field(
        0.5, ge=0.0, description="a shorter last window is merged into the previous one")
    min_segment_s: float = Field(
        0.25, ge=0.03, description="shorter segments get no emotion (None with a reason)")
    batch_size: int = Field(8, ge=1, le=256)
    max_batch_s: float = Field(
        16.0, gt=0.0, le=3600.0,
        description="audio seconds per model batch at most (bounds memory; a longer window "
                    "runs alone)")
    allow_pickle_weights: bool = Field(
        False, description="also load pytorch_model.bin (pickle) when no safetensors exist")
    embeddings: bool = Field(
        False, description="return pooled embeddings (StreamOutput.embeddings)")
    quantize: bool = Field(False, description="int8 dynamic quantisation of Linear layers")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="model class → canonical label, overrides the table")

    @field_validator("label_map")
    @classmethod
    def _check_label_map(cls, value: dict[str, str]) -> dict[str, str]:
        valid = [e.value for e in Emotion]
        for key, label in value.items():
            if label not in valid:
                raise ValueError(f"label_map[{key!r}] = {label!r} is not a canonical label; "
                                 f"valid: {', '.join(valid)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> EmotionConfig:
        if self.min_window_s >= self.window_s:
            raise ValueError(f"min_window_s ({self.min_window_s}) must be below window_s "
                             f"({self.window_s})")
        return self


def window_bounds(n_samples: int, sr: int, window_s: float,
                  min_window_s: float = 0.5) -> list[tuple[int, int]]:
    """Cut ``n_samples`` into windows of ``window_s`` seconds (sample indices, half-open).

    A last window shorter than ``min_window_s`` is merged into the previous one, so windows
    are between ``min_window_s`` (only when the whole input is that short) and
    ``window_s + min_window_s`` long.

    >>> window_bounds(16000 * 20, 16000, 8.0)
    [(0, 128000), (128000, 256000), (256000, 320000)]
    >>> window_bounds(int(16000 * 16.3), 16000, 8.0)
    [(0, 128000), (128000, 260800)]
    """
    if n_samples <= 0:
        return []
    w = max(1, int(round(window_s * sr)))
    bounds = [(i, min(i + w, n_samples)) for i in range(0, n_samples, w)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < int(round(min_window_s * sr)):
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


@functools.lru_cache(maxsize=1)
def dimensional_model_class() -> type[Any]:
    """The audeering dimensional model layout as a ``Wav2Vec2PreTrainedModel`` subclass.

    Parameter names match the published checkpoint: ``wav2vec2.*`` (a ``Wav2Vec2Model``),
    ``classifier.dense`` and ``classifier.out_proj``. ``forward(input_values,
    attention_mask=None)`` returns ``(pooled, values)``: the mean of the last hidden state over
    (valid) frames and the ``num_labels`` regression outputs.
    """
    import torch
    from torch import nn
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        Wav2Vec2Model,
        Wav2Vec2PreTrainedModel,
    )

    class RegressionHead(nn.Module):
        """dense → tanh → dropout → out_proj over the pooled hidden state."""

        def __init__(self, config: Any) -> None:
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.dropout(x)
            x = torch.tanh(self.dense(x))
            x = self.dropout(x)
            return self.out_proj(x)

    class DimensionalEmotionModel(Wav2Vec2PreTrainedModel):
        """wav2vec 2.0 + mean pooling + regression head (audeering layout)."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: torch.Tensor,
                    attention_mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.wav2vec2(input_values, attention_mask=attention_mask)[0]
            pooled = _masked_mean(self, hidden, attention_mask)
            return pooled, self.classifier(pooled)

    return DimensionalEmotionModel


def _masked_mean(model: Any, hidden: Any, attention_mask: Any) -> Any:
    """Mean over time of ``hidden`` (B, T, H), over valid frames when a sample mask is given."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    frames = model._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
    frames = frames.to(hidden.dtype).unsqueeze(-1)
    return (hidden * frames).sum(dim=1) / frames.sum(dim=1).clamp(min=1.0)


class EmotionStream:
    """The ``emotion`` stream (see the module docstring).

    Parameters
    ----------
    config : EmotionConfig
        The ``[emotion]`` config section.
    num_threads : int
        torch intra-op threads, set in :meth:`load` (process-wide in torch).
    offline : bool, optional
        ``runtime.offline``; ``None`` honours ``HF_HUB_OFFLINE``.
    cache_dir : path, optional
        Hugging Face cache directory; default ``HF_HUB_CACHE``.

    Examples
    --------
    >>> from features.audio.load import load_audio
    >>> from features.segments.vad import Segment
    >>> stream = EmotionStream(EmotionConfig()).load()           # doctest: +SKIP
    >>> audio = load_audio("examples/jfk.flac")                   # doctest: +SKIP
    >>> out = stream.run(audio, [Segment(0.0, 5.0)], {})          # doctest: +SKIP
    >>> out.rows[0].top_label                                     # doctest: +SKIP
    """

    name = "emotion"
    requires: tuple[str, ...] = ()

    def __init__(self, config: EmotionConfig, *, num_threads: int = 2,
                 offline: bool | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.num_threads = num_threads
        self.offline = offline
        self.cache_dir = cache_dir
        self._model: Any = None
        self._fe: Any = None
        self._source: ModelSource | None = None
        self._revision: str | None = None
        self._labels: list[str] = []
        self._canonical: list[Emotion | None] = []
        self._dims: list[str] = []
        self._input_name = "input_values"
        self._pad_ok = False
        self._hidden_size: int | None = None
        self._lib_version: str | None = None
        self._unavailable_detail: str | None = None
        self._pool_module: Any = None
        self._local = threading.local()  # per thread: the pool module's last output
        self._head: MeasuresHead | None = None
        self._fallback_note: str | None = None
        self._reference: SpeakerReference | None = None
        self._own_prosody: Any = None

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> bool:
        return self._model is not None or self._head is not None

    @property
    def backend_ran(self) -> str:
        """``measures-head`` when the measures head runs (configured or fallback), else
        ``transformers-<backend>``."""
        return "measures-head" if self._head is not None else f"transformers-{self.config.backend}"

    def set_speaker_reference(self, reference: SpeakerReference | None) -> None:
        """Use the speaker-normalised measures head with this reference (``None``: raw).

        The engine passes the numbers in (e.g. from a stored speaker profile); the hub
        backends ignore it.
        """
        self._reference = reference

    def _load_head(self) -> None:
        self._head = MeasuresHead.load(self.config.measures_model)

    def load(self) -> EmotionStream:
        """Load the configured backend; fall back to the measures head if so configured.

        Raises
        ------
        ModelUnavailable
            As :meth:`_load_hub`, when ``emotion.fallback = "none"`` (or the head itself
            cannot be loaded).
        """
        if self.loaded:
            return self
        cfg = self.config
        if cfg.backend == "measures":
            self._load_head()
            return self
        try:
            return self._load_hub()
        except ModelUnavailable as exc:
            if cfg.fallback != "measures" or isinstance(exc, UnsafeModelFileError):
                raise
            self._load_head()
            self._fallback_note = (f"emotion: {str(exc).split(';')[0]}; using the offline "
                                   "measures head instead (emotion.fallback)")
            log.warning("%s", self._fallback_note)
            return self

    def _load_hub(self) -> EmotionStream:
        """Resolve, (download if allowed) and load the model once.

        Raises
        ------
        ModelUnavailable
            The model is not on this machine and cannot be downloaded now, has only pickle
            weights (:class:`~features.sources.UnsafeModelWeights`), lacks a trained head, or
            expects another sample rate. The message says what to run or set.
        """
        if self._model is not None:
            return self
        cfg = self.config
        if cfg.backend == "dimensional" and cfg.model == DEFAULT_CLASSIFIER_MODEL:
            raise ModelUnavailable(
                f"emotion.backend = 'dimensional' needs a dimensional model, but emotion.model is "
                f"the classifier {cfg.model!r}; set emotion.model = '{DIMENSIONAL_MODEL}' (or a "
                "local copy of it)")
        src = resolve_model(cfg.model, kind="transformers", revision=cfg.revision,
                            offline=self.offline, allow_pickle=cfg.allow_pickle_weights,
                            cache_dir=self.cache_dir, setting="emotion.model")
        self._source = src
        try:
            path = ensure_model(src, cache_dir=self.cache_dir, setting="emotion.model")
        except ModelUnavailable as exc:
            if type(exc) is not ModelUnavailable or src.origin != "hub-download":
                raise
            # a hub model missing here and no hub: one short line for users; the full
            # story (hub error, revision, cache) goes to the log and to the provenance
            self._unavailable_detail = str(exc)
            log.info("emotion model unavailable: %s", exc)
            raise ModelUnavailable(model_offline_reason(cfg.model)) from None
        if src.origin == "hub-download":  # downloaded just now: describe the cached copy
            src = resolve_model(cfg.model, kind="transformers", revision=cfg.revision,
                                offline=True, allow_pickle=cfg.allow_pickle_weights,
                                cache_dir=self.cache_dir, setting="emotion.model")
            self._source = src
        if not (path / "preprocessor_config.json").is_file():
            raise ModelUnavailable(
                f"emotion.model {cfg.model!r}: {path} has no preprocessor_config.json (the "
                "feature extractor settings); use a complete audio-classification model "
                "directory")
        try:
            import torch
            import transformers
            from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        except ImportError as exc:
            raise ModelUnavailable(
                f"the emotion stream needs torch and transformers ({exc}); run "
                "`pip install torch transformers`") from None
        torch.set_num_threads(max(1, int(self.num_threads)))
        _limit_onednn_cache()
        self._lib_version = f"transformers {transformers.__version__}; torch {torch.__version__}"
        use_safetensors = None if cfg.allow_pickle_weights else True
        try:
            fe = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
            if cfg.backend == "dimensional":
                cls = dimensional_model_class()
                model, info = cls.from_pretrained(str(path), local_files_only=True,
                                                  use_safetensors=use_safetensors,
                                                  output_loading_info=True)
            else:
                model, info = AutoModelForAudioClassification.from_pretrained(
                    str(path), local_files_only=True, use_safetensors=use_safetensors,
                    output_loading_info=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            what = ("an audio-classification" if cfg.backend == "classifier"
                    else "an audeering-style dimensional")
            raise ModelUnavailable(
                f"emotion.model {cfg.model!r} ({path}) could not be loaded as {what} model: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        missing = sorted(k for k in info.get("missing_keys", ()) if "masked_spec_embed" not in k)
        if missing:
            kind = ("emotion classifier" if cfg.backend == "classifier"
                    else "dimensional emotion model")
            raise ModelUnavailable(
                f"emotion.model {cfg.model!r} ({path}) has no trained weights for "
                f"{', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}: it is not a "
                f"fine-tuned {kind} (a random head would give meaningless numbers)")
        sr = int(getattr(fe, "sampling_rate", _SR) or _SR)
        if sr != _SR:
            raise ModelUnavailable(f"emotion.model {cfg.model!r} expects {sr} Hz audio; "
                                   f"vocalfusion streams are {_SR} Hz")
        model.eval()
        id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
        n_out = int(model.config.num_labels)
        labels = [id2label.get(i, f"LABEL_{i}") for i in range(n_out)]
        if cfg.backend == "dimensional":
            names = [_norm(lab) for lab in labels]
            if sorted(names) == sorted(_DIMENSIONS):
                self._dims = names
            elif n_out == 3:
                self._dims = list(_DIMENSIONS)  # model-card order: arousal, dominance, valence
                log.warning("emotion.model %s labels its outputs %s; assuming the audeering "
                            "order arousal, dominance, valence", cfg.model, labels)
            else:
                raise ModelUnavailable(
                    f"emotion.model {cfg.model!r} has {n_out} outputs; the dimensional backend "
                    "needs 3 (arousal, dominance, valence)")
        else:
            self._canonical = [canonical_label(lab, cfg.label_map) for lab in labels]
            if not any(self._canonical):
                log.warning("emotion.model %s: none of its classes %s has a canonical emotion "
                            "label; set emotion.label_map", cfg.model, labels)
        self._labels = labels
        if cfg.quantize:
            _quantize_in_place(model)
            gc.collect()  # the replaced fp32 layers sit in reference cycles (mapping held)
        names = list(getattr(fe, "model_input_names", None) or ["input_values"])
        self._input_name = names[0]
        self._fe = fe
        if cfg.backend == "classifier":
            self._pool_module = self._find_pool_module(model)
            if self._pool_module is not None:
                self._pool_module.register_forward_hook(self._keep_last_hidden)
        self._pad_ok = bool(
            getattr(fe, "return_attention_mask", False)
            and getattr(model.config, "feat_extract_norm", None) == "layer"
            and hasattr(model, "_get_feature_vector_attention_mask")
            and self._input_name == "input_values")
        self._hidden_size = int(getattr(model.config, "hidden_size", 0)) or None
        self._revision = src.commit or _content_hash(path)
        self._model = model
        return self

    def _find_pool_module(self, model: Any) -> Any:
        """The submodule whose output is the model's last hidden state, or ``None``.

        The embedding is the mean over time of ``hidden_states[-1]``. Asking the model for
        ``output_hidden_states`` keeps every layer's states of the whole batch alive until the
        forward returns; a forward hook on the module that produces the last one keeps none.
        Which module that is depends on the architecture (the last encoder layer, the encoder
        or the base model; transformers 5 records wav2vec2's ``hidden_states[-1]`` *before* the
        final layer norm of stable-layer-norm encoders), so it is decided here on a one-second
        probe input: the first candidate whose output equals ``hidden_states[-1]`` exactly.
        ``None`` (no candidate matches, or the model gives no hidden states): ``infer_windows``
        asks for ``output_hidden_states`` as before.
        """
        import torch

        base = getattr(model, "base_model", None)
        encoder = getattr(base, "encoder", None)
        layers = getattr(encoder, "layers", None) or getattr(encoder, "layer", None)
        candidates = [m for m in ((layers[-1] if layers is not None and len(layers) else None),
                                  encoder, (base if base is not model else None))
                      if isinstance(m, torch.nn.Module)]
        if not candidates:
            return None
        rng = np.random.default_rng(0)
        probe = (0.1 * rng.standard_normal(_SR)).astype(np.float32)
        x = torch.from_numpy(self._features(probe)[None])
        seen: dict[int, Any] = {}
        hooks = [m.register_forward_hook(functools.partial(_keep_output, seen, k))
                 for k, m in enumerate(candidates)]
        try:
            with torch.inference_mode():
                res = model(**{self._input_name: x}, output_hidden_states=True)
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to hidden_states
            log.debug("emotion: probe forward failed (%s); using output_hidden_states", exc)
            return None
        finally:
            for h in hooks:
                h.remove()
        states = getattr(res, "hidden_states", None)
        if not states:
            return None
        last = states[-1]
        for k, m in enumerate(candidates):
            out = seen.get(k)
            if (isinstance(out, torch.Tensor) and out.shape == last.shape
                    and torch.equal(out, last)):
                return m
        return None

    def _keep_last_hidden(self, module: Any, inputs: Any, output: Any) -> None:
        """Forward hook on the pool module: keep its output for :meth:`_forward`.

        Thread-local, because one loaded stream may serve several threads at once (the
        server's workers share one analyzer) and hooks run in the thread that calls the model.
        """
        self._local.hidden = _first_output(output)

    def provenance(self) -> Provenance:
        """Backend, model id, revision (hub commit or sha256 of local weights) and options."""
        src = self._source
        cfg = self.config
        if self._head is not None:
            head = self._head
            return Provenance(
                backend="measures-head", model_id=head.spec.name,
                revision=f"sha256:{head.sha256}", library_version=None,
                options={
                    "path": str(head.path) if head.path else None,
                    "variant": "speaker" if self._reference is not None else "raw",
                    "labels": list(head.labels),
                    "min_measured_fraction": cfg.min_measured_fraction,
                    "min_segment_s": cfg.min_segment_s,
                    **({"fallback_from": cfg.model, "fallback_reason": self._fallback_note}
                       if self._fallback_note else {}),
                    **({"unavailable_detail": self._unavailable_detail}
                       if self._unavailable_detail else {}),
                })
        return Provenance(
            backend=f"transformers-{cfg.backend}",
            model_id=cfg.model,
            revision=self._revision or (src.commit or src.revision if src else cfg.revision),
            library_version=self._lib_version,
            options={
                "window_s": cfg.window_s,
                "min_window_s": cfg.min_window_s,
                "min_segment_s": cfg.min_segment_s,
                "batch_size": cfg.batch_size,
                "max_batch_s": cfg.max_batch_s,
                "quantize": cfg.quantize,
                "padded_batches": self._pad_ok,
                "origin": src.origin if src else None,
                "weights": src.weights if src else None,
                "model_labels": list(self._labels),
                "canonical_labels": [c.value if c else None for c in self._canonical],
                **({"unavailable_detail": self._unavailable_detail}
                   if self._unavailable_detail else {}),
            })

    # ------------------------------------------------------------------ inference
    def _features(self, y: np.ndarray) -> np.ndarray:
        out = self._fe(y, sampling_rate=_SR, return_tensors="np")
        return np.asarray(out[self._input_name][0], dtype=np.float32)

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Index batches of windows of the given lengths (samples).

        Sorted by length, longest first; only windows of equal length share a batch unless
        padding is safe; at most ``batch_size`` windows and at most ``max_batch_s`` seconds of
        (padded) audio per batch (a single longer window forms a batch of its own).
        """
        cfg = self.config
        cap = cfg.max_batch_s * _SR
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(0 if self._pad_ok else int(lengths[i]), []).append(i)
        batches: list[list[int]] = []
        for group in groups.values():
            batch: list[int] = []
            for i in group:  # longest first: a batch pads to the length of its first window
                if batch and (len(batch) >= cfg.batch_size
                              or (len(batch) + 1) * lengths[batch[0]] > cap):
                    batches.append(batch)
                    batch = []
                batch.append(i)
            batches.append(batch)
        return batches

    def _inputs(self, arrays: Sequence[np.ndarray]) -> tuple[Any, Any]:
        """Model input (and sample mask when padded) of one batch of feature arrays."""
        import torch

        if len({a.shape for a in arrays}) == 1:
            return torch.from_numpy(np.stack(arrays)), None
        # _pad_ok only: zero padding + attention mask
        length = max(a.shape[0] for a in arrays)
        pad = float(getattr(self._fe, "padding_value", 0.0))
        xs = np.full((len(arrays), length), pad, dtype=np.float32)
        ms = np.zeros((len(arrays), length), dtype=np.int64)
        for j, a in enumerate(arrays):
            xs[j, :a.shape[0]] = a
            ms[j, :a.shape[0]] = 1
        return torch.from_numpy(xs), torch.from_numpy(ms)

    def _forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
        """Outputs (logits or regression values) and pooled embeddings of one batch."""
        if self.config.backend == "dimensional":
            pooled, values = self._model(x, attention_mask=mask)
            return values, pooled
        kwargs = {self._input_name: x}
        if mask is not None:
            kwargs["attention_mask"] = mask
        if self._pool_module is None:
            res = self._model(**kwargs, output_hidden_states=True)
            states = getattr(res, "hidden_states", None)
            pooled = (_masked_mean(self._model, states[-1], mask)
                      if states is not None else None)
            return res.logits, pooled
        self._local.hidden = None
        res = self._model(**kwargs)
        hidden, self._local.hidden = self._local.hidden, None  # set by _keep_last_hidden
        if hidden is None:
            raise RuntimeError("emotion: the model's last hidden state was not captured")
        return res.logits, _masked_mean(self._model, hidden, mask)

    def infer_windows(self, windows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs and pooled embeddings of raw 16 kHz windows.

        The model input of a window is computed when its batch runs; only the outputs and the
        pooled vector of each window are kept.

        Returns
        -------
        outputs : ndarray, shape (n, n_outputs), float64
            Logits (classifier) or regression values (dimensional).
        embeddings : ndarray, shape (n, hidden), float32
            Mean over time of the last hidden state (NaN where the model gives none).
        """
        import torch

        if self._model is None:
            self.load()
        n = len(windows)
        n_out = len(self._labels)
        hidden = self._hidden_size or 0
        outputs = np.full((n, n_out), np.nan)
        embs = np.full((n, hidden), np.nan, dtype=np.float32)
        if n == 0:
            return outputs, embs
        with torch.inference_mode():
            for batch in self._batches([len(w) for w in windows]):
                feats = [self._features(np.asarray(windows[i], dtype=np.float32))
                         for i in batch]
                for part in self._same_shape(batch, feats):
                    values, pooled = self._forward(*self._inputs([feats[j] for j in part]))
                    rows = [batch[j] for j in part]
                    outputs[rows] = values.detach().double().numpy()
                    if pooled is not None:
                        if embs.shape[1] != pooled.shape[-1]:
                            embs = np.full((n, pooled.shape[-1]), np.nan, dtype=np.float32)
                            self._hidden_size = int(pooled.shape[-1])
                        embs[rows] = pooled.detach().float().numpy()
                    del values, pooled
        return outputs, embs

    def _same_shape(self, batch: Sequence[int], feats: Sequence[np.ndarray]
                    ) -> list[list[int]]:
        """Positions in ``batch`` split by model-input shape (one part when padding is safe).

        Windows of equal length give inputs of equal shape for every feature extractor this
        stream knows; the split only guards an extractor that would not.
        """
        if self._pad_ok:
            return [list(range(len(batch)))]
        parts: dict[tuple[int, ...], list[int]] = {}
        for j, f in enumerate(feats):
            parts.setdefault(tuple(f.shape), []).append(j)
        return list(parts.values())

    def _row(self, values: np.ndarray, n_windows: int) -> EmotionMeasures:
        if self.config.backend == "dimensional":
            dims = {name: float(values[i]) for i, name in enumerate(self._dims)}
            return EmotionMeasures(arousal=dims["arousal"], valence=dims["valence"],
                                   dominance=dims["dominance"], n_windows=n_windows)
        z = values - np.max(values)
        p = np.exp(z)
        p /= p.sum()
        model_probs = {lab: float(p[i]) for i, lab in enumerate(self._labels)}
        canon: dict[str, float] = {}
        unmapped = 0.0
        for i, c in enumerate(self._canonical):
            if c is None:
                unmapped += float(p[i])
            else:
                canon[c.value] = canon.get(c.value, 0.0) + float(p[i])
        nz = p[p > 0]
        entropy = float(-(nz * np.log2(nz)).sum())
        top = max(canon, key=canon.__getitem__) if canon else None
        if top is not None and unmapped > canon[top]:
            top = None
        return EmotionMeasures(
            probabilities=canon, top_label=top, entropy_bits=max(0.0, entropy),
            n_windows=n_windows, model_probabilities=model_probs,
            model_top_label=self._labels[int(np.argmax(p))], unmapped_probability=unmapped)

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput]) -> StreamOutput:
        """One :class:`EmotionMeasures` (or ``None`` with a warning) per segment, in order.

        Segments shorter than ``min_segment_s`` or digitally silent get ``None``. With
        ``embeddings = true`` the pooled embeddings are in ``StreamOutput.embeddings``
        (float32, shape (n_segments, hidden), NaN rows where a segment has no output).
        """
        t0 = time.perf_counter()
        if not self.loaded:
            self.load()
        if self._head is not None:
            return self._run_head(audio, segments, context, t0)
        cfg = self.config
        sr = int(audio.sr)
        if sr != _SR:
            raise ParameterError(f"emotion stream needs {_SR} Hz audio; got sr={sr}")
        warnings: list[str] = []
        windows: list[np.ndarray] = []
        owners: list[tuple[int, float]] = []  # (segment index, duration weight)
        n_win = [0] * len(segments)
        for k, seg in enumerate(segments):
            y = audio.crop(seg.start_s, seg.end_s)
            where = f"segment {k} [{seg.start_s:.2f}–{seg.end_s:.2f} s]"
            dur = len(y) / sr
            if dur < cfg.min_segment_s:
                warnings.append(f"{where}: too short for the emotion model ({dur:.3f} s < "
                                f"emotion.min_segment_s = {cfg.min_segment_s} s)")
                continue
            if not np.all(np.isfinite(y)):
                warnings.append(f"{where}: contains NaN/Inf samples; no emotion measured")
                continue
            if float(np.max(np.abs(y))) < _SILENCE_PEAK:
                warnings.append(f"{where}: digital silence; no emotion measured")
                continue
            for i0, i1 in window_bounds(len(y), sr, cfg.window_s, cfg.min_window_s):
                windows.append(y[i0:i1])
                owners.append((k, float(i1 - i0)))
                n_win[k] += 1
        outputs, embs = self.infer_windows(windows)
        n_out = outputs.shape[1]
        acc = np.zeros((len(segments), n_out))
        acc_emb = np.zeros((len(segments), embs.shape[1]))
        weight = np.zeros(len(segments))
        for j, (k, w) in enumerate(owners):
            acc[k] += w * outputs[j]
            acc_emb[k] += w * embs[j]
            weight[k] += w
        rows: list[EmotionMeasures | None] = []
        seg_emb = np.full((len(segments), embs.shape[1]), np.nan, dtype=np.float32)
        for k in range(len(segments)):
            if weight[k] == 0:
                rows.append(None)
                continue
            values = acc[k] / weight[k]
            if not np.all(np.isfinite(values)):
                rows.append(None)
                warnings.append(f"segment {k}: the model returned non-finite outputs")
                continue
            rows.append(self._row(values, n_win[k]))
            seg_emb[k] = (acc_emb[k] / weight[k]).astype(np.float32)
        return StreamOutput(name=self.name, provenance=self.provenance(), rows=rows,
                            embeddings=seg_emb if cfg.embeddings else None, warnings=warnings,
                            elapsed_s=time.perf_counter() - t0)

    def _prosody_rows(self, audio: Audio, segments: Sequence[Segment],
                      context: dict[str, StreamOutput]) -> tuple[list[Any], str | None]:
        """The prosody rows of the engine's context, or measured here when there are none."""
        out = context.get("prosody")
        if out is not None and out.status == "ok" and len(out.rows) == len(segments):
            return list(out.rows), None
        from features.prosody.stream import ProsodyConfig, ProsodyStream

        if self._own_prosody is None:
            self._own_prosody = ProsodyStream(ProsodyConfig(), num_threads=self.num_threads)
            self._own_prosody.load()
        own = self._own_prosody.run(audio, segments, {})
        return list(own.rows), ("emotion: no prosody rows in the context; the measures head "
                                "measured them itself (default prosody settings)")

    def _run_head(self, audio: Audio, segments: Sequence[Segment],
                  context: dict[str, StreamOutput], t0: float) -> StreamOutput:
        """The measures backend: one :class:`EmotionMeasures` (or ``None``) per segment."""
        head = self._head
        assert head is not None
        cfg = self.config
        warnings: list[str] = [self._fallback_note] if self._fallback_note else []
        prosody, note = self._prosody_rows(audio, segments, context)
        if note:
            warnings.append(note)
        rows: list[EmotionMeasures | None] = []
        for k, (seg, pro) in enumerate(zip(segments, prosody, strict=True)):
            where = f"segment {k} [{seg.start_s:.2f}–{seg.end_s:.2f} s]"
            dur = seg.end_s - seg.start_s
            if dur < cfg.min_segment_s:
                warnings.append(f"{where}: too short for the emotion head ({dur:.3f} s < "
                                f"emotion.min_segment_s = {cfg.min_segment_s} s)")
                rows.append(None)
                continue
            if pro is None:
                warnings.append(f"{where}: no prosody measures; no emotion measured")
                rows.append(None)
                continue
            rec = pro.model_dump() if isinstance(pro, BaseModel) else dict(pro)
            frac = float(head.present_fraction([rec], self._reference)[0])
            if frac < cfg.min_measured_fraction:
                warnings.append(f"{where}: only {frac:.0%} of the head's measures present "
                                f"(< emotion.min_measured_fraction = "
                                f"{cfg.min_measured_fraction}); no emotion measured")
                rows.append(None)
                continue
            p = head.predict_proba([rec], self._reference)
            arousal = float(head.arousal(p)[0])
            probs = {lab: float(p[0, i]) for i, lab in enumerate(head.labels)}
            nz = p[0][p[0] > 0]
            top = max(probs, key=probs.__getitem__)
            rows.append(EmotionMeasures(
                probabilities=probs, top_label=top,
                entropy_bits=max(0.0, float(-(nz * np.log2(nz)).sum())),
                arousal=min(1.0, max(0.0, arousal)), valence=None, n_windows=1,
                model_probabilities=dict(probs), model_top_label=top,
                unmapped_probability=0.0))
        return StreamOutput(name=self.name, provenance=self.provenance(), rows=rows,
                            warnings=warnings, elapsed_s=time.perf_counter() - t0)


def _limit_onednn_cache() -> None:
    """Switch off oneDNN's primitive cache for this process unless the user configured it.

    torch runs the wav2vec2 convolutions through oneDNN, which caches the primitive it builds
    for every input shape (up to 1024). Each distinct window length is a new shape and each
    cached primitive kept about 15 MB resident here (wav2vec2-base, 1-8 s windows), so memory
    grew with every new segment length — with the length of a file and the number of files.
    Building a primitive costs far less than running it on seconds of audio. oneDNN reads
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` when it first uses the cache, so this only takes
    effect when the process has not run a oneDNN primitive before; an explicit setting in the
    environment is left alone.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


def _first_output(output: Any) -> Any:
    """A module's output tensor (the first item of a tuple or transformers ModelOutput)."""
    if output is None or hasattr(output, "shape"):
        return output
    return output[0]


def _keep_output(store: dict[int, Any], key: int, module: Any, inputs: Any,
                 output: Any) -> None:
    """Forward hook: keep a module's output tensor in ``store[key]``."""
    store[key] = _first_output(output)


def _quantize_in_place(model: Any) -> None:
    """Int8 dynamic quantisation of every ``Linear`` layer of ``model``, in place.

    ``quantize_dynamic`` without ``inplace`` deep-copies the model, and the copy's packed int8
    layers keep references to the original fp32 biases; with safetensors weights those are
    views of the memory-mapped weights file, so the whole file (every page quantisation has
    read) stayed resident beside the int8 copy. Here the biases are copied out of the mapping
    first, the layers are replaced in place, and the remaining fp32 tensors (convolutions,
    norms, embeddings) are copied too, so nothing references the mapping any more and it is
    released once the replaced layers are garbage-collected (the caller runs ``gc.collect()``
    after this returns; they sit in reference cycles). The numbers are those of
    ``quantize_dynamic(model, {Linear}, qint8)``.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # torch.ao.quantization warns it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, torch.nn.Linear) and layer.bias is not None:
                    layer.bias.data = layer.bias.data.clone()
            quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.data = tensor.data.clone()


def _content_hash(path: Path) -> str | None:
    """``sha256:<hex>`` of the weights file of a local model directory (its revision)."""
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        f = path / name
        if f.is_file():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return f"sha256:{h.hexdigest()}"
    return None


def save_embeddings(path: str | os.PathLike[str], embeddings: np.ndarray,
                    segments: Sequence[Segment], fmt: Literal["npy", "parquet"] = "npy"
                    ) -> Path:
    """Write segment embeddings keyed by segment (index, start_s, end_s), atomically.

    Parameters
    ----------
    path : path
        Output file (written via a temporary file in the same folder, then renamed).
    embeddings : ndarray, shape (n_segments, hidden)
        ``StreamOutput.embeddings``; NaN rows are kept (segment without output).
    segments : sequence of Segment
        The segments the rows belong to (same order and length).
    fmt : {"npy", "parquet"}
        ``npy``: one structured array with fields ``segment`` (int64), ``start_s``,
        ``end_s`` (float64) and ``embedding`` (float32, (hidden,)); loads with
        ``np.load(path)`` (no pickle). ``parquet``: columns ``segment``, ``start_s``,
        ``end_s``, ``emb_0000`` … (float32).
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(segments):
        raise ParameterError(f"embeddings must have shape (n_segments={len(segments)}, hidden); "
                             f"got {emb.shape}")
    if fmt not in ("npy", "parquet"):
        raise ParameterError(f"fmt must be 'npy' or 'parquet'; got {fmt!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if fmt == "npy":
                dtype = np.dtype([("segment", np.int64), ("start_s", np.float64),
                                  ("end_s", np.float64), ("embedding", np.float32,
                                                          (emb.shape[1],))])
                rec = np.zeros(len(segments), dtype=dtype)
                rec["segment"] = np.arange(len(segments))
                rec["start_s"] = [s.start_s for s in segments]
                rec["end_s"] = [s.end_s for s in segments]
                rec["embedding"] = emb
                np.save(fh, rec, allow_pickle=False)
            else:
                import pandas as pd

                cols: dict[str, Any] = {
                    "segment": np.arange(len(segments), dtype=np.int64),
                    "start_s": np.array([s.start_s for s in segments], dtype=np.float64),
                    "end_s": np.array([s.end_s for s in segments], dtype=np.float64),
                }
                width = max(4, len(str(emb.shape[1])))
                for j in range(emb.shape[1]):
                    cols[f"emb_{j:0{width}d}"] = emb[:, j]
                pd.DataFrame(cols).to_parquet(fh, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
