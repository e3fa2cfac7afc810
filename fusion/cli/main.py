"""``vocalfusion`` command line: analyze | report | batch | calibrate | baseline | serve | models.

Exit codes: 0 success; 1 some inputs failed (partial results written); 2 usage or config error;
3 nothing could be processed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from features.errors import VocalfusionError

__all__ = ["main", "build_parser"]

#: allow-list of sub-command modules (each has ``register(subparsers)``)
_COMMANDS = ("analyze", "report", "batch", "calibrate", "baseline", "serve", "models", "live")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocalfusion",
        description="Time-aligned vocal-biomarker measurements from recorded speech. "
                    "Scores are research measurements, not a diagnosis.")
    parser.add_argument("--version", action="version", version=f"vocalfusion {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"fusion.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fusion.cli.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    from fusion._version import package_version

    return package_version()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VocalfusionError as exc:
        from rich.markup import escape

        from fusion.cli.commands._common import err_console

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
