"""Open and read input files safely: regular files only, opened once, read with a cap.

Every path a user gives (audio, ``--config``, model, profile, norms, labels, saved results)
goes through :func:`open_regular`. A FIFO would block ``open()`` forever, and a device such as
``/dev/zero`` (or a symlink to one) reports ``st_size == 0`` and never ends, which bypasses a
size cap checked by ``stat``. So the file is opened non-blocking, checked with ``fstat`` on
the *open descriptor* (no window between check and use) and read with a byte cap.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from features.errors import InputFileError

__all__ = ["open_regular", "read_capped"]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device (such as /dev/zero)"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, what: str = "input") -> BinaryIO:
    """Open ``path`` for binary reading if (after symlinks) it is a regular file.

    Parameters
    ----------
    path : str or PathLike
    what : str
        What the file should be, for messages (e.g. ``"fusion model"``).

    Returns
    -------
    BinaryIO
        An open, blocking binary file; the caller closes it.

    Raises
    ------
    InputFileError
        ``kind`` is ``"not_found"``, ``"not_regular"`` (directory, FIFO, device, socket) or
        ``"unreadable"`` (permission or other OS error); the message names the path.
    """
    name = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputFileError(name, f"cannot read {what} file (file not found)",
                             kind="not_found") from None
    except IsADirectoryError:
        raise InputFileError(name, f"is a directory, not a {what} file",
                             kind="not_regular") from None
    except OSError as exc:
        raise InputFileError(name, f"cannot read {what} file ({exc.strerror})",
                             kind="unreadable") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(name, f"{_kind(mode)}, not a regular file (only regular "
                                 f"files are read as {what})", kind="not_regular")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: str | os.PathLike[str], *, max_bytes: int, what: str = "input") -> bytes:
    """All bytes of the regular file ``path``, refusing files over ``max_bytes``.

    The cap is enforced on the bytes actually read (``max_bytes + 1`` at most), not on
    ``st_size``.

    Raises
    ------
    InputFileError
        As :func:`open_regular`, or ``kind="too_large"``.
    """
    with open_regular(path, what=what) as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(str(path), f"cannot read {what} file ({exc.strerror})",
                                 kind="unreadable") from None
    if len(data) > max_bytes:
        raise InputFileError(str(path), f"{what} file is larger than the limit of {max_bytes} "
                             "bytes", kind="too_large")
    return data

