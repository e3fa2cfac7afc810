"""Corpus throughput: a naive loop against the batch engines, side by side in one run.

Run by hand::

    /work/venv/bin/python benchmarks/batch.py                     # 60 files × 30 s
    /work/venv/bin/python benchmarks/batch.py --files 12 --seconds 20 --modes naive local-2
    /work/venv/bin/python benchmarks/batch.py --set emotion.enabled=false

Corpus: SYNTHETIC speech (espeak-ng, several voices, pitches and rates; sentences with their
natural pauses), ``--files`` WAV files of ``--seconds`` s at 22.05 kHz, generated once into a
cache folder (default ``~/.cache/vocalfusion/benchmarks/``) and reused.

Config: ``configs/default.toml`` plus ``--set`` overrides, offline (``HF_HUB_OFFLINE=1``): the
streams that run are printed (on a machine without the emotion model in the Hugging Face cache
the emotion stream is skipped, as it would be for a user).

Modes, each timed over the whole corpus into a fresh output folder (no resume), wall clock
from start to the last table written, model loading included. With ``--repeats R`` every mode
runs R times, the order reversed on every other round (A B C D, D C B A, ...) so that a load
that drifts over the run hits every mode alike; the median is reported:

* ``naive``: one process, ``Analyzer(cfg).load().process_file(p)`` for every file — the models
  are loaded again for every file; the whole thread budget (``runtime.num_threads``)
* ``local-1``: ``run_batch(engine="local", num_workers=1)`` — one worker process, models
  loaded once, the whole thread budget
* ``local-2``: two worker processes, half the thread budget each
* ``ray``: ``run_batch(engine="ray", num_workers=2)`` on a local Ray instance (start-up
  included), two actors, half the thread budget each

Printed: files/min, audio minutes per wall-clock minute, real-time factor, and the ratio to the
naive loop. The machine's load average before and after is printed too: on a shared machine the
figures are contended, and they are only comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SENTENCES = [
    "The weather was calm this morning, so we walked down to the market.",
    "Later we talked about the garden and the long summer ahead of us.",
    "She said the train would leave at seven, but it was late again.",
    "Numbers, letters, colours and shapes: the children learned them quickly.",
    "I have not been sleeping well, and work has been very stressful lately.",
    "On Sundays my brother cooks dinner for the whole family.",
    "The report is due on Friday, and I still have three sections to write.",
    "We watched the river rise after the storm and worried about the bridge.",
    "Honestly, I feel tired most days, even when nothing much has happened.",
    "The museum opens at ten, and the tickets are cheaper in the afternoon.",
    "My grandmother grew tomatoes, beans and potatoes behind the house.",
    "If the meeting runs long, please start the presentation without me.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+m7", "en-gb-x-rp+f2"]
MODES = ("naive", "local-1", "local-2", "ray")


def make_corpus(folder: Path, n_files: int, seconds: float) -> list[Path]:
    """``n_files`` synthetic espeak-ng WAVs of exactly ``seconds`` s (cached)."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"speaker{i % 6}_{i:03d}.wav"
        paths.append(path)
        if path.exists():
            continue
        voice = VOICES[i % len(VOICES)]
        pitch = 30 + (7 * i) % 40
        rate = 140 + (11 * i) % 50
        chunks, total, k = [], 0.0, 0
        sr = 22050
        while total < seconds:
            text = " ".join(SENTENCES[(i + k + j) % len(SENTENCES)] for j in range(3))
            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate),
                                "-w", tmp.name, text], check=True, capture_output=True,
                               timeout=120)
                y, sr = sf.read(tmp.name, dtype="float32")
            chunks.append(y)
            chunks.append(np.zeros(int(0.4 * sr), dtype=np.float32))  # a pause between turns
            total += (len(y) + int(0.4 * sr)) / sr
            k += 3
        y = np.concatenate(chunks)[: int(seconds * sr)]
        part = path.with_suffix(".part")
        sf.write(part, y, sr, format="WAV", subtype="PCM_16")
        part.rename(path)
    return paths


def run_naive(paths: list[Path], cfg, out: Path) -> tuple[int, int]:
    from features.errors import AudioError
    from fusion.engine.analyzer import Analyzer

    ok = failed = 0
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        try:
            result = Analyzer(cfg).load().process_file(p)  # models loaded for every file
        except AudioError:
            failed += 1
            continue
        (out / f"{p.stem}.json").write_text(result.to_json(), encoding="utf-8")
        ok += 1
    return ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds; the mode order is reversed on every other round")
    parser.add_argument("--cache", type=Path,
                        default=Path.home() / ".cache" / "vocalfusion" / "benchmarks")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args()

    from fusion.batch.runner import run_batch
    from fusion.config import load_config
    from fusion.schema import SessionResult

    corpus = args.cache / f"batch-corpus-{args.files}x{args.seconds:g}s"
    t0 = time.perf_counter()
    paths = make_corpus(corpus, args.files, args.seconds)
    print(f"corpus: {len(paths)} synthetic espeak-ng files × {args.seconds:g} s in {corpus} "
          f"(ready in {time.perf_counter() - t0:.1f} s)")
    cfg = load_config(overrides=args.overrides or None)
    audio_min = len(paths) * args.seconds / 60.0
    print(f"cpus: {os.cpu_count()}, thread budget runtime.num_threads="
          f"{cfg.runtime.num_threads}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    rows: list[tuple[str, float, int, int]] = []
    work = Path(tempfile.mkdtemp(prefix="vf-bench-batch-"))
    schedule = [(r, m) for r in range(args.repeats)
                for m in (args.modes if r % 2 == 0 else args.modes[::-1])]
    try:
        for rnd, mode in schedule:
            out = work / f"{mode}-{rnd}"
            t = time.perf_counter()
            if mode == "naive":
                ok, failed = run_naive(paths, cfg, out)
            else:
                engine = "ray" if mode == "ray" else "local"
                workers = 1 if mode == "local-1" else 2
                s = run_batch(corpus, out, cfg, num_workers=workers, engine=engine,
                              ray_num_cpus=os.cpu_count() if engine == "ray" else None)
                ok, failed = s.n_analysed, s.n_failed
            elapsed = time.perf_counter() - t
            rows.append((mode, elapsed, ok, failed))
            print(f"  round {rnd + 1}  {mode:8s} {elapsed:8.1f} s  ({ok} ok, {failed} failed), "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
            if len(rows) == 1:  # which streams ran (the same in every mode)
                first = next((p for p in sorted(out.rglob("*.json"))
                              if p.name != "manifest.json"), None)
                if first is not None:
                    r = SessionResult.from_json(first.read_bytes())
                    print("  streams: " + ", ".join(f"{k}={v.status}"
                                                    for k, v in r.streams.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    medians = {m: statistics.median(e for mm, e, _, _ in rows if mm == m) for m in args.modes}
    base = medians.get("naive")
    print()
    print(f"median of {args.repeats} round(s); {len(paths)} files, {audio_min:.1f} min of audio")
    print(f"{'mode':10s} {'wall s':>8s} {'files/min':>10s} {'audio min/min':>14s} "
          f"{'RTF':>7s} {'vs naive':>9s}")
    for mode in args.modes:
        elapsed = medians[mode]
        fpm = 60.0 * len(paths) / elapsed
        speed = audio_min / (elapsed / 60.0)
        rtf = elapsed / (audio_min * 60.0)
        ratio = f"{base / elapsed:8.2f}×" if base else "      –"
        print(f"{mode:10s} {elapsed:8.1f} {fpm:10.2f} {speed:14.2f} {rtf:7.3f} {ratio:>9s}")


if __name__ == "__main__":
    main()
