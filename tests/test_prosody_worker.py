"""The prosody stream's Praat work in a child process (features.prosody.worker).

Audio: espeak-ng speech (synthetic) and the bundled JFK recording (real speech), through the
real Praat in the real child process. A worker's death is real: a child started from a small
script in the test's temp dir that runs the real worker but SIGKILLs itself on a marked clip.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.audio.load import Audio, load_audio
from features.errors import ModelUnavailable
from features.prosody.stream import ProsodyConfig, ProsodyStream
from features.prosody.worker import (
    LOST_REASON,
    PraatWorker,
    WorkerDied,
    _chunks,
    shared_worker,
)
from features.segments.vad import Segment, segment_audio
from fusion.config import load_config

SR = 16_000
KILL_MARK = 0.123456  # a clip whose first sample is this kills the worker (float32-exact below)

_DYING_WORKER = """
import os, signal, sys
import numpy as np
import features.prosody._praat_worker as w

def _sum_or_die(clips, sr, settings):
    out = []
    for clip in clips:
        if clip.size and clip[0] == np.float32({mark!r}):
            os.kill(os.getpid(), signal.SIGKILL)
        out.append(float(np.sum(clip, dtype=np.float64)) + settings["offset"])
    return out

w.TASKS["sum_or_die"] = _sum_or_die
sys.exit(w.main())
"""


@pytest.fixture()
def dying_worker(tmp_path: Path) -> Any:
    script = tmp_path / "dying_worker.py"
    script.write_text(_DYING_WORKER.format(mark=KILL_MARK))
    worker = PraatWorker([sys.executable, str(script)])
    yield worker
    worker.shutdown()


def _segments_of(audio: Audio) -> list[Segment]:
    """Voice-activity segments cut into ≤ 2-s pieces (several chunks and segments)."""
    segments = [Segment(start_s=t, end_s=min(t + 2.0, s.end_s))
                for s in segment_audio(audio.y, audio.sr)
                for t in np.arange(s.start_s, s.end_s, 2.0)]
    assert len(segments) >= 3
    return segments


@pytest.fixture(scope="module")
def two_sentences(speech_factory: Callable[..., Path]) -> Audio:
    path = speech_factory("The weather was calm this morning, so we walked to the market. "
                          "Later we talked about the garden and the long summer ahead.")
    return load_audio(path)


def _run(audio: Audio, mode: str, **cfg: Any) -> Any:
    stream = ProsodyStream(ProsodyConfig(run_praat_in=mode, **cfg))  # type: ignore[arg-type]
    stream.load()
    return stream.run(audio, _segments_of(audio), {})


@pytest.mark.parametrize("cfg", [{}, {"pitch_floor_hz": 70.0, "pitch_ceiling_hz": 300.0}])
def test_child_process_gives_the_same_values_as_this_process(two_sentences: Audio,
                                                             cfg: dict[str, float]) -> None:
    child = _run(two_sentences, "child-process", **cfg)
    here = _run(two_sentences, "this-process", **cfg)
    assert child.session.pop("praat_ran_in") == "child process"
    assert here.session.pop("praat_ran_in").startswith("this process")
    assert child.session == here.session
    assert [r.model_dump() for r in child.rows] == [r.model_dump() for r in here.rows]
    assert any(r.f0_mean_hz is not None for r in child.rows)


def test_real_speech_same_in_child(jfk_path: Path) -> None:
    audio = load_audio(jfk_path)
    child, here = _run(audio, "child-process"), _run(audio, "this-process")
    assert [r.model_dump() for r in child.rows] == [r.model_dump() for r in here.rows]
    assert child.rows[0].hnr_db is not None


def test_auto_uses_the_child_here() -> None:
    stream = ProsodyStream(ProsodyConfig())
    stream.load()
    assert stream._praat_ran_in == "child process"


def test_threads_share_the_worker(two_sentences: Audio) -> None:
    expected = [r.model_dump() for r in _run(two_sentences, "this-process").rows]
    results: list[Any] = [None] * 3

    def work(i: int) -> None:
        results[i] = [r.model_dump() for r in _run(two_sentences, "child-process").rows]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3


def test_a_dead_worker_costs_only_its_segment(dying_worker: PraatWorker) -> None:
    clips = [np.full(SR * 12, 0.01 * (i + 1), dtype=np.float32) for i in range(8)]
    clips[3][0] = KILL_MARK  # chunks of ≤ 30 s: the 2nd chunk holds clips 2 and 3
    lost: list[int] = []

    def on_lost(i: int) -> str:
        lost.append(i)
        return LOST_REASON

    out = dying_worker.run_per_clip("sum_or_die", clips, SR, {"offset": 1.0}, on_lost)
    assert lost == [3]
    assert out[3] == LOST_REASON
    for i in (0, 1, 2, 4, 5, 6, 7):
        assert out[i] == pytest.approx(float(np.sum(clips[i], dtype=np.float64)) + 1.0)
    assert dying_worker.restarts == 2  # the chunk's death, then the clip's own
    # and a fresh worker answers afterwards
    assert dying_worker.request("sum_or_die", clips[:1], SR, {"offset": 0.0}) == [
        pytest.approx(float(np.sum(clips[0], dtype=np.float64)))]


def test_a_task_error_is_reported_not_a_death(dying_worker: PraatWorker) -> None:
    with pytest.raises(RuntimeError, match="KeyError"):  # settings lack "offset"
        dying_worker.request("sum_or_die", [np.ones(10, dtype=np.float32)], SR, {})
    pid = dying_worker.pid
    assert pid is not None and dying_worker.restarts == 0
    assert dying_worker.request("ping", [], 0, {}) == [pid]


def test_a_killed_idle_worker_is_replaced() -> None:
    worker = PraatWorker()
    try:
        worker.start()
        pid = worker.pid
        assert pid is not None
        os.kill(pid, 9)
        until = time.monotonic() + 30
        while worker.pid is not None and time.monotonic() < until:  # .pid reaps a dead child
            time.sleep(0.05)
        assert worker.request("ping", [], 0, {}) != [pid]  # replaced before the request
        assert worker.pid not in (None, pid) and worker.restarts == 1
    finally:
        worker.shutdown()


def test_chunks_keep_order_and_bound_the_audio() -> None:
    sizes = [SR * s for s in (10, 10, 15, 40, 5, 5)]
    chunks = _chunks([np.zeros(n) for n in sizes], SR, 30.0)
    assert [(i0, [c.size // SR for c in g]) for i0, g in chunks] == [
        (0, [10, 10]), (2, [15]), (3, [40]), (4, [5, 5])]
    assert _chunks([], SR, 30.0) == []


def test_a_worker_that_never_answers_is_killed() -> None:
    import time

    worker = PraatWorker([sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.perf_counter()
    with pytest.raises(WorkerDied):
        worker.start(timeout_s=1.0)
    assert time.perf_counter() - t0 < 20
    worker.shutdown()


def test_no_child_means_praat_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker command that cannot start (here: a missing program): auto falls back to this
    process and says why; child-process refuses, so the stream is skipped with the reason."""
    import features.prosody.stream as prosody

    monkeypatch.setattr(prosody, "shared_worker",
                        lambda: PraatWorker(["/nonexistent/python-for-praat"]))
    worker, where = ProsodyStream._choose_worker("auto")
    assert worker is None
    assert where.startswith("this process: the Praat child process could not be started")
    with pytest.raises(ModelUnavailable, match="child-process"):
        ProsodyStream._choose_worker("child-process")


def test_unguarded_main_script_is_not_run_again(tmp_path: Path) -> None:
    """A user's script without ``if __name__ == "__main__"`` runs once: the worker is a fresh
    interpreter, not a multiprocessing child that re-imports ``__main__``."""
    log = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(
        "import numpy as np\n"
        "from features.audio.load import audio_from_signal\n"
        "from features.prosody.stream import ProsodyStream\n"
        "from features.segments.vad import Segment\n"
        f"open({str(log)!r}, 'a').write('run\\n')\n"
        "t = np.arange(16000) / 16000\n"
        "a = audio_from_signal((0.3 * np.sin(2 * np.pi * 150 * t)).astype('float32'), 16000)\n"
        "s = ProsodyStream(); s.load()\n"
        "out = s.run(a, [Segment(start_s=0.0, end_s=1.0)], {})\n"
        "print(out.session['praat_ran_in'], round(out.rows[0].f0_mean_hz))\n")
    root = Path(__file__).resolve().parents[1]
    import subprocess

    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["child", "process", "150"]
    assert log.read_text() == "run\n"


def test_where_praat_runs_is_not_in_the_config_hash() -> None:
    cfg = load_config()
    assert (cfg.with_overrides(["prosody.run_praat_in=this-process"]).config_hash()
            == cfg.config_hash())
    assert (cfg.with_overrides(["prosody.min_dip_db=3.0"]).config_hash()
            != cfg.config_hash())


def test_shared_worker_is_one_per_process() -> None:
    assert shared_worker() is shared_worker()
