"""``vocalfusion batch DIR_OR_LIST.txt -o OUT/``: analyse a corpus, resumably.

Writes ``OUT/results/<relative path>.json`` per file, ``OUT/segments.parquet``,
``OUT/sessions.parquet``, ``OUT/errors.csv`` and ``OUT/manifest.json`` (see
:mod:`fusion.batch.runner`). Exit codes: 0 every file analysed; 1 some files failed (listed in
``errors.csv``, results that could not be written among them, code ``write_failed``); 2 usage,
config or start-up error (an output folder that is a file or cannot be written, a folder
locked by another run); 3 every file failed, or the tables could not be written (full disk);
130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from rich.markup import escape

from fusion.cli.commands._common import add_config_args, config_from_args, err_console, is_tty

__all__ = ["register", "func"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch", help="analyse a corpus (folder or list file); resumable; Parquet tables",
        description="Analyse every audio file of a folder (recursively) or of a text file "
                    "listing one path per line. Writes one JSON per file, segments.parquet, "
                    "sessions.parquet, errors.csv and manifest.json into OUT. Rerunning into "
                    "the same OUT skips files already analysed with the same input bytes and "
                    "config; failed files are retried.")
    p.add_argument("source", type=Path, metavar="DIR_OR_LIST",
                   help="a folder of audio files, or a text file with one path per line")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT",
                   help="output folder (rerun into the same folder to resume)")
    p.add_argument("-w", "--workers", type=int, default=None, metavar="N",
                   help="worker processes (local) or actors (ray); default: one per thread of "
                        "runtime.num_threads, at most one per CPU core. The thread budget "
                        "runtime.num_threads is split between the workers")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: a pool of worker processes on this machine (default); "
                        "ray: Ray Data with an actor pool (pip install 'vocalfusion[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster ('auto', 'ray://head:10001'); default: "
                        "start a local Ray instance")
    p.add_argument("--ray-num-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray instance started when --ray-address is not "
                        "given (default: all)")
    p.add_argument("--timeout-s", type=float, default=300.0, metavar="S",
                   help="analysis time allowed per file on top of --timeout-per-audio-s × its "
                        "duration; 0 = no limit (default 300)")
    p.add_argument("--timeout-per-audio-s", type=float, default=5.0, metavar="S",
                   help="analysis seconds allowed per second of audio (default 5)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar: one plain line per file (for logs); the default "
                        "when stderr is not a terminal")
    add_config_args(p)
    p.set_defaults(func=func)


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the same clean-up as Ctrl+C (workers stopped, manifest)


def func(args: argparse.Namespace) -> int:
    from fusion.batch.progress import LogLines, RichProgress
    from fusion.batch.runner import BatchError, BatchWriteError, FileLimits, run_batch

    if args.workers is not None and args.workers < 1:
        err_console.print(f"error: --workers must be at least 1; got {args.workers}")
        return 2
    if args.timeout_s < 0 or args.timeout_per_audio_s < 0:
        err_console.print("error: --timeout-s and --timeout-per-audio-s must be ≥ 0")
        return 2
    cfg = config_from_args(args)
    limits = FileLimits(decode_s=cfg.audio.decode_timeout_s + 60.0,
                        base_s=args.timeout_s or None,
                        per_audio_s=args.timeout_per_audio_s)
    progress: Any = LogLines() if args.quiet or not is_tty() else RichProgress(err_console)
    try:  # only the main thread may set signal handlers
        previous: Any = signal.signal(signal.SIGTERM, _sigterm_to_exit)
    except ValueError:
        previous = None
    try:
        summary = run_batch(args.source, args.out, cfg, num_workers=args.workers,
                            engine=args.engine, ray_address=args.ray_address,
                            ray_num_cpus=args.ray_num_cpus, limits=limits,
                            progress=progress)
    except BatchWriteError as exc:  # the tables could not be written: no usable batch
        progress.close()
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 3
    except BatchError as exc:
        progress.close()
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        progress.close()
        err_console.print("interrupted: finished files are kept; rerun the same command to "
                          "resume")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return summary.exit_code
