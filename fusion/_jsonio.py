"""Safe reading of the JSON files fusion loads (models, priors, norms, speaker profiles).

Pickle and other executable formats are refused before anything is parsed: a model or
calibration file is data, and data must never run code when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from features.errors import ConfigError, UnsafeModelFileError

__all__ = ["read_json_file", "sha256_bytes", "UNSAFE_SUFFIXES"]

#: file name endings of formats that execute code (or may) when loaded
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".npy", ".npz",
                   ".dill", ".cloudpickle", ".sav")

_MAX_BYTES = 50 * 1024 * 1024


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
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what} file ({exc.strerror})") from None
    if size > _MAX_BYTES:
        raise ConfigError(f"{p}: {what} file is {size} bytes; at most {_MAX_BYTES} accepted")
    data = p.read_bytes()
    if _looks_like_pickle(data[:64]):
        raise UnsafeModelFileError(
            f"{p}: this {what} file looks like a pickle/zip archive, not JSON; refused. "
            "vocalfusion model files are JSON and are never unpickled.")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: {what} file is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{p}: {what} file must hold a JSON object, got {type(obj).__name__}")
    return obj, sha256_bytes(data)
