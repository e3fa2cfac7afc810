"""The one child-process supervisor (features.supervisor): deadlines, deaths, stops, reaping.

Real child processes throughout: a small child module (written to a temporary folder) that
answers, hangs, dies, ignores SIGTERM or starts a grandchild on request. Processes are checked
in ``/proc`` (``tests/_procs.py``): no zombie of ours, no orphan left running.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _procs import proc_state, running, wait_until_gone

from features.supervisor import Child, Supervisor, describe_exit, package_root

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    from features.supervisor import child_streams

    requests, answers = child_streams()
    print("noise on stdout goes to stderr")  # must not reach the answers
    for line in requests:
        cmd = line.strip().decode()
        if cmd == "hang":
            time.sleep(600)
        elif cmd == "die":
            os._exit(7)
        elif cmd == "stubborn":  # ignores the end of stdin and SIGTERM
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            answers.write(b"ok\\n"); answers.flush()
            time.sleep(600)
        elif cmd == "grandchild":
            g = subprocess.Popen(["sleep", "600"])
            answers.write(b"%d\\n" % g.pid); answers.flush()
        else:
            answers.write(b"pid %d\\n" % os.getpid()); answers.flush()
""")


@pytest.fixture()
def child_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Name of the test child module, importable by children (``PYTHONPATH``)."""
    (tmp_path / "sup_test_child.py").write_text(CHILD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "sup_test_child"


def _ask(child: Child, cmd: str) -> bytes:
    child.stdin.write(cmd.encode() + b"\n")
    child.stdin.flush()
    return child.stdout.readline()


def _assert_reaped(pid: int) -> None:
    """Not running, and not a zombie waiting on this process."""
    state = proc_state(pid)
    assert state is None or (state[0] != "Z" or state[1] != os.getpid()), state
    assert not running(pid)


def test_answers_over_pipes_and_stray_prints_do_not_corrupt_them(child_module: str) -> None:
    c = Child(child_module)
    try:
        assert _ask(c, "ping") == b"pid %d\n" % c.pid
        assert c.alive() and c.returncode is None
    finally:
        assert c.stop(grace_s=5.0) == 0  # the end of stdin ends its loop: a clean exit
    _assert_reaped(c.pid)


def test_hung_child_is_killed_at_its_deadline_with_its_group(child_module: str) -> None:
    c = Child(child_module)
    grandchild = int(_ask(c, "grandchild"))
    assert running(grandchild)
    t0 = time.monotonic()
    with c.deadline(1.0):
        line = _ask(c, "hang")
    assert line == b""  # killed: its output ended
    assert 0.9 < time.monotonic() - t0 < 10
    assert c.expired
    c.close()
    assert c.returncode == -signal.SIGKILL
    _assert_reaped(c.pid)
    assert wait_until_gone(grandchild, 10), "the grandchild outlived its group's kill"


def test_no_deadline_and_a_met_deadline_kill_nothing(child_module: str) -> None:
    c = Child(child_module)
    try:
        with c.deadline(None):
            assert _ask(c, "ping").startswith(b"pid")
        with c.deadline(30.0):
            assert _ask(c, "ping").startswith(b"pid")
        time.sleep(0.1)
        assert c.alive() and not c.expired
    finally:
        c.stop()


def test_a_child_that_dies_is_reported_and_replaced(child_module: str) -> None:
    sup = Supervisor(child_module, name="test child")
    first = sup.child()
    try:
        assert _ask(first, "die") == b""
        first.proc.wait(timeout=10)
        assert first.returncode == 7 and describe_exit(first.returncode) == "exit code 7"
        assert sup.pid is None  # dead: no running child
        second = sup.child()  # replaced on the next use
        assert second.pid != first.pid and sup.restarts == 1
        assert _ask(second, "ping") == b"pid %d\n" % second.pid
        _assert_reaped(first.pid)
        assert sup.discard() is None and sup.restarts == 2  # still running when discarded
        _assert_reaped(second.pid)
    finally:
        sup.shutdown()


def test_stop_escalates_to_sigkill_and_reaps(child_module: str) -> None:
    c = Child(child_module)
    assert _ask(c, "stubborn") == b"ok\n"
    t0 = time.monotonic()
    assert c.stop(grace_s=0.5) == -signal.SIGKILL  # stdin closed, SIGTERM ignored: SIGKILL
    assert time.monotonic() - t0 < 5
    _assert_reaped(c.pid)


def test_describe_exit() -> None:
    assert describe_exit(None) == "exit status unknown"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGSEGV) == "killed by signal SIGSEGV"
    assert describe_exit(-200) == "killed by signal 200"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([package_root(), str(tmp_path)])}


def test_children_are_stopped_when_the_parent_exits(child_module: str, tmp_path: Path) -> None:
    """A parent that exits without stopping its hung child: stopped (and reaped) at exit."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        from features.supervisor import Child
        c = Child({child_module!r})
        c.stdin.write(b"hang\\n"); c.stdin.flush()
        print(c.pid, flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout)
    assert not running(pid)  # already gone when the parent's exit returned


def test_a_child_whose_parent_is_killed_does_not_stay_orphaned(child_module: str,
                                                                tmp_path: Path) -> None:
    """SIGKILL the parent (no atexit runs): the busy child notices and exits within seconds."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from features.supervisor import Child
        c = Child({child_module!r})
        c.stdin.write(b"hang\\n"); c.stdin.flush()
        print(c.pid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              env=_env(tmp_path))
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert running(pid)
    finally:
        parent.kill()
        parent.wait()
    assert wait_until_gone(pid, 10), "the child outlived its killed parent"


def _start_child_from_daemon(module: str, path: str, answers: mp.Queue) -> None:
    sys.path.insert(0, path)
    c = Child(module)
    try:
        answers.put((c.pid, _ask(c, "ping").decode()))
    finally:
        c.stop()


def test_starts_from_a_daemonic_multiprocessing_process(child_module: str,
                                                        tmp_path: Path) -> None:
    """Batch workers and Ray actors are daemonic: ``multiprocessing`` may not start children
    there, a supervised child may."""
    ctx = mp.get_context("fork")
    answers: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_start_child_from_daemon, args=(child_module, str(tmp_path), answers),
                    daemon=True)
    p.start()
    try:
        pid, line = answers.get(timeout=60)
    finally:
        p.join(timeout=30)
    assert p.exitcode == 0
    assert line == f"pid {pid}\n"
    _assert_reaped(pid)


def test_the_users_main_is_not_run_again(child_module: str, tmp_path: Path) -> None:
    """An unguarded user script that starts a child runs once (a ``multiprocessing`` spawn or
    forkserver child would import it again)."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        from features.supervisor import Child
        with open({str(marker)!r}, "a") as fh:
            fh.write("ran\\n")
        c = Child({child_module!r})
        c.stdin.write(b"ping\\n"); c.stdin.flush()
        print(c.stdout.readline().decode().strip())
        c.stop()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pid ")
    assert marker.read_text() == "ran\n"

