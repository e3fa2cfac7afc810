"""Quickstart: analyse the bundled real-speech example with the Python API.

Run from the repository root:  python examples/quickstart.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import fusion

HERE = Path(__file__).resolve().parent


def main() -> None:
    result = fusion.analyze(HERE / "jfk.flac")  # SessionResult (pydantic)
    print(f"{result.source.path}: {result.source.duration_s:.1f} s, status {result.status}, "
          f"{len(result.segments)} segments")
    for name, info in result.streams.items():
        print(f"  {name:<11} {info.status}" + (f" — {info.reason}" if info.reason else ""))
    if result.fusion is not None:
        print(f"  fusion model: {result.fusion.model_name} ({result.fusion.calibration_status})")

    df = result.to_dataframe()  # MultiIndex (file, start, end)
    cols = [c for c in ("f0_mean_hz", "speech_rate_syl_per_s", "pause_ratio", "hnr_db",
                        "text", "sentiment_label", "stress", "depression_probability")
            if c in df.columns]
    with pd.option_context("display.width", 160, "display.max_colwidth", 40):
        print(df[cols])

    out = Path("out")
    out.mkdir(exist_ok=True)
    (out / "jfk.json").write_text(result.to_json(), encoding="utf-8")
    print(f"wrote {out / 'jfk.json'}")


if __name__ == "__main__":
    main()
