"""Progress displays for :func:`fusion.batch.runner.run_batch`.

* :class:`RichProgress` — a live bar for terminals: files done / to do, failures, throughput
  (files per minute since the start), elapsed time and ETA.
* :class:`LogLines` — one plain line per file, for log files and ``--quiet``.

Progress output is best effort: when its reader goes away (``vocalfusion batch … 2>&1 |
head -1``), the output stops and the work goes on. The stream is pointed at ``/dev/null``
(so that Python's final flush does not fail either) and the run finishes, writes every table
and exits with its usual code.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from fusion.batch.pool import FileOutcome, FileTask
    from fusion.batch.runner import BatchSummary

__all__ = ["RichProgress", "LogLines", "summary_lines", "silence_closed_pipe"]


def silence_closed_pipe(stream: IO[str]) -> None:
    """Point ``stream`` at ``/dev/null`` after its reader went away (a broken pipe).

    Further writes, and the interpreter's final flush, then succeed silently instead of
    raising ``BrokenPipeError`` — a closed pager or ``head`` must not stop a batch.
    """
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test's StringIO): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _ThroughputColumn(ProgressColumn):
    """Files per minute since the task started (load time included)."""

    def render(self, task: Any) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed:
            return Text("– files/min", style="progress.data.speed")
        return Text(f"{60.0 * task.completed / elapsed:.1f} files/min",
                    style="progress.data.speed")


class RichProgress:
    """Live progress bar on stderr (rich). ETA from the recent rate over 5 minutes."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"), _ThroughputColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, speed_estimate_period=300.0, transient=False)
        self._task: Any = None
        self._failed = 0

    def _say(self, text: str) -> None:
        try:
            self._progress.console.print(text)
        except BrokenPipeError:
            silence_closed_pipe(self.console.file)

    def begin(self, *, total: int, cached: int, engine: str, num_workers: int) -> None:
        todo = total - cached
        self._say(f"{total} files: {cached} already analysed with this config, "
                           f"{todo} to analyse ({engine} engine, {num_workers} workers)")
        self._progress.start()
        self._task = self._progress.add_task("analysing", total=todo, failed="0 failed")

    def file_started(self, task: FileTask, pid: int | None) -> None:
        pass

    def file_finished(self, outcome: FileOutcome) -> None:
        if outcome.status == "error":
            self._failed += 1
            self._say(f"[red]error:[/] {escape(outcome.message or '')}")
        failed = f"[red]{self._failed} failed[/]" if self._failed else "0 failed"
        self._progress.update(self._task, advance=1, failed=failed)
        task = self._progress.tasks[-1]
        if task.total is not None and task.completed >= task.total:
            self._progress.stop_task(self._task)  # freeze elapsed time and files/min

    def end(self, summary: BatchSummary) -> None:
        self._progress.stop()
        for line in summary_lines(summary):
            self._say(escape(line))

    def close(self) -> None:
        """Stop the live display (after an interruption)."""
        self._progress.stop()


class LogLines:
    """One line per file on ``stream`` (stderr by default): no colours, no redraws."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._closed = False
        self._total = 0
        self._done = 0
        self._t0 = time.perf_counter()

    def _print(self, line: str) -> None:
        if self._closed:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            self._closed = True
            silence_closed_pipe(self.stream)

    def begin(self, *, total: int, cached: int, engine: str, num_workers: int) -> None:
        self._total = total - cached
        self._t0 = time.perf_counter()
        self._print(f"batch: {total} files, {cached} already analysed with this config, "
                    f"{self._total} to analyse ({engine} engine, {num_workers} workers)")

    def file_started(self, task: FileTask, pid: int | None) -> None:
        pass

    def file_finished(self, outcome: FileOutcome) -> None:
        self._done += 1
        width = len(str(self._total))
        head = f"[{self._done:>{width}}/{self._total}] {outcome.status:<5} " \
               f"{outcome.elapsed_s:7.1f} s  {outcome.path}"
        if outcome.status == "ok":
            facts = [f"{outcome.audio_s:.1f} s audio"] if outcome.audio_s is not None else []
            if outcome.session_status and outcome.session_status != "ok":
                facts.append(outcome.session_status)
            self._print(head + (f"  ({', '.join(facts)})" if facts else ""))
        else:
            self._print(f"{head}  {outcome.error_class}: {outcome.message}")

    def end(self, summary: BatchSummary) -> None:
        for line in summary_lines(summary):
            self._print(line)

    def close(self) -> None:
        pass


def summary_lines(summary: BatchSummary) -> list[str]:
    """A few plain lines describing a finished batch."""
    rate = (f", {summary.files_per_min:.1f} files/min" if summary.files_per_min is not None
            else "")
    lines = [
        f"done in {summary.elapsed_s:.1f} s{rate}: {summary.n_analysed} analysed, "
        f"{summary.n_cached} already done, {summary.n_failed} failed "
        f"({summary.n_insufficient_speech} with insufficient speech)",
        f"outputs in {summary.out_dir}: results/*.json, segments.parquet, sessions.parquet, "
        f"errors.csv, manifest.json",
    ]
    if summary.n_failed:
        lines.append(f"{summary.n_failed} failed file(s) listed in "
                     f"{summary.out_dir}/errors.csv; a rerun retries them")
    return lines
