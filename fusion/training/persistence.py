"""Saving fitted fusion models as JSON (never pickle), with the package versions behind them."""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import ParameterError
from fusion.scoring.baseline import NormalisationSettings
from fusion.scoring.head import MODEL_FORMAT, ConfidenceSettings
from fusion.training.estimator import FusionModel

__all__ = ["package_versions", "save_model"]

# ------------------------------------------------------------------------- saving
def package_versions() -> dict[str, str]:
    """Versions of the packages a model file's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("vocalfusion", "numpy", "scipy", "scikit-learn", "pandas", "praat-parselmouth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def save_model(path: str | Path, models: Mapping[str, FusionModel], *,
               normalisation: NormalisationSettings, confidence: ConfidenceSettings,
               population_norms: Mapping[str, Any] | None = None,
               training_data: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
    """Write fitted models (one per target) as a fusion model JSON (atomically).

    Parameters
    ----------
    path : str or Path
        Must end in ``.json``.
    models : dict
        Head name → fitted :class:`FusionModel`; ``"stress"`` and ``"depression"`` are used
        by the :class:`~fusion.scoring.fuser.Fuser`; other names (e.g. ``"cortisol"``) are
        stored too.
    normalisation, confidence
        The settings the training features were computed with (copied from the prior).
    population_norms : dict, optional
        ``{"name": ..., "sha256": ...}`` of the norms the features used.
    training_data, metrics : dict, optional
        Description of the labelled data and the cross-validated metrics.
    """
    import json

    from fusion.files import atomic_write_text

    p = Path(path)
    if p.suffix.lower() != ".json":
        raise ParameterError(f"{p}: model files are JSON; use a .json file name")
    if not models:
        raise ParameterError("save_model needs at least one fitted model")
    doc = {
        "format": MODEL_FORMAT, "format_version": 1,
        "name": name or p.stem,
        "created_at": datetime.now(UTC).isoformat(),
        "package_versions": package_versions(),
        "normalisation": normalisation.model_dump(),
        "confidence": confidence.model_dump(),
        "population_norms": dict(population_norms or {}),
        "training_data": dict(training_data or {}),
        "metrics": _jsonable(metrics or {}),
        "heads": {t: m.head_.to_dict() for t, m in models.items()},
        "estimators": {t: {k: v for k, v in m.to_dict().items() if k != "head"}
                       for t, m in models.items()},
    }
    for m in models.values():
        m._check_fitted()
    atomic_write_text(p, json.dumps(doc, indent=2, allow_nan=False))
    return p


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
