"""Analyse a folder of recordings with the batch runner (resumable, one bad file costs only
that file).

Run from the repository root:  python examples/batch.py [FOLDER] [OUT]
(default: the bundled examples/ folder into out/batch). Rerun it: finished files are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from fusion.batch.runner import run_batch
from fusion.config import load_config


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("out/batch")
    summary = run_batch(folder, out, load_config(), num_workers=1)
    print(summary)
    sessions = pd.read_parquet(out / "sessions.parquet")
    cols = ["file", "status", "n_segments", "stress_mean", "depression_mean"]
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(sessions[cols])
    return 0


if __name__ == "__main__":  # needed: the worker processes are started with forkserver/spawn
    sys.exit(main())
