"""The Ray engine of :mod:`fusion.batch.runner`: Ray Data with an actor pool that holds loaded
models.

Pipeline: ``ray.data.from_items(paths)`` (one path per block, so work spreads over the actors)
→ ``map_batches(_AnalyzeActor, batch_size=1, compute=ActorPoolStrategy(size=N))`` → rows
streamed back to the driver, which writes the per-file JSONs and the Parquet tables exactly as
the local engine does.

Each actor hosts a one-process :class:`~fusion.batch.pool.LocalPool`: the models live in that
child process, so a decoder that crashes or hangs kills the child (recorded as ``WorkerDied`` /
``FileTimeout``, the child is replaced), never the actor, and Ray never retries a file that
kills its worker. The actor itself only waits, so it asks Ray for a fraction of a CPU
(``num_cpus=0.5`` by default): on a small machine an actor pool that claims every CPU starves
Ray Data's own tasks and the dataset never finishes.

Requirements on a cluster: vocalfusion (and the models the config needs) installed on every
node, and the input paths readable under the same names on every node (a shared filesystem).
The outputs are written by the driver only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from fusion.batch.pool import BatchError, FileLimits, FileOutcome, FileTask, LocalPool

__all__ = ["run_ray", "ACTOR_NUM_CPUS"]

log = logging.getLogger("vocalfusion.batch")

#: logical CPUs each actor reserves (the work happens in its child process)
ACTOR_NUM_CPUS = 0.5

_COLUMNS = ("index", "path", "status", "result_json", "session_status", "error_class",
            "code", "message", "elapsed_s", "audio_s", "worker_pid")


class _AnalyzeActor:
    """Callable class for ``map_batches``: one loaded worker process per actor."""

    def __init__(self, config_json: str, threads_per_worker: int, limits: FileLimits) -> None:
        self._pool = LocalPool(config_json, num_workers=1,
                               threads_per_worker=threads_per_worker, limits=limits).start()

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        tasks = [FileTask(index=int(i), path=str(p))
                 for i, p in zip(batch["index"], batch["path"], strict=True)]
        rows = [{c: getattr(o, c) for c in _COLUMNS} for o in self._pool.run(tasks)]
        return pd.DataFrame.from_records(rows, columns=list(_COLUMNS))

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()


def _none(v: Any) -> Any:
    """Ray/pandas give NaN or numpy scalars for missing values; the outcome wants None."""
    if v is None:
        return None
    try:
        import math

        if isinstance(v, float) and math.isnan(v):
            return None
    except TypeError:
        pass
    return v.item() if hasattr(v, "item") else v


def run_ray(tasks: Sequence[FileTask], config_json: str, *, num_workers: int,
            threads_per_worker: int, limits: FileLimits, address: str | None = None,
            num_cpus: int | None = None,
            actor_num_cpus: float = ACTOR_NUM_CPUS) -> Iterator[FileOutcome]:
    """Analyse ``tasks`` on Ray; yield one outcome per task as rows arrive.

    Parameters
    ----------
    address : str, optional
        A running cluster (``"auto"``, ``"ray://head:10001"``); None starts a local instance
        (shut down again at the end). An already initialised Ray is used as it is.
    num_cpus : int, optional
        CPUs of a local instance started here (default: all).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError("the ray engine needs Ray Data: pip install 'vocalfusion[ray]' "
                         "(or pip install 'ray[data]')") from None

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Data logs every execution at INFO/WARNING level; our own progress display suffices
    data_log = logging.getLogger("ray.data")
    data_level = data_log.level
    data_log.setLevel(logging.ERROR)
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                  "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        items = [{"index": t.index, "path": t.path} for t in tasks]
        source = ray.data.from_items(items, override_num_blocks=len(items))
        ds = source.map_batches(
            _AnalyzeActor,
            fn_constructor_kwargs={"config_json": config_json,
                                   "threads_per_worker": threads_per_worker, "limits": limits},
            batch_size=1,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=num_workers,
                                               max_tasks_in_flight_per_actor=1),
            num_cpus=actor_num_cpus,
        )
        for row in ds.iter_rows():
            r = {c: _none(row.get(c)) for c in _COLUMNS}
            yield FileOutcome(
                index=int(r["index"]), path=str(r["path"]), status=r["status"],
                result_json=r["result_json"], session_status=r["session_status"],
                error_class=r["error_class"], code=r["code"], message=r["message"],
                elapsed_s=float(r["elapsed_s"] or 0.0), audio_s=r["audio_s"],
                worker_pid=None if r["worker_pid"] is None else int(r["worker_pid"]))
    finally:
        data_log.setLevel(data_level)
        if started_here:
            ray.shutdown()
