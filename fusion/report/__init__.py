"""Self-contained HTML reports: one session, or a speaker's sessions over time.

Public API::

    from fusion.report import render_session, render_trend, encode_audio, load_result

Pages load nothing from the network (inline CSS, inline SVG charts, a small inline script
allowed by hash in a Content-Security-Policy), escape every string that comes from the audio or
the transcript, and read without JavaScript.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "render_session",
    "render_trend",
    "encode_audio",
    "EmbeddedAudio",
    "load_result",
    "load_sessions",
    "NOT_A_DIAGNOSIS",
]

if TYPE_CHECKING:
    from fusion.report.audio import encode_audio
    from fusion.report.render import NOT_A_DIAGNOSIS, EmbeddedAudio, render_session
    from fusion.report.trend import load_result, load_sessions, render_trend

_LAZY = {
    "render_session": "fusion.report.render",
    "EmbeddedAudio": "fusion.report.render",
    "NOT_A_DIAGNOSIS": "fusion.report.render",
    "encode_audio": "fusion.report.audio",
    "render_trend": "fusion.report.trend",
    "load_result": "fusion.report.trend",
    "load_sessions": "fusion.report.trend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusion.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
