"""Many files in this process: one segment table from a loaded :class:`Analyzer`.

The engine layer analyses files one after another with the models it has loaded; worker pools
(per-file timeouts, crash isolation, Ray) live one layer up in :mod:`fusion.batch`, whose
:func:`fusion.batch.runner.process_files_dataframe` uses this module for its in-process path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from fusion.engine.analyzer import Analyzer
    from fusion.schema import SessionResult

log = logging.getLogger(__name__)


def error_fields(exc: BaseException) -> tuple[str, str, str]:
    """(class name, machine code, message) of a per-file failure."""
    from features.errors import AudioError

    if isinstance(exc, AudioError):
        return type(exc).__name__, exc.code, str(exc)
    return type(exc).__name__, "internal_error", f"{type(exc).__name__}: {exc}"


def concat_segments(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-file segment tables; an empty one keeps the ``(file, start, end)`` index."""
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        index = pd.MultiIndex.from_arrays(
            [pd.Index([], dtype=object), pd.to_timedelta([], unit="s"),
             pd.to_timedelta([], unit="s")], names=["file", "start", "end"])
        return pd.DataFrame(index=index)
    return pd.concat(frames, sort=False)


def segments_table(results: dict[int, SessionResult],
                   errors: dict[int, dict[str, str]]) -> pd.DataFrame:
    """One table of the results in input order; failures logged and in ``df.attrs["errors"]``.

    Parameters
    ----------
    results : dict of int to SessionResult
        Input position → result of the files that were analysed.
    errors : dict of int to dict
        Input position → ``{file, error_class, code, message}`` of the files that failed.
    """
    for e in errors.values():
        log.error("%s", e["message"])
    df = concat_segments([results[i].to_dataframe() for i in sorted(results)])
    df.attrs["errors"] = [errors[i] for i in sorted(errors)]
    return df


def analyze_files_in_process(analyzer: Analyzer,
                             paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Analyse files one after another with ``analyzer``'s loaded models into one table.

    Parameters
    ----------
    analyzer : Analyzer
        Loaded on first use; no per-file timeout or crash isolation (use
        :func:`fusion.batch.runner.process_files_dataframe` with ``num_workers > 1`` for that).
    paths : iterable of path
        Files; the ``file`` index level holds each path as given.

    Returns
    -------
    DataFrame
        MultiIndex ``(file, start, end)``, files in input order. Files that failed are left out,
        logged, and listed in ``df.attrs["errors"]`` (dicts with ``file, error_class, code,
        message``).
    """
    results: dict[int, SessionResult] = {}
    errors: dict[int, dict[str, str]] = {}
    analyzer.load()
    for i, p in enumerate(str(p) for p in paths):
        try:
            results[i] = analyzer.process_file(p)
        except Exception as exc:  # one bad file costs that file only
            cls, code, message = error_fields(exc)
            errors[i] = {"file": p, "error_class": cls, "code": code, "message": message}
    return segments_table(results, errors)
