"""Process helpers shared by the tests: fake decoder binaries, kill-when, /proc inspection."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: the start of an M4A file: enough for the sniffer to send it to ffmpeg
FAKE_M4A = b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200


def write_script(path: Path, body: str) -> Path:
    """An executable ``/bin/sh`` script at ``path`` running ``body``."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def fake_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, ffmpeg: str,
                ffprobe: str) -> Path:
    """Put shell-script ``ffmpeg`` and ``ffprobe`` (bodies given) first on ``PATH``."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    write_script(fake_bin / "ffmpeg", ffmpeg)
    write_script(fake_bin / "ffprobe", ffprobe)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    return fake_bin


def sigkill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], *,
                 timeout_s: float, what: str) -> None:
    """Wait until ``ready()`` (``proc`` must still run), then SIGKILL ``proc`` and reap it."""
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
            assert proc.poll() is None, f"the process ended before {what}: {err}"
            assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid`` from ``/proc``; ``None`` when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    state = proc_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def wait_until_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to stop running; whether it did."""
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
