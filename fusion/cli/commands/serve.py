"""``vocalfusion serve``: the HTTP service (FastAPI + uvicorn, one process, models loaded once)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from features.errors import ConfigError
from fusion.cli.commands._common import add_config_args, config_from_args

__all__ = ["register", "run", "settings_from_args"]

_MiB = 1 << 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve the HTTP API (FastAPI)",
        description="Serve the HTTP API: POST /v1/analyze, /v1/report, /v1/jobs; GET /healthz, "
                    "/readyz, /v1/models; schema at /openapi.json. Without an API key the "
                    "server answers loopback clients only and refuses a non-loopback host.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--api-key-env", default="VOCALFUSION_API_KEY", metavar="VAR",
                   help="environment variable holding the bearer API key "
                        "(default: VOCALFUSION_API_KEY; unset = no key, loopback only)")
    p.add_argument("--allow-unauthenticated-remote", action="store_true",
                   help="serve a non-loopback host without an API key (only behind a proxy "
                        "that authenticates)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, metavar="MB",
                   help="size limit of one upload (default: 100)")
    p.add_argument("--max-duration-s", type=float, default=600.0, metavar="S",
                   help="audio duration limit of /v1/analyze and /v1/report (default: 600)")
    p.add_argument("--job-max-duration-s", type=float, default=4 * 3600.0, metavar="S",
                   help="audio duration limit of /v1/jobs (default: 14400)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="analyses at the same time (default: cores // runtime.num_threads)")
    p.add_argument("--max-queue", type=int, default=4, metavar="N",
                   help="requests that may wait for a worker; beyond: 429 (default: 4)")
    p.add_argument("--request-timeout-s", type=float, default=300.0, metavar="S",
                   help="longest wait of a synchronous request; beyond: 504 (default: 300)")
    p.add_argument("--max-connections", type=int, default=128, metavar="N",
                   help="open connections uvicorn accepts (default: 128)")
    p.add_argument("--temp-dir", type=Path, default=None, metavar="DIR",
                   help="where private per-request temp dirs go (default: system temp)")
    p.add_argument("--docs", action="store_true",
                   help="serve Swagger UI at /docs (it loads scripts from a CDN)")
    p.add_argument("--background-load", action="store_true",
                   help="accept connections while models load (/readyz is 503 until done)")
    add_config_args(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    """:class:`fusion.server.app.ServerSettings` from parsed arguments (API key from the env)."""
    from pydantic import SecretStr

    from fusion.server.app import ServerSettings

    env_key = os.environ.get(args.api_key_env) or None if args.api_key_env else None
    key = SecretStr(env_key) if env_key is not None else None
    try:
        return ServerSettings(
            host=args.host, port=args.port, api_key=key,
            allow_unauthenticated_remote=args.allow_unauthenticated_remote,
            max_upload_bytes=int(args.max_upload_mb * _MiB),
            max_duration_s=args.max_duration_s, job_max_duration_s=args.job_max_duration_s,
            workers=args.workers, max_queue=args.max_queue,
            request_timeout_s=args.request_timeout_s, temp_dir=args.temp_dir,
            docs=args.docs, load_models="background" if args.background_load else "startup")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server settings: {problems}") from None


def run(args: argparse.Namespace) -> int:
    from fusion.server.access_log import configure_json_logging
    from fusion.server.app import check_bind_safety, run_server

    settings = settings_from_args(args)
    check_bind_safety(settings)
    cfg = config_from_args(args)
    level = logging.DEBUG if getattr(args, "verbose", 0) >= 2 else logging.INFO
    configure_json_logging(level)
    run_server(cfg, settings, max_connections=args.max_connections)
    return 0
