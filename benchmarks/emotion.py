"""Speed of the emotion stream, and what int8 quantisation does to its probabilities.

Run by hand (about 3-5 minutes on 2 CPU cores)::

    /work/venv/bin/python benchmarks/emotion.py [--repeats 3] [--threads 2] [--copies 6]

``--memory`` measures the stream's memory instead (see :func:`memory_main`; about 25 minutes
with a baseline)::

    /work/venv/bin/python benchmarks/emotion.py --memory [--baseline REV] [--minutes 2 10 30]

Model: the REAL wav2vec2-base architecture (``Wav2Vec2Config()`` defaults: 12 layers, hidden
768, group-norm front end, no attention mask — the architecture of
superb/wav2vec2-base-superb-er, with its weighted layer sum and 4 classes) with RANDOM
weights. Random weights cost exactly as much compute as trained ones, so the timings are real;
the probabilities mean nothing, which limits what the int8 comparison can show (see below).

Audio: REAL speech, examples/jfk.flac (11 s) repeated ``--copies`` times (default about 68 s);
copy i is resampled by a factor 1 + 0.013 i (slightly slower), so that Silero VAD segments of
different copies differ in length, as segments of real recordings do.

Compared in one run, round-robin over ``--repeats`` repeats (medians reported; model loading
and one warm-up call excluded), as wall time *and* CPU time of this process (on a shared
machine the wall time also counts waiting for a core; the 1-min load average is printed):

* ``naive``: every 5-s chunk written to a temporary WAV file and passed to a
  ``transformers.pipeline("audio-classification")`` call (decode by ffmpeg, one call each)
* ``one-by-one``: EmotionStream with batch_size = 1 on the 5-s chunks
* ``batched``: EmotionStream with batch_size = 8 (equal-length 5-s chunks batch together)
* ``batched int8``: the same with ``quantize = true`` (dynamic int8 Linear layers)
* ``vad one-by-one`` / ``vad batched``: Silero VAD segments (mixed lengths: only equal-length
  windows may share a batch, so batching helps less)

int8 vs fp32: the largest absolute difference of any class probability over all chunks, and
whether the top class agrees, for (a) the randomly initialised head (probabilities near
uniform, so small differences are easy) and (b) the same model with the classification head's
weights multiplied by 20 ("sharpened"), so that probabilities spread over [0, 1] and the
encoder's quantisation error has to survive a steep softmax. Neither is a trained emotion model:
before recommending ``quantize`` for a trained model, re-run the comparison with it
(``--model DIR``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
# --memory workers of a baseline revision import its ``features`` package from another folder
sys.path.insert(0, os.environ.get("VF_EMOTION_BENCH_CODE") or str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from features.audio.load import audio_from_signal, load_audio, resample  # noqa: E402
from features.emotion.stream import EmotionConfig, EmotionStream, window_bounds  # noqa: E402
from features.segments.vad import Segment, SegmentsConfig, segment_audio  # noqa: E402

SR = 16_000
LABELS = ["neu", "hap", "ang", "sad"]


def build_base_model(path: Path, *, sharpen: float = 1.0, seed: int = 0) -> Path:
    """wav2vec2-base architecture, random weights, superb-like head; safetensors."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(num_labels=4, id2label=dict(enumerate(LABELS)),
                         label2id={lab: i for i, lab in enumerate(LABELS)},
                         use_weighted_layer_sum=True)
    model = Wav2Vec2ForSequenceClassification(cfg).eval()
    if sharpen != 1.0:
        with torch.no_grad():
            model.classifier.weight.mul_(sharpen)
            model.projector.weight.mul_(sharpen)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(path)
    return path


def chunks(duration_s: float, step_s: float = 5.0) -> list[Segment]:
    out, t = [], 0.0
    while t + 0.5 < duration_s:
        out.append(Segment(t, min(t + step_s, duration_s)))
        t += step_s
    return out


def naive_runner(model_dir: Path, audio, segs: list[Segment], threads: int):
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    clf = pipeline("audio-classification", model=str(model_dir), device=-1)
    tmpdir = Path(tempfile.mkdtemp(prefix="vf_bench_"))

    def run():
        results = []
        for k, s in enumerate(segs):
            wav = tmpdir / f"chunk_{k}.wav"
            sf.write(wav, audio.crop(s.start_s, s.end_s), SR)
            results.append(clf(str(wav), top_k=None))
            wav.unlink()
        return results

    return run


def stream_runner(model_dir: Path, audio, segs, *, batch_size: int, quantize: bool,
                  threads: int):
    stream = EmotionStream(EmotionConfig(model=str(model_dir), batch_size=batch_size,
                                         quantize=quantize, window_s=8.0),
                           num_threads=threads).load()
    return lambda: stream.run(audio, segs, {})


def probs(out) -> np.ndarray:
    return np.array([[r.model_probabilities[k] for k in LABELS] for r in out.rows
                     if r is not None])


def int8_check(model_dir: Path, audio, segs, threads: int) -> tuple[float, float, int]:
    fp32 = probs(stream_runner(model_dir, audio, segs, batch_size=8, quantize=False,
                               threads=threads)())
    int8 = probs(stream_runner(model_dir, audio, segs, batch_size=8, quantize=True,
                               threads=threads)())
    agree = float(np.mean(fp32.argmax(1) == int8.argmax(1)))
    return float(np.abs(fp32 - int8).max()), agree, len(fp32)


# ----------------------------------------------------------------------------- memory

MEMORY_DOC = """Memory of the emotion stream alone (``--memory``).

Every measurement runs in a fresh process (peak RSS is per process): read the first N minutes
of ``benchmarks/results/cache/speech_10min.flac`` (N <= 10) or ``speech_120min.flac``
(synthetic espeak-ng speech, made by ``benchmarks/pipeline.py``), take the Silero VAD segments
(computed once by the current code, the same list for every process), note the RSS, load the
stream (wav2vec2-base architecture, RANDOM weights: ``benchmarks/results/cache/
wav2vec2-base-random``, 2 threads, ``embeddings = true``), run it ``runs`` times on the same
audio, note the peak RSS (``ru_maxrss``) after each run.

Reported per (code, fp32/int8, length): the process's peak RSS, the stream's share of it
(peak minus the RSS before loading the model: load + run), the peak after the first and after
the last run (a difference is memory that grows with the number of files), and the median
time per segment over the runs. Lengths (``--minutes``, default 2 10 30) show whether memory
grows with the length of a file; the 10-minute length runs ``--repeats`` times, the others
once. ``--baseline REV`` measures the ``features`` package of git revision REV (extracted
with ``git archive`` into a temporary folder) beside the current code, alternating, so that a
change of machine load hits both alike; the 1-minute load average is printed with each time.

Measured (2-core VM; ``--baseline d1055d4``, the code before the memory work; tables and causes
in docs/models.md, "Memory"): the stream's share of the peak on the 10-minute file went from
1777 to 836 MB (fp32) and from 2254 to 644 MB (int8); 2 / 10 / 30 minutes: fp32 1002 / 1782 /
1992 MB before, 797 / 835 / 920 MB now; int8 1488 / 2248 / 2542 before, 646 / 660 / 684 now;
2 hours (``--minutes 120``, now only): fp32 910 MB, int8 737 MB.
Three runs of the 10-minute file in one process: fp32 process peak 2061 → 2333 → 2474 MB before,
1120 → 1181 → 1181 MB now. Time per segment unchanged (fp32 393 / 389 ms, int8 281 / 284 ms,
load average 0.9-2.1).
"""


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _speech_slice(minutes: float) -> Path:
    from pipeline import speech_file  # benchmarks/pipeline.py (this folder)

    return speech_file(10 if minutes <= 10 else 120)


def _segments_file(minutes: float) -> Path:
    """Silero VAD segments of the first ``minutes`` (JSON, cached)."""
    import json

    out = ROOT / "benchmarks" / "results" / "cache" / f"emotion_segments_{minutes:g}min.json"
    if not out.exists():
        y, sr = sf.read(_speech_slice(minutes), frames=int(minutes * 60 * SR), dtype="float32")
        segs = segment_audio(y, sr, SegmentsConfig())
        out.write_text(json.dumps([[s.start_s, s.end_s] for s in segs]))
    return out


def memory_worker(spec: dict) -> dict:
    """One measurement (in its own process): see :data:`MEMORY_DOC`."""
    import json

    import torch  # noqa: F401 - imported before the first RSS reading, as a pipeline has
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    minutes = float(spec["minutes"])
    y, sr = sf.read(_speech_slice(minutes), frames=int(minutes * 60 * SR), dtype="float32")
    audio = audio_from_signal(y, sr, name=f"speech_{minutes:g}min")
    del y
    segs = [Segment(a, b) for a, b in json.loads(Path(spec["segments"]).read_text())]
    options = ({"max_batch_s": spec["max_batch_s"]}
               if spec.get("max_batch_s") and "max_batch_s" in EmotionConfig.model_fields
               else {})
    config = EmotionConfig(model=spec["model"], quantize=spec["quantize"], embeddings=True,
                           **options)
    rss0 = _rss_mb()
    stream = EmotionStream(config, num_threads=spec["threads"]).load()
    out = {"rss_before_load": rss0, "rss_after_load": _rss_mb(), "segments": len(segs),
           "runs": []}
    for _ in range(spec["runs"]):
        t0 = time.perf_counter()
        stream.run(audio, segs, {})
        out["runs"].append({"s": time.perf_counter() - t0, "peak": _peak_mb(),
                            "rss": _rss_mb(), "load": os.getloadavg()[0]})
    return out


def _run_worker(spec: dict, code: Path | None) -> dict:
    import json
    import subprocess

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if code is not None:
        env["VF_EMOTION_BENCH_CODE"] = str(code)
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-worker",
                          json.dumps(spec)], capture_output=True, text=True, env=env,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory worker failed ({spec}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _baseline_code(rev: str) -> Path:
    """The ``features`` package of git revision ``rev``, extracted into a temporary folder."""
    import io
    import subprocess
    import tarfile

    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "features"],
                          capture_output=True, check=True).stdout
    dest = Path(tempfile.mkdtemp(prefix="vf_emotion_baseline_"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def memory_main(args: argparse.Namespace) -> int:
    """``--memory``: see :data:`MEMORY_DOC`."""
    import json

    from pipeline import random_wav2vec2_base

    print(MEMORY_DOC.split("\n")[0])
    model = random_wav2vec2_base()
    codes: list[tuple[str, Path | None]] = [("current", None)]
    if args.baseline:
        codes.insert(0, (f"baseline {args.baseline}", _baseline_code(args.baseline)))
    print(f"model: {model} (wav2vec2-base architecture, RANDOM weights); threads "
          f"{args.threads}; cpu count {os.cpu_count()}; max_batch_s "
          f"{args.max_batch_s or 'config default'}")
    results = []
    for minutes in args.minutes:
        segments = _segments_file(minutes)
        runs = args.repeats if minutes == 10 else 1
        for quantize in (False, True):
            for name, code in codes:  # alternating: load changes hit both alike
                spec = {"minutes": minutes, "quantize": quantize, "runs": runs,
                        "segments": str(segments), "model": str(model),
                        "threads": args.threads, "max_batch_s": args.max_batch_s}
                r = _run_worker(spec, code)
                r.update(code=name, minutes=minutes, dtype="int8" if quantize else "fp32")
                results.append(r)
                peak = r["runs"][-1]["peak"]
                ms = statistics.median(x["s"] for x in r["runs"]) / r["segments"] * 1000
                loads = "/".join(f"{x['load']:.1f}" for x in r["runs"])
                print(f"  {minutes:5g} min {r['dtype']:4s} {name:22s} peak {peak:6.0f} MB "
                      f"(stream {peak - r['rss_before_load']:5.0f} MB; after run 1 "
                      f"{r['runs'][0]['peak']:5.0f}, after run {len(r['runs'])} "
                      f"{peak:5.0f}); {r['segments']} segments, {ms:5.0f} ms/segment "
                      f"(median of {len(r['runs'])}; load {loads})", flush=True)
    print("\npeak RSS of the stream alone (peak - RSS before loading the model), MB, first run:")
    header = "".join(f"{m:>9g} min" for m in args.minutes)
    print(f"{'':32s}{header}")
    for name, _ in codes:
        for dtype in ("fp32", "int8"):
            cells = "".join(
                f"{r['runs'][0]['peak'] - r['rss_before_load']:13.0f}" for m in args.minutes
                for r in results if r["minutes"] == m and r["code"] == name
                and r["dtype"] == dtype)
            print(f"{name + ' ' + dtype:32s}{cells}")
    out = ROOT / "benchmarks" / "results" / "emotion_memory.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nraw numbers: {out}")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-worker":
        import json

        print(json.dumps(memory_worker(json.loads(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memory", action="store_true",
                    help="measure the stream's memory instead of its speed (MEMORY_DOC in "
                         "this file)")
    ap.add_argument("--baseline", default=None,
                    help="--memory: also measure the features package of this git revision")
    ap.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0, 30.0],
                    help="--memory: audio lengths")
    ap.add_argument("--max-batch-s", type=float, default=None,
                    help="--memory: emotion.max_batch_s (default: the config default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--copies", type=int, default=6, help="jfk.flac repetitions (11 s each)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a trained model directory for the int8 check (default: random)")
    args = ap.parse_args()
    if args.memory:
        return memory_main(args)

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    jfk = load_audio(ROOT / "examples" / "jfk.flac")
    # copy i is resampled by 1 + 0.013 i (slightly slower speech), so that VAD segments of
    # different copies do not have identical lengths (identical lengths would batch together
    # and flatter the VAD-batched case)
    copies = [jfk.y if i == 0 else resample(jfk.y, SR, int(round(SR * (1 + 0.013 * i))))
              for i in range(args.copies)]
    audio = audio_from_signal(np.concatenate(copies).astype(np.float32), SR, name="jfk_copies")
    dur = audio.duration_s
    segs = chunks(dur, 5.0)
    vad_segs = segment_audio(audio.y, SR, SegmentsConfig())
    print(f"audio: examples/jfk.flac x{args.copies} (resampled copies) = {dur:.1f} s real speech; "
          f"{len(segs)} chunks of 5 s; {len(vad_segs)} VAD segments "
          f"({min(s.duration_s for s in vad_segs):.2f}-"
          f"{max(s.duration_s for s in vad_segs):.2f} s)")
    vad_lengths = [b - a for s in vad_segs
                   for a, b in window_bounds(len(audio.crop(s.start_s, s.end_s)), SR, 8.0)]
    print(f"VAD windows: {len(vad_lengths)}, distinct lengths: {len(set(vad_lengths))} "
          "(only windows of equal length share a batch)")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {args.threads}, cpu count {os.cpu_count()}, repeats {args.repeats}")
    tmp = Path(tempfile.mkdtemp(prefix="vf_bench_models_"))
    base = build_base_model(tmp / "base")
    print("model: wav2vec2-base architecture (94.6 M parameters), RANDOM weights, 4 labels\n")

    cases = [
        ("naive (temp wav + pipeline per chunk)", lambda: naive_runner(base, audio, segs,
                                                                        args.threads)),
        ("one-by-one (batch_size=1)", lambda: stream_runner(base, audio, segs, batch_size=1,
                                                            quantize=False, threads=args.threads)),
        ("batched (batch_size=8)", lambda: stream_runner(base, audio, segs, batch_size=8,
                                                         quantize=False, threads=args.threads)),
        ("batched int8", lambda: stream_runner(base, audio, segs, batch_size=8, quantize=True,
                                               threads=args.threads)),
        ("vad one-by-one", lambda: stream_runner(base, audio, vad_segs, batch_size=1,
                                                 quantize=False, threads=args.threads)),
        ("vad batched (batch_size=8)", lambda: stream_runner(base, audio, vad_segs,
                                                             batch_size=8, quantize=False,
                                                             threads=args.threads)),
    ]
    runners = []
    for name, make in cases:
        fn = make()
        fn()  # warm-up (first call allocates)
        runners.append((name, fn))
    # Round-robin: every repeat runs every method once, so that a change of machine load
    # (shared machines) hits all methods alike. Wall time and this process's CPU time.
    wall: dict[str, list[float]] = {name: [] for name, _ in runners}
    cpu: dict[str, list[float]] = {name: [] for name, _ in runners}
    load0 = os.getloadavg()[0]
    for r in range(args.repeats):
        for name, fn in runners:
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        print(f"  repeat {r + 1}/{args.repeats} done (load average {os.getloadavg()[0]:.1f})",
              flush=True)
    load1 = os.getloadavg()[0]
    results = {name: statistics.median(v) for name, v in wall.items()}
    cpu_med = {name: statistics.median(v) for name, v in cpu.items()}

    naive = results[cases[0][0]]
    naive_cpu = cpu_med[cases[0][0]]
    print(f"\n1-min load average {load0:.1f} at start, {load1:.1f} at end "
          f"({os.cpu_count()} cores): wall times include waiting for the CPU when load > "
          f"{os.cpu_count()}; CPU s (this process, all threads) do not")
    print(f"{'method':40s} {'wall s':>7s} {'RTF':>6s} {'vs naive':>8s} {'CPU s':>7s} "
          f"{'CPU-RTF':>7s} {'vs naive':>8s}")
    for name, med in results.items():
        c = cpu_med[name]
        print(f"{name:40s} {med:7.2f} {med / dur:6.3f} {naive / med:7.2f}x {c:7.2f} "
              f"{c / dur:7.3f} {naive_cpu / c:7.2f}x")
    n1, n2, n3, n4, n5 = (cases[i][0] for i in range(1, 6))
    print(f"\nratios (wall / CPU): batched vs one-by-one "
          f"{results[n1] / results[n2]:.2f}x / {cpu_med[n1] / cpu_med[n2]:.2f}x; "
          f"int8 vs fp32 batched {results[n2] / results[n3]:.2f}x / "
          f"{cpu_med[n2] / cpu_med[n3]:.2f}x; VAD batched vs one-by-one "
          f"{results[n4] / results[n5]:.2f}x / {cpu_med[n4] / cpu_med[n5]:.2f}x")

    print("\nint8 vs fp32 class probabilities on the 5-s chunks (real speech):")
    models = [("random head", base)]
    if args.model is not None:
        models = [("given model", args.model)]
    else:
        models.append(("sharpened random head (x20)",
                       build_base_model(tmp / "sharp", sharpen=20.0)))
    for label, path in models:
        diff, agree, n = int8_check(path, audio, segs, args.threads)
        verdict = "within" if diff <= 0.02 else "OUTSIDE"
        print(f"  {label:30s} max |p_int8 - p_fp32| = {diff:.4f} ({verdict} 0.02), "
              f"top class agrees on {agree:.0%} of {n} chunks")
    if args.model is None:
        print("  (random weights: this bounds the numerical error of int8 on this architecture "
              "and audio only; it says nothing about a trained model's decisions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
