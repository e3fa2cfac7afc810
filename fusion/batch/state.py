"""Batch state that must not go stale: the output folder's lock, and what a result depends on.

Lock
----
A batch holds ``OUT/.vocalfusion.lock`` (JSON: ``pid``, ``host``, ``started_at``) from start to
end. A second run into the same folder refuses with :class:`BatchLockedError`, naming the first
run. A lock left by a process that is no longer alive on this host is stale: it is taken over
with a warning. A lock from another host is never taken over (its process cannot be checked);
the message says which file to delete once that run is known to be gone.

Dependencies
------------
A result depends on more than its input and config: the fusion model, the speaker profile and
the population norms are *files* named by the config, and their content can change in place.
:func:`dependency_hashes` gives the sha256 of each, and :func:`stream_signature` the effective
backend, model and revision of every stream (a stream that fell back to another backend, or
was skipped, on one machine gives another signature). Both are recorded in every batch result
(``SessionResult.depends_on``) and a result is resumed only when both still match.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fusion.batch.pool import BatchError
from fusion.config import Config, config_dir

__all__ = ["LOCK_NAME", "BatchLockedError", "BatchLock", "acquire_lock", "dependency_hashes",
           "stream_signature", "result_stream_signature", "signatures_match",
           "MAX_DEPENDENCY_BYTES"]

log = logging.getLogger("vocalfusion.batch")

#: the lock file inside the output folder
LOCK_NAME = ".vocalfusion.lock"
#: a dependency file (model, profile, norms) larger than this is refused when hashed
MAX_DEPENDENCY_BYTES = 64 * 1024 * 1024


class BatchLockedError(BatchError):
    """Another batch run holds the output folder."""


@dataclass
class BatchLock:
    """A held output-folder lock; :meth:`release` (or ``with``) removes it."""

    path: Path
    token: str

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        try:
            if json.loads(self.path.read_bytes()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def __enter__(self) -> BatchLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


def _describe(holder: Mapping[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')!r}, started "
            f"{holder.get('started_at')}")


def acquire_lock(out_dir: Path) -> BatchLock:
    """Take the lock of ``out_dir`` (which must exist) or refuse.

    Raises
    ------
    BatchLockedError
        Another live run holds it (the message names its pid, host and start time).
    BatchError
        The lock file cannot be written (read-only folder, full disk): one line naming it.
    """
    path = out_dir / LOCK_NAME
    token = os.urandom(8).hex()
    me: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(),
          "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
          "token": token}
    blob = json.dumps(me).encode()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_holder(path)
            if holder is None:  # vanished or unreadable half-written lock: look again
                _take_over(path, "an unreadable lock file")
                continue
            if holder.get("host") != me["host"]:
                raise BatchLockedError(
                    f"{out_dir} is in use by another batch run ({_describe(holder)}); its "
                    f"process cannot be checked from this host: delete {path} once that run "
                    "is known to be gone") from None
            pid = holder.get("pid")
            if isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid):
                _take_over(path, f"a stale lock of a process that is gone ({_describe(holder)})")
                continue
            raise BatchLockedError(
                f"{out_dir} is in use by another batch run ({_describe(holder)}); wait for it "
                "to finish or write to another folder") from None
        except OSError as exc:
            raise BatchError(f"cannot write to the output folder {out_dir}: "
                             f"{exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise BatchError(f"cannot write to the output folder {out_dir}: "
                             f"{exc.strerror or exc}") from None
        return BatchLock(path=path, token=token)
    raise BatchLockedError(f"{out_dir}: could not take the lock {path} (another run keeps "
                           "taking it)")


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(4096))
    except FileNotFoundError:
        return {}  # released meanwhile: the retry creates it
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _take_over(path: Path, what: str) -> None:
    log.warning("%s: taking over %s", path.parent, what)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BatchError(f"cannot remove the stale lock {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------- dependencies
def _content_sha256(path: Path, key: str) -> str:
    """sha256 of a regular file, read once with a cap; a one-line error naming ``key``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise BatchError(f"{key} = {str(path)!r}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BatchError(f"{key} = {str(path)!r}: not a regular file")
        h = hashlib.sha256()
        n = 0
        try:
            while chunk := fh.read(1 << 20):
                n += len(chunk)
                if n > MAX_DEPENDENCY_BYTES:
                    raise BatchError(f"{key} = {str(path)!r}: larger than "
                                     f"{MAX_DEPENDENCY_BYTES // (1024 * 1024)} MiB")
                h.update(chunk)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                raise BatchError(f"{key} = {str(path)!r}: not a regular file") from None
            raise BatchError(f"{key} = {str(path)!r}: cannot read "
                             f"({exc.strerror or exc})") from None
    return h.hexdigest()


def dependency_hashes(config: Config) -> dict[str, str]:
    """Content sha256 of every file the results of ``config`` depend on, by config key.

    ``fusion.model`` (the bundled prior when ``"prior"``), ``fusion.population_norms`` (the
    bundled norms when unset) and ``fusion.speaker_profile`` (when set); none when fusion is
    off. Stream models are covered by :func:`stream_signature` (their revision or content
    hash), the settings by the config hash.
    """
    if not config.fusion.enabled:
        return {}
    fc = config.fusion
    files: dict[str, Path] = {
        "fusion.model": (config_dir() / "fusion_prior.json" if fc.model == "prior"
                         else Path(fc.model)),
        "fusion.population_norms": (Path(fc.population_norms) if fc.population_norms
                                    else config_dir() / "population_norms.json"),
    }
    if fc.speaker_profile:
        files["fusion.speaker_profile"] = Path(fc.speaker_profile)
    return {key: _content_sha256(p, key) for key, p in files.items()}


def stream_signature(infos: Mapping[str, Any]) -> dict[str, str]:
    """``{stream: "backend|model_id|revision|library_version"}`` from stream infos
    (StreamInfo models or their JSON dicts): what must match for two results to be
    comparable. A stream that could not load (no provenance) gives ``"none"``."""
    sig: dict[str, str] = {}
    for name, info in sorted(infos.items()):
        d = info if isinstance(info, Mapping) else info.model_dump(mode="json")
        prov = d.get("provenance") or {}
        sig[name] = ("|".join(str(prov.get(k)) for k in ("backend", "model_id", "revision",
                                                        "library_version"))
                     if prov else "none")
    return sig


def result_stream_signature(result_json: str | bytes) -> dict[str, str] | None:
    """:func:`stream_signature` of a saved result, or None when it cannot be read."""
    try:
        data = json.loads(result_json)
        return stream_signature(data["streams"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def signatures_match(a: Mapping[str, str] | None, b: Mapping[str, str] | None) -> bool:
    """Whether two stream signatures agree (a stream missing from one counts as ``"none"``)."""
    if a is None or b is None:
        return False
    return all(a.get(k, "none") == b.get(k, "none") for k in {*a, *b})
