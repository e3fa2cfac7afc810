"""Explore a recording from Python: frame contours and the report's pictures as matplotlib
figures (for notebooks and papers).

Needs the plot extra: pip install "vocalfusion[plot]". Run from the repository root:

    python examples/explore.py [OUT_DIR]

Writes OUT_DIR (default ./explore_out): jfk.png (scores, F0 with segments, per-stream
contributions), jfk.contours.parquet (F0, intensity, HNR, F1–F3 on a 10-ms grid) and trend.png
(the bundled real and synthetic recordings as two sessions a week apart).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import fusion

HERE = Path(__file__).resolve().parent


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    jfk = fusion.analyze(HERE / "jfk.flac", contours=True)
    contours = jfk.contours()  # MultiIndex (file, time), float32 columns
    print(contours.describe().T[["count", "mean", "min", "max"]].round(1))
    contours.to_parquet(out_dir / "jfk.contours.parquet")
    jfk.plot().savefig(out_dir / "jfk.png", dpi=150)

    synthetic = fusion.analyze(HERE / "synthetic_session.flac")  # synthetic speech
    day = datetime(2026, 1, 5)
    fig = fusion.plot.trend([jfk, synthetic], dates=[day, day + timedelta(days=7)])
    fig.savefig(out_dir / "trend.png", dpi=150)
    print(f"wrote {out_dir / 'jfk.png'}, {out_dir / 'jfk.contours.parquet'}, "
          f"{out_dir / 'trend.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("explore_out"))
