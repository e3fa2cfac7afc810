"""Speed of the emotion stream, and what int8 quantisation does to its probabilities.

Run by hand (about 3-5 minutes on 2 CPU cores)::

    /work/venv/bin/python benchmarks/emotion.py [--repeats 3] [--threads 2] [--copies 6]

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
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from features.audio import audio_from_signal, load_audio, resample  # noqa: E402
from features.emotion import EmotionConfig, EmotionStream, window_bounds  # noqa: E402
from features.segments import Segment, SegmentsConfig, segment_audio  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--copies", type=int, default=6, help="jfk.flac repetitions (11 s each)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a trained model directory for the int8 check (default: random)")
    args = ap.parse_args()

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
