"""Per-segment engine measures of every clip of a corpus manifest, cached as parquet.

Each clip is analysed once by the engine (``Analyzer(streams=["prosody"])``: the configured
segmentation, then the prosody stream with formants, spectral balance and voice quality); every
speech segment becomes one row of the table, with the clip's manifest columns. Fusion is off
(the measures are what is cached; ``benchmarks/stress_ravdess.py`` scores them).

Short clips: EmoDB clips are 2.0 s and RAVDESS clips about 3.5 s with 1.5–2 s of speech, so
``audio.min_speech_s`` is lowered to 0.5 s here (the default 2.0 s would turn most clips into
"insufficient speech"); ``segments.min_segment_s`` is lowered to 0.5 s for the same reason.

Run (≤ 2 worker processes; about 10 minutes for both corpora on 2 shared cores)::

    python benchmarks/datasets.py emodb   <emodb wav/>  -o benchmarks/results/emodb.csv
    python benchmarks/datasets.py ravdess <ravdess audio_speech_actors_01-24/> \\
        -o benchmarks/results/ravdess.csv
    python benchmarks/emotion_features.py benchmarks/results/emodb.csv \\
        -o benchmarks/results/emodb_features.parquet
    python benchmarks/emotion_features.py benchmarks/results/ravdess.csv \\
        -o benchmarks/results/ravdess_features.parquet

``benchmarks/results/`` is git-ignored.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: settings for short acted clips (documented in docs/models.md)
OVERRIDES = ("audio.min_speech_s=0.5", "segments.min_segment_s=0.5", "fusion.enabled=false",
             "prosody.run_praat_in=this-process", "runtime.num_threads=1",
             "runtime.parallel_streams=false")

_ANALYZER: Any = None


def _init() -> None:
    global _ANALYZER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from fusion.config import load_config
    from fusion.engine.analyzer import Analyzer

    _ANALYZER = Analyzer(load_config(overrides=list(OVERRIDES)), streams=["prosody"]).load()


def _one(row: dict[str, str]) -> list[dict[str, Any]]:
    """Rows (one per speech segment) of one clip; one row with ``status`` when none."""
    try:
        res = _ANALYZER.process_file(row["path"])
    except Exception as exc:  # noqa: BLE001 - a bad clip is recorded, not fatal
        return [{**row, "status": f"error: {type(exc).__name__}: {exc}", "segment": -1}]
    out: list[dict[str, Any]] = []
    for k, seg in enumerate(res.segments):
        rec: dict[str, Any] = {**row, "status": "ok", "segment": k, "start_s": seg.start_s,
                               "end_s": seg.end_s}
        if seg.prosody is not None:
            rec.update({key: (float(v) if v is not None else None)
                        for key, v in seg.prosody.model_dump(exclude={"missing"}).items()})
        out.append(rec)
    if not out:
        out.append({**row, "status": str(res.status), "segment": -1})
    return out


def extract(manifest: str | Path, output: str | Path, workers: int = 2,
            limit: int | None = None) -> Path:
    """Analyse every clip of ``manifest`` and write the per-segment table to ``output``."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from datasets import read_manifest

    rows = [r.model_dump() for r in read_manifest(manifest)][:limit]
    t0 = time.perf_counter()
    recs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, min(2, workers)), initializer=_init) as pool:
        for i, part in enumerate(pool.map(_one, rows, chunksize=8)):
            recs.extend(part)
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{len(rows)} clips, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    df = pd.DataFrame(recs)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    n_ok = df.loc[df["status"] == "ok", "path"].nunique()
    print(f"{len(rows)} clips ({n_ok} with speech segments), {len(df)} rows in "
          f"{time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-segment engine measures of a manifest")
    ap.add_argument("manifest")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--workers", type=int, default=2, help="processes (at most 2)")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    extract(args.manifest, args.output, args.workers, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
