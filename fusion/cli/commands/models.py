"""``vocalfusion models list | fetch``: which models the config uses, and getting them.

``models list`` shows every model the active config would load (stream, spec, where it comes
from — bundled package, local path, Hugging Face cache or a needed download — whether it is
available now, and what to do when it is not). It never uses the network. Exit code 0.

``models fetch`` downloads the configured hub models that are not cached yet (safetensors,
config and tokenizer files; pickle weights only where a stream's ``allow_pickle_weights`` is
on). Exit code 0 when every model is available afterwards, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from features.sources import DEFAULT_HUB_TIMEOUT_S
from fusion.cli.commands._common import add_config_args, config_from_args, console, err_console
from fusion.engine.inventory import MODEL_STREAMS

__all__ = ["register", "func"]

_ORIGIN_TEXT = {
    "bundled": "bundled package",
    "local": "local path",
    "hub-cache": "hub cache",
    "hub-download": "hub download",
    "builtin": "built in",
    "download": "download",
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models list`` and ``models fetch`` to the ``vocalfusion`` sub-parsers."""
    parser = subparsers.add_parser(
        "models", help="list or fetch the models the config uses",
        description="List the models the active config uses (no network), or download the "
                    "missing hub models into the Hugging Face cache.")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    p_list = actions.add_parser("list", help="show every model, its source and availability")
    add_config_args(p_list)
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.set_defaults(func=func, models_action="list")
    p_fetch = actions.add_parser("fetch", help="download the configured hub models")
    add_config_args(p_fetch)
    p_fetch.add_argument("--stream", action="append", default=None, metavar="NAME",
                         help="only this stream's model (repeatable), one of "
                              f"{', '.join(MODEL_STREAMS)}; e.g. --stream emotion")
    p_fetch.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                         help="give up when the hub does not answer within this time "
                              "(default: HF_HUB_ETAG_TIMEOUT or "
                              f"{DEFAULT_HUB_TIMEOUT_S:g} s)")
    p_fetch.set_defaults(func=func, models_action="fetch")
    parser.set_defaults(func=func, models_action=None, _models_parser=parser)
    return parser


def func(args: argparse.Namespace) -> int:
    """Run ``models list`` or ``models fetch``; returns the exit code."""
    action = getattr(args, "models_action", None)
    if action == "list":
        return _list(args)
    if action == "fetch":
        return _fetch(args)
    parser = getattr(args, "_models_parser", None)
    if parser is not None:
        parser.print_help()
    return 2


def _where(r: Any) -> str:
    src = r.source
    if src is None:
        return ""
    if src.available and src.path:
        return src.path
    if src.repo_id:
        rev = src.commit or src.revision or "main"
        return f"{src.repo_id}@{rev[:12]}"
    return src.path or ""


def _print(rows: list[Any], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, expand=False)
    table.add_column("Stream", style="bold", no_wrap=True)
    table.add_column("Model", overflow="fold")
    table.add_column("Source", no_wrap=True)
    table.add_column("Available", no_wrap=True)
    table.add_column("Location", overflow="fold")
    for r in rows:
        table.add_row(escape(r.stream), escape(r.spec), _ORIGIN_TEXT.get(r.origin, r.origin),
                      "[green]yes[/]" if r.available else "[red]no[/]", escape(_where(r)))
    console.print(table)
    problems = [r for r in rows if not r.available]
    for r in problems:
        console.print(f"[bold]{escape(r.stream)}[/]: {escape(r.detail)}")


def _list(args: argparse.Namespace) -> int:
    from fusion.engine.inventory import list_models

    cfg = config_from_args(args)
    rows = list_models(cfg)
    if getattr(args, "json", False):
        data = [{"stream": r.stream, "spec": r.spec, "origin": r.origin,
                 "available": r.available, "detail": r.detail,
                 "path": r.source.path if r.source else None,
                 "revision": (r.source.commit or r.source.revision) if r.source else None}
                for r in rows]
        console.print_json(json.dumps(data))
        return 0
    _print(rows, "vocalfusion models (active config)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from fusion.engine.inventory import fetch_models

    cfg = config_from_args(args)
    rows = fetch_models(cfg, timeout_s=args.timeout, streams=args.stream)
    if not rows:
        err_console.print("no model to fetch: the active config loads no model of the "
                          f"stream(s) {', '.join(args.stream or [])} (a stream that is off "
                          "in the config has none; turn it on with --set NAME.enabled=true)")
        return 1
    _print(rows, "vocalfusion models fetch")
    return 0 if all(r.available for r in rows) else 1
