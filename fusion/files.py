"""Finding audio files and writing outputs atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from features.errors import ConfigError, InputFileError
from features.regular_file import read_capped

#: largest path-list file read (bytes)
MAX_LIST_BYTES = 64 * 1024 * 1024

__all__ = ["AUDIO_SUFFIXES", "find_audio_files", "read_path_list", "atomic_write_bytes",
           "atomic_write_text"]

#: suffixes picked up when a folder is given (content still decides whether a file is audio)
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac",
                            ".mp4", ".webm", ".aif", ".aiff", ".caf"})


def find_audio_files(folder: Path) -> list[Path]:
    """Audio files below ``folder`` by suffix, sorted, hidden files skipped."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES:
                out.append(Path(root) / f)
    return out


def read_path_list(list_file: Path) -> list[Path]:
    """Paths from a text file, one per line; blank lines and ``#`` comments ignored; relative
    paths are taken relative to the list file's folder."""
    base = list_file.parent
    paths = []
    try:
        text = read_capped(list_file, max_bytes=MAX_LIST_BYTES, what="path list")
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    for line in text.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            paths.append(p if p.is_absolute() else base / p)
    return paths


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def iter_unique_stems(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """(path, output stem) pairs; stems made unique when two inputs share one."""
    seen: dict[str, int] = {}
    for p in paths:
        stem = p.stem
        if stem in seen:
            seen[stem] += 1
            stem = f"{p.stem}-{seen[p.stem]}"
        else:
            seen[stem] = 0
        yield p, stem
