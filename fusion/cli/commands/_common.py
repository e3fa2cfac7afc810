"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from fusion.config import Config, load_config

__all__ = ["add_config_args", "config_from_args", "console", "err_console"]

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="config file (default: configs/default.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config key, e.g. --set segments.max_segment_s=8 "
                             "(repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides=args.overrides or None)


def is_tty() -> bool:
    return sys.stderr.isatty()
