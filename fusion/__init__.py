"""vocalfusion: time-aligned vocal-biomarker measurements from recorded speech.

Public API::

    import fusion
    result = fusion.analyze("examples/jfk.flac")   # SessionResult
    df = result.to_dataframe()                       # MultiIndex (file, start, end)

``import fusion`` is light: models and heavy libraries (torch, transformers, Whisper) load only
when an :class:`Analyzer` is loaded, and only for the streams that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "analyze",
    "Analyzer",
    "AnalysisRun",
    "load_config",
    "Config",
    "SessionResult",
    "SegmentResult",
    "__version__",
]

if TYPE_CHECKING:
    from fusion.config import Config, load_config
    from fusion.engine.analyzer import AnalysisRun, Analyzer, analyze
    from fusion.schema import SegmentResult, SessionResult

_LAZY = {
    "analyze": "fusion.engine.analyzer",
    "Analyzer": "fusion.engine.analyzer",
    "AnalysisRun": "fusion.engine.analyzer",
    "load_config": "fusion.config",
    "Config": "fusion.config",
    "SessionResult": "fusion.schema",
    "SegmentResult": "fusion.schema",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from fusion._version import package_version

        return package_version()
    if name == "plot":  # the plotting module (matplotlib is imported by its functions only)
        import importlib

        return importlib.import_module("fusion.plot")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
