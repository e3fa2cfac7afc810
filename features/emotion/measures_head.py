"""The offline emotion backend: a multinomial logistic model over the engine's own measures.

No hub, no neural network: the inputs are the prosody stream's per-segment measures (F0,
timing, voice quality, formants, spectral balance; see ``docs/measures.md``), the model is a
multinomial logistic regression fitted with scikit-learn by
``benchmarks/train_emotion_head.py`` and shipped as JSON coefficients
(``features/emotion/data/emotion_measures_head.json``; never pickle). The file holds its
training data, licence and evaluation.

Two variants live in one file:

``raw``
    The measures as they are (z-scored with the training corpus's mean and SD). Used when no
    speaker reference is given.
``speaker``
    Every measure as a z-score against a :class:`SpeakerReference` (the speaker's own
    neutral speech: mean and SD per measure), which removes the speaker's habitual pitch,
    loudness and voice quality. Used when the engine hands the stream a reference (the
    engine passes the numbers in; ``features`` never imports ``fusion``).

Outputs per segment: ``probabilities`` over the training labels (EmoDB: angry, bored,
disgust, fearful, happy, neutral, sad), ``arousal`` = P(high arousal) = (P(angry) +
P(fearful) + P(happy)) / (1 − P(disgust)) — high: anger, fear, happiness (and surprise);
low: neutral, sadness, boredom (and calm); disgust is in neither class (its arousal is rated
medium and varies between corpora), so its mass is left out and the rest renormalised — and
``valence`` ``None``: EmoDB's seven acted categories do not give a valence label that acoustic
measures separate (happiness and anger are acoustically close; see ``docs/models.md``).

Integrity: the file carries ``sha256`` of its canonical content (every key but ``sha256``,
serialised with sorted keys); a file whose content does not match (hand-edited or damaged) is
refused, as is anything that is not UTF-8 JSON (e.g. a pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.errors import ModelUnavailable, UnsafeModelFileError

__all__ = [
    "HEAD_FORMAT",
    "DEFAULT_HEAD_PATH",
    "HIGH_AROUSAL",
    "LOW_AROUSAL",
    "SpeakerReference",
    "HeadVariant",
    "MeasuresHeadFile",
    "MeasuresHead",
    "canonical_json_sha256",
]

HEAD_FORMAT = "vocalfusion-emotion-measures-head"
#: the shipped head (trained only on the CC0 EmoDB copy)
DEFAULT_HEAD_PATH = Path(__file__).resolve().parent / "data" / "emotion_measures_head.json"
HIGH_AROUSAL: frozenset[str] = frozenset({"angry", "fearful", "happy", "surprised"})
LOW_AROUSAL: frozenset[str] = frozenset({"neutral", "sad", "bored", "calm"})
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch zip archives


class SpeakerReference(BaseModel):
    """A speaker's reference (neutral) speech: mean and SD of each measure.

    Attributes
    ----------
    means, sds : dict of str to float
        Measure name (a prosody field, e.g. ``f0_mean_st``) → mean and SD over the speaker's
        reference segments.
    n_segments : int
        Number of reference segments.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    means: dict[str, float]
    sds: dict[str, float]
    n_segments: int = Field(ge=1)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any] | BaseModel]) -> SpeakerReference:
        """Reference from measure rows (``ProsodyMeasures`` or dicts); missing values skipped.

        A measure present in fewer than two rows gets a mean but no SD.
        """
        dicts = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in rows]
        if not dicts:
            raise ValueError("a speaker reference needs at least one segment")
        keys = {k for d in dicts for k, v in d.items() if _finite(v) is not None}
        means: dict[str, float] = {}
        sds: dict[str, float] = {}
        for k in sorted(keys):
            vals = np.array([v for d in dicts if (v := _finite(d.get(k))) is not None])
            means[k] = float(vals.mean())
            if len(vals) >= 2:
                sds[k] = float(vals.std(ddof=1))
        return cls(means=means, sds=sds, n_segments=len(dicts))


class HeadVariant(BaseModel):
    """One fitted multinomial logistic model (input transform + coefficients)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    normalisation: str = Field(description="'raw' or 'speaker'")
    features: list[str]
    impute: list[float] = Field(description="value (after normalisation) for a missing measure")
    center: list[float]
    scale: list[float]
    sd_floor: list[float] = Field(
        default_factory=list, description="speaker variant: smallest reference SD per feature")
    coef: list[list[float]] = Field(description="(n_labels, n_features)")
    intercept: list[float]

    @model_validator(mode="after")
    def _shapes(self) -> HeadVariant:
        n = len(self.features)
        for name in ("impute", "center", "scale"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n} "
                                 "features")
        if self.normalisation not in ("raw", "speaker"):
            raise ValueError(f"normalisation must be 'raw' or 'speaker'; got "
                             f"{self.normalisation!r}")
        if self.normalisation == "speaker" and len(self.sd_floor) != n:
            raise ValueError(f"sd_floor has {len(self.sd_floor)} values for {n} features")
        if any(len(row) != n for row in self.coef):
            raise ValueError(f"every coef row needs {n} values")
        if len(self.intercept) != len(self.coef):
            raise ValueError("intercept and coef need one entry per label")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale values must be > 0")
        return self


class MeasuresHeadFile(BaseModel):
    """The JSON file of the measures head (format ``vocalfusion-emotion-measures-head``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    format_version: int
    name: str
    labels: list[str]
    arousal: dict[str, Any]
    valence: dict[str, Any]
    variants: dict[str, HeadVariant]
    training: dict[str, Any]
    licence: dict[str, Any]
    evaluation: dict[str, Any]
    calibration_status: str
    sha256: str

    @model_validator(mode="after")
    def _check(self) -> MeasuresHeadFile:
        if self.format != HEAD_FORMAT or self.format_version != 1:
            raise ValueError(f"format must be {HEAD_FORMAT!r} version 1; got "
                             f"{self.format!r} version {self.format_version}")
        if "raw" not in self.variants:
            raise ValueError("variants needs a 'raw' model")
        for key, var in self.variants.items():
            if len(var.coef) != len(self.labels):
                raise ValueError(f"variants.{key}: {len(var.coef)} coef rows for "
                                 f"{len(self.labels)} labels")
        return self


def canonical_json_sha256(content: Mapping[str, Any]) -> str:
    """``sha256`` of ``content`` without its ``sha256`` key, as sorted-key compact JSON."""
    body = {k: v for k, v in content.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class MeasuresHead:
    """A loaded measures head.

    Parameters
    ----------
    spec : MeasuresHeadFile
        The validated file content.
    path : Path, optional
        Where it was read from (provenance).
    """

    def __init__(self, spec: MeasuresHeadFile, path: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.labels = list(spec.labels)
        self._high = [i for i, lab in enumerate(self.labels) if lab in HIGH_AROUSAL]
        self._low = [i for i, lab in enumerate(self.labels) if lab in LOW_AROUSAL]
        if not self._high or not self._low:
            raise ModelUnavailable(f"emotion measures head {path}: labels {self.labels} need "
                                   "at least one high- and one low-arousal label")

    @classmethod
    def load(cls, path: str | Path | None = None) -> MeasuresHead:
        """Read and verify a head file (default: the shipped one).

        Raises
        ------
        UnsafeModelFileError
            The file is a pickle (or a zip archive), not JSON.
        ModelUnavailable
            The file is missing, not UTF-8 JSON, fails validation, or its ``sha256`` does not
            match its content (tampered or damaged).
        """
        p = Path(path) if path is not None else DEFAULT_HEAD_PATH
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ModelUnavailable(f"emotion.measures_model {p}: cannot read ({exc})") from None
        if raw.startswith(_PICKLE_MAGIC):
            raise UnsafeModelFileError(
                f"emotion.measures_model {p} looks like a pickle/zip archive; only the JSON "
                "coefficient format is loaded (pickle is never unpickled)")
        try:
            content = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelUnavailable(f"emotion.measures_model {p} is not UTF-8 JSON: {exc}") from None
        if not isinstance(content, dict):
            raise ModelUnavailable(f"emotion.measures_model {p}: expected a JSON object")
        digest = canonical_json_sha256(content)
        if content.get("sha256") != digest:
            raise ModelUnavailable(
                f"emotion.measures_model {p}: sha256 {content.get('sha256')!r} does not match "
                f"its content ({digest}); the file was edited or damaged — refit it with "
                "benchmarks/train_emotion_head.py")
        try:
            spec = MeasuresHeadFile.model_validate(content)
        except ValidationError as exc:
            raise ModelUnavailable(f"emotion.measures_model {p} is not a valid head file: "
                                   f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
                                   ) from None
        return cls(spec, p)

    @property
    def sha256(self) -> str:
        return self.spec.sha256

    def variant_for(self, reference: SpeakerReference | None) -> HeadVariant:
        """The ``speaker`` variant when a reference is given (and shipped), else ``raw``."""
        if reference is not None and "speaker" in self.spec.variants:
            return self.spec.variants["speaker"]
        return self.spec.variants["raw"]

    def design(self, rows: Sequence[Mapping[str, Any]], variant: HeadVariant,
               reference: SpeakerReference | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Standardised design matrix and the fraction of measures present per row.

        Missing measures (and, for the speaker variant, measures the reference lacks) take
        the variant's ``impute`` value.
        """
        n, m = len(rows), len(variant.features)
        x = np.empty((n, m))
        present = np.zeros(n)
        for i, row in enumerate(rows):
            for j, name in enumerate(variant.features):
                v = _finite(row.get(name))
                if v is not None and variant.normalisation == "speaker":
                    mu = reference.means.get(name) if reference is not None else None
                    if mu is None:
                        v = None
                    else:
                        sd = (reference.sds.get(name) if reference is not None else None) or 0.0
                        v = (v - mu) / max(sd, variant.sd_floor[j])
                if v is None:
                    x[i, j] = variant.impute[j]
                else:
                    x[i, j] = v
                    present[i] += 1
        x = (x - np.asarray(variant.center)) / np.asarray(variant.scale)
        return np.clip(x, -6.0, 6.0), present / max(m, 1)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]],
                      reference: SpeakerReference | None = None) -> np.ndarray:
        """Class probabilities, shape (n_rows, n_labels), rows summing to 1."""
        var = self.variant_for(reference)
        x, _ = self.design(rows, var, reference)
        z = x @ np.asarray(var.coef).T + np.asarray(var.intercept)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def arousal(self, proba: np.ndarray) -> np.ndarray:
        """P(high arousal) per row: high-arousal mass over high + low mass (disgust left out)."""
        hi = proba[:, self._high].sum(axis=1)
        lo = proba[:, self._low].sum(axis=1)
        return np.asarray(hi / np.maximum(hi + lo, 1e-12))

    def present_fraction(self, rows: Sequence[Mapping[str, Any]],
                         reference: SpeakerReference | None = None) -> np.ndarray:
        """Fraction of the variant's measures each row has."""
        var = self.variant_for(reference)
        return self.design(rows, var, reference)[1]
