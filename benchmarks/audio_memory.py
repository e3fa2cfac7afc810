"""Peak memory and wall time of ``load_audio`` on 2-hour files, each load in its own process.

Run by hand (first run builds the cached files, a few minutes on 2 cores)::

    /work/venv/bin/python benchmarks/audio_memory.py                   # all files, both paths
    /work/venv/bin/python benchmarks/audio_memory.py --files stereo44k --json out.json
    /work/venv/bin/python benchmarks/audio_memory.py --compare before.json --json after.json

The audio is SYNTHETIC: examples/synthetic_session.flac (espeak-ng speech, 16 kHz mono, about
3 minutes) tiled to 2 hours, cached under ``benchmarks/results/cache/`` (git-ignored):

* ``stereo44k``  2 h, 44.1 kHz, stereo FLAC (left: the session resampled with soxr; right: the
  same at 0.7 gain, 37 ms later, so the two channels differ), decoded by libsndfile;
* ``mono16k``    2 h, 16 kHz, mono FLAC (no resampling needed), decoded by libsndfile;
* ``stereo44k_m4a``  the ``stereo44k`` audio as AAC in M4A (128 kb/s), decoded by ffmpeg
  (needs ffmpeg; left out without it).

Each (file, path) pair runs in a fresh ``python`` process that imports ``features.audio.load`` and
calls ``load_audio(path, hash_file=False)`` (path ``direct``) or ``load_audio(path,
hash_file=False, isolate=True)`` (path ``isolate``: decoding in the child process the server
uses). Reported: wall time of the call; peak RSS of the process (``ru_maxrss`` of
``RUSAGE_SELF``), its RSS after the imports (so the audio's own share is the difference); for
``isolate`` also the peak RSS of the decoder child (``RUSAGE_CHILDREN``). ``--save-dir`` keeps
each result's samples (``.npy``) and a later run with the same ``--save-dir`` and
``--compare-samples`` prints the max abs difference, to show a change left the output alone.

Linux carries a process's peak RSS over ``fork`` and ``exec`` into its child, so this driver
keeps itself small (numpy only; files are built and samples compared in other processes or
after the measurements): otherwise every child would report at least the driver's peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "cache"
SOURCE = ROOT / "examples" / "synthetic_session.flac"
HOURS = 2.0
FILES = {
    "stereo44k": "synthetic_2h_44k1_stereo.flac",
    "mono16k": "synthetic_2h_16k_mono.flac",
    "stereo44k_m4a": "synthetic_2h_44k1_stereo.m4a",
}


def _tile_to(path: Path, sr: int, channels: int, seconds: float) -> None:
    """Write ``seconds`` of the tiled session at ``sr`` with ``channels`` as 16-bit FLAC."""
    import soundfile as sf
    import soxr

    y, src_sr = sf.read(SOURCE, dtype="float32")
    if y.ndim > 1:
        y = y.mean(axis=1)
    if src_sr != sr:
        y = soxr.resample(y, src_sr, sr, quality="VHQ")
    if channels == 2:
        lag = int(0.037 * sr)
        right = 0.7 * np.concatenate([y[-lag:], y[:-lag]])
        tile = np.stack([y, right], axis=1)
    else:
        tile = y[:, None]
    tile = np.clip(tile, -1.0, 1.0).astype(np.float32)
    total = int(seconds * sr)
    tmp = path.with_suffix(".partial" + path.suffix)
    with sf.SoundFile(tmp, "w", samplerate=sr, channels=channels, format="FLAC",
                      subtype="PCM_16") as out:
        written = 0
        while written < total:
            n = min(len(tile), total - written)
            out.write(tile[:n])
            written += n
    tmp.replace(path)


def _encode_m4a(src: Path, dst: Path) -> None:
    tmp = dst.with_suffix(".partial.m4a")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-c:a",
                    "aac", "-b:a", "128k", str(tmp)], check=True, timeout=3600)
    tmp.replace(dst)


def ensure_files(names: list[str]) -> dict[str, Path]:
    """Build (once) and return the cached synthetic 2-hour files named in ``names``."""
    import shutil

    CACHE.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in names:
        p = CACHE / FILES[name]
        if not p.exists():
            print(f"building {p.name} (synthetic, {HOURS:g} h) ...", file=sys.stderr, flush=True)
            if name in ("stereo44k", "mono16k"):  # in a child: this process must stay small
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--build", name],
                               check=True)
            else:
                if shutil.which("ffmpeg") is None:
                    print("ffmpeg not installed: skipping the M4A file", file=sys.stderr)
                    continue
                _encode_m4a(ensure_files(["stereo44k"])["stereo44k"], p)
        paths[name] = p
    return paths


def _rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


def child(path: str, isolate: bool, save: str | None) -> None:
    """One measurement in this process; prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from features.audio.load import load_audio

    rss_import = _rss_mib(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    audio = load_audio(path, hash_file=False, isolate=isolate,
                       timeout_s=1800.0, max_duration_s=4 * 3600.0)
    wall = time.perf_counter() - t0
    out = {"wall_s": round(wall, 2), "peak_rss_mib": round(_rss_mib(resource.RUSAGE_SELF), 1),
           "rss_after_import_mib": round(rss_import, 1),
           "child_peak_rss_mib": round(_rss_mib(resource.RUSAGE_CHILDREN), 1),
           "n_out": int(audio.y.shape[0]), "duration_s": round(audio.duration_s, 3),
           "decoder": audio.source.decoder, "warnings": list(audio.warnings)}
    if save:
        np.save(save, audio.y)
    print(json.dumps(out), flush=True)


def measure(path: Path, isolate: bool, save: Path | None) -> dict[str, object]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path)]
    if isolate:
        cmd.append("--isolate")
    if save is not None:
        cmd += ["--save", str(save)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(row: dict[str, object] | None) -> str:
    if not row:
        return "—"
    if "error" in row:
        return f"error: {row['error']}"
    peak = f"{row['peak_rss_mib']:.0f} MiB"
    if row.get("child_peak_rss_mib"):
        peak += f" (child {row['child_peak_rss_mib']:.0f})"
    return f"{peak}, {row['wall_s']:.1f} s"


def _compare(path: Path, ref: Path) -> str:
    if not ref.exists():
        return f"no earlier samples ({ref.name})"
    a, b = np.load(path, mmap_mode="r"), np.load(ref, mmap_mode="r")
    if a.shape != b.shape:
        return f"length differs: {a.shape} vs {b.shape}"
    step = 1 << 22
    diff = max((float(np.max(np.abs(a[i:i + step] - b[i:i + step])))
                for i in range(0, len(a), step)), default=0.0)
    return f"max |y - earlier y| = {diff:.3g} over {len(a)} samples"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", nargs="*", default=list(FILES), choices=list(FILES))
    ap.add_argument("--paths", nargs="*", default=["direct", "isolate"],
                    choices=["direct", "isolate"])
    ap.add_argument("--json", type=Path, help="write the measurements here")
    ap.add_argument("--compare", type=Path, help="an earlier --json file to print beside")
    ap.add_argument("--save-dir", type=Path, help="keep each result's samples here (.npy)")
    ap.add_argument("--compare-samples", type=Path,
                    help="a --save-dir of an earlier run: print the max abs difference")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--build", choices=["stereo44k", "mono16k"], help=argparse.SUPPRESS)
    ap.add_argument("--isolate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.isolate, args.save)
        return 0
    if args.build:
        sr, channels = (44_100, 2) if args.build == "stereo44k" else (16_000, 1)
        _tile_to(CACHE / FILES[args.build], sr, channels, HOURS * 3600)
        return 0

    paths = ensure_files(args.files)
    before = json.loads(args.compare.read_text()) if args.compare else {}
    results: dict[str, dict[str, object]] = {}
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    header = f"{'file':<15} {'path':<8} " + (f"{'before':<34} " if before else "") + "now"
    print(header)
    saved: dict[str, Path] = {}
    for name, path in paths.items():
        for mode in args.paths:
            key = f"{name}/{mode}"
            save = args.save_dir / f"{name}_{mode}.npy" if args.save_dir else None
            row = measure(path, mode == "isolate", save)
            results[key] = row
            if save is not None and save.exists():
                saved[key] = save
            line = f"{name:<15} {mode:<8} "
            if before:
                line += f"{_fmt(before.get(key)):<34} "
            print(line + _fmt(row), flush=True)
    # only now: a child's ru_maxrss starts from this process's RSS when it was forked, so this
    # process must stay small while the children are measured
    if args.compare_samples:
        for key, save in saved.items():
            print(f"{key}: {_compare(save, args.compare_samples / save.name)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
