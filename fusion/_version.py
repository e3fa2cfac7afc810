"""The installed package's version (``vocalfusion``), recorded in every result and model file."""

from __future__ import annotations

__all__ = ["package_version"]


def package_version() -> str:
    """The installed ``vocalfusion`` version, or ``"0+unknown"`` in an uninstalled source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vocalfusion")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
