"""Safe reading of the JSON files fusion loads.

Reading (models, priors, norms, speaker profiles, saved results): pickle and other executable
formats are refused before anything is parsed (a model file is data, and data must never run
code when it is loaded); only regular files are read, with a byte cap
(:func:`features.regular_file.read_capped`); nesting deeper than :data:`MAX_DEPTH` and the
non-standard constants ``NaN``/``Infinity`` (or numbers that overflow to infinity, ``1e400``)
are refused with a :class:`~features.errors.ConfigError` naming the key.

(Writing strict JSON: :func:`fusion.schema.dumps_strict`.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from features.errors import ConfigError, InputFileError, UnsafeModelFileError
from features.regular_file import read_capped

__all__ = ["read_json_file", "read_json_bytes", "parse_json", "sha256_bytes",
           "UNSAFE_SUFFIXES", "MAX_DEPTH", "MAX_BYTES", "MAX_RESULT_BYTES"]

#: file name endings of formats that execute code (or may) when loaded
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".npy", ".npz",
                   ".dill", ".cloudpickle", ".sav")

#: largest JSON file read (bytes)
MAX_BYTES = 50 * 1024 * 1024
_MAX_BYTES = MAX_BYTES
#: largest saved analysis (result JSON) read back
MAX_RESULT_BYTES = 256 * 1024 * 1024
#: deepest nesting of objects/arrays accepted (vocalfusion's own files nest ≤ 8 levels)
MAX_DEPTH = 64


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_like_pickle(head: bytes) -> bool:
    # protocol >= 2 starts with PROTO (0x80) + version; zip containers (torch, joblib with
    # compression, numpy .npz) start with PK; protocol 0/1 pickles commonly start with '(' or
    # ']' or 'c' (GLOBAL) — none of which can start a JSON document after optional whitespace.
    stripped = head.lstrip()
    if not stripped:
        return False
    return stripped[:1] == b"\x80" or stripped[:2] == b"PK" or stripped[:1] in (b"c", b"(", b"]")


def read_json_file(path: str | Path, *, what: str) -> tuple[dict[str, Any], str]:
    """Read a JSON object from ``path``; return it and the file's sha256.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file should be (used in messages), e.g. ``"fusion model"``.

    Raises
    ------
    UnsafeModelFileError
        The file is (or is named like) a pickle / torch / joblib file.
    ConfigError
        The file cannot be read, is too large, is not UTF-8 JSON, or is not a JSON object.
    """
    p = Path(path)
    lower = p.name.lower()
    if lower.endswith(UNSAFE_SUFFIXES):
        raise UnsafeModelFileError(
            f"{p}: refusing to load a {what} from a pickle-type file ({p.suffix}); vocalfusion "
            f"{what} files are JSON (written by vocalfusion itself). Pickle files can run "
            "arbitrary code when loaded.")
    data = read_json_bytes(p, what=what)
    if _looks_like_pickle(data[:64]):
        raise UnsafeModelFileError(
            f"{p}: this {what} file looks like a pickle/zip archive, not JSON; refused. "
            "vocalfusion model files are JSON and are never unpickled.")
    obj = parse_json(data, source=str(p), what=what)
    if not isinstance(obj, dict):
        raise ConfigError(f"{p}: {what} file must hold a JSON object, got {type(obj).__name__}")
    return obj, sha256_bytes(data)


def read_json_bytes(path: str | os.PathLike[str], *, what: str,
                    max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a JSON input file: a regular file (no FIFO, device or directory), read
    once with a cap of ``max_bytes``.

    Raises
    ------
    ConfigError
        Missing, not a regular file, unreadable or too large (the message names the path).
    """
    try:
        return read_capped(path, max_bytes=max_bytes, what=what)
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None


def parse_json(data: bytes | str, *, source: str, what: str) -> Any:
    """Parse strict JSON: no ``NaN``/``Infinity``, no overflowing numbers, nesting ≤
    :data:`MAX_DEPTH`.

    Raises
    ------
    ConfigError
        Naming ``source`` and, for a bad number, the key path (``heads.stress.intercept``).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: {what} file is not valid UTF-8 JSON ({exc})") from None
    try:
        obj = json.loads(text)  # NaN/Infinity become floats: refused below, with their key
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: {what} file is not valid UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: {what} file nests objects/arrays too deeply (more than "
                          f"{MAX_DEPTH} levels are refused)") from None
    _check_values(obj, source=source, what=what)
    return obj


def _check_values(obj: Any, *, source: str, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and non-finite floats (iteratively)."""
    stack: list[tuple[str, int, Any]] = [("", 0, obj)]
    while stack:
        path, depth, node = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                raise ConfigError(f"{source}: {what} key {path or '<top>'!r} is {node!r}; "
                                  "numbers must be finite")
        elif isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"{source}: {what} file nests objects/arrays more than "
                                  f"{MAX_DEPTH} levels deep (at {path[:80]!r}…); refused")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in items:
                key = f"{path}[{k}]" if isinstance(node, list) else (f"{path}.{k}" if path
                                                                     else str(k))
                stack.append((key, depth + 1, v))
