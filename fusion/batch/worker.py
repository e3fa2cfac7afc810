"""The child side of the batch worker pool: load the models once, then analyse one file per
message until told to stop.

Started by :mod:`fusion.batch.pool` as a fresh interpreter, ``python -m fusion.batch.worker
NUM_THREADS`` (a :class:`features.supervisor.Child`: never re-imports the user's ``__main__``).
The parent puts the thread limits in the child's environment, so they hold before numpy, torch
or onnxruntime are loaded; :func:`worker_main` sets them again once the models are loaded.

Protocol: one JSON value per line, stdin → stdout (our own two processes; no pickle).

========================  ==========================================================
child → parent            meaning
========================  ==========================================================
``["ready", pid]``        models loaded; send work
``["load_failed", msg]``  the models could not be loaded; the child exits
``["decoded", id, s]``    task ``id`` decoded, ``s`` seconds of audio (starts the
                          analysis deadline)
``["done", id, json,      task ``id`` finished: ``SessionResult`` JSON and its
status]``                 status (``ok`` / ``insufficient speech``)
``["error", id, cls,      task ``id`` failed: exception class name, machine code,
code, message]``          message naming the file
========================  ==========================================================

parent → child: first line the configuration JSON as a JSON string; then ``[id, path]`` to
analyse a file; the end of stdin to exit.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, BinaryIO

from fusion.engine.many import error_fields

__all__ = ["worker_main", "THREAD_ENV_VARS"]

#: environment variables that size the thread pools of BLAS / OpenMP libraries
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _limit_threads(num_threads: int) -> None:
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(num_threads)
    try:  # numpy may already be loaded: cap its pools
        from threadpoolctl import threadpool_limits

        threadpool_limits(num_threads)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it the env vars rule
        pass


def load_analyzer(config_json: str, num_threads: int) -> Any:
    """Build and load an :class:`~fusion.engine.analyzer.Analyzer` for a worker with a thread share.

    The effective configuration is the user's with ``runtime.num_threads`` set to this
    worker's share of the thread budget; results carry it (and its hash) honestly.
    """
    from fusion.config import Config
    from fusion.engine.analyzer import Analyzer

    cfg = Config.model_validate_json(config_json)
    if cfg.runtime.num_threads != num_threads:
        cfg = cfg.with_overrides({"runtime.num_threads": num_threads})
    analyzer = Analyzer(cfg).load()
    _limit_threads(num_threads)  # again: loading may have started pools at their defaults
    return analyzer


def analyse_one(analyzer: Any, path: str, on_decoded: Any = None) -> tuple[str, str]:
    """Decode and analyse ``path`` exactly as ``Analyzer.process_file`` does.

    Returns the result's JSON and its status.

    ``on_decoded(duration_s)`` is called between decoding and analysis (it starts the
    analysis deadline in the parent).
    """
    audio = analyzer.read_audio(path)  # the worker process is itself the isolation
    if on_decoded is not None:
        on_decoded(audio.duration_s)
    result = analyzer.process_audio(audio)
    return result.to_json(), str(result.status)


def worker_main(requests: BinaryIO, answers: BinaryIO, num_threads: int) -> None:
    """Serve the pool: read the config, load the models, then analyse files until stdin ends."""
    import json

    def send(*msg: Any) -> None:
        answers.write(json.dumps(msg).encode() + b"\n")
        answers.flush()

    _limit_threads(num_threads)
    try:
        config_json = json.loads(requests.readline() or b'""')
        analyzer = load_analyzer(config_json, num_threads)
    except BaseException as exc:  # report anything, then exit: the parent aborts the batch
        traceback.print_exc(file=sys.stderr)
        send("load_failed", f"{type(exc).__name__}: {exc}")
        return
    send("ready", os.getpid())
    while True:
        try:
            line = requests.readline()
        except OSError:  # the parent is gone
            return
        if not line.strip():
            return
        task_id, path = json.loads(line)
        try:
            text, status = analyse_one(analyzer, path,
                                       lambda d, _id=task_id: send("decoded", _id, float(d)))
        except Exception as exc:  # one bad file costs that file only
            cls, code, message = error_fields(exc)
            if code == "internal_error":
                traceback.print_exc(file=sys.stderr)
            reply: tuple[Any, ...] = ("error", task_id, cls, code, message)
        else:
            reply = ("done", task_id, text, status)
        try:
            send(*reply)
        except (BrokenPipeError, OSError):  # the parent is gone
            return


def main(argv: list[str]) -> int:
    from features.supervisor import child_streams

    # SIGINT ignored (the parent decides), exit on the parent's death, answers on a private
    # copy of stdout so that nothing a library prints can corrupt them
    requests, answers = child_streams()
    worker_main(requests, answers, int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
