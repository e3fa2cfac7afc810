"""Speed, memory and accuracy of the transcript stream (bundled tiny.en, faster-whisper).

Run by hand (about 1-2 minutes on 2 CPU cores)::

    /work/venv/bin/python benchmarks/transcript.py [--repeats 3] [--threads 2] [--seconds 60]

Audio:

* ``jfk``: REAL speech, examples/jfk.flac (11 s, JFK inaugural address excerpt).
* ``synthetic``: SYNTHETIC speech, espeak-ng (en-us, 160 wpm) reading the paragraph below,
  repeated until it lasts at least ``--seconds`` (default 60 s).

Compared side by side in one run, round-robin over ``--repeats`` repeats (medians reported;
model loading and one warm-up call excluded), as wall time and CPU time of this process (on a
shared machine wall time also counts waiting for a core; the 1-min load average is printed):

* ``stream``: :class:`features.transcript.stream.TranscriptStream` as the pipeline runs it on Silero
  VAD segments (speech gate, clips, word post-processing included);
* ``plain``: ``WhisperModel.transcribe`` on the whole file (no VAD, no clips), the same model,
  threads, beam and word timestamps — what the stream's guards cost or save.

Real-time factor (RTF) = processing seconds / audio seconds. WER against the text that was
read (JFK: the reference transcript), with :func:`features.transcript.stream.word_error_rate`.
Peak RSS: ``ru_maxrss`` of this process (model + audio + both paths), printed after loading
and at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
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

from features.audio.load import load_audio  # noqa: E402
from features.segments.vad import segment_audio  # noqa: E402
from features.transcript.stream import TranscriptConfig, TranscriptStream, word_error_rate  # noqa: E402

JFK_REFERENCE = ("And so my fellow Americans, ask not what your country can do for you, "
                 "ask what you can do for your country.")
PARAGRAPH = (
    "The weather was calm this morning, so we walked to the market. "
    "My brother bought fresh bread and a basket of green apples. "
    "In the evening we read a few chapters of an old book by the fire. "
    "Please call the office before noon to confirm your appointment for next week. "
    "The children played in the park while their parents talked on the bench. "
    "She opened the window and listened to the rain falling on the roof. "
    "We need to finish the report by Friday and send it to the whole team. "
    "The train to the city leaves every hour from the main station. "
    "After lunch the doctor asked how I had been sleeping during the past month. "
    "I told her that most nights I wake up early and cannot fall asleep again. "
    "Our neighbours planted tomatoes, beans and sunflowers along the fence. "
    "The library closes at six on weekdays and at noon on Saturdays. "
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def synth(path: Path, text: str) -> Path:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text],
                   check=True, capture_output=True, timeout=120)
    return path


def timed(fn) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="minimum length of the synthetic file")
    args = ap.parse_args()

    rss_start = peak_rss_mib()
    stream = TranscriptStream(TranscriptConfig(), num_threads=args.threads)
    load_s, _, _ = timed(stream.load)
    model = stream._backend.model  # the same loaded WhisperModel for the plain path
    rss_loaded = peak_rss_mib()

    with tempfile.TemporaryDirectory() as tmp:
        text = PARAGRAPH
        path = synth(Path(tmp) / "synthetic.wav", text)
        while load_audio(path).duration_s < args.seconds:
            text += " " + PARAGRAPH
            path = synth(Path(tmp) / "synthetic.wav", text)
        files = {"jfk": (ROOT / "examples" / "jfk.flac", JFK_REFERENCE),
                 "synthetic": (path, text)}
        audios = {k: load_audio(p) for k, (p, _) in files.items()}
        segments = {k: segment_audio(a.y, a.sr) for k, a in audios.items()}

        def run_stream(k: str):  # type: ignore[no-untyped-def]
            return stream.run(audios[k], segments[k], {}).session["text"]

        def run_plain(k: str):  # type: ignore[no-untyped-def]
            seg_iter, _ = model.transcribe(audios[k].y, beam_size=5, word_timestamps=True,
                                           condition_on_previous_text=False, vad_filter=False)
            return "".join(s.text for s in seg_iter).strip()

        paths = {"stream": run_stream, "plain": run_plain}
        for k in files:  # warm-up
            for fn in paths.values():
                fn(k)
        wall: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        texts: dict[tuple[str, str], str] = {}
        for _ in range(args.repeats):
            for k in files:
                for name, fn in paths.items():
                    w, c, out = timed(lambda fn=fn, k=k: fn(k))
                    wall.setdefault((k, name), []).append(w)
                    cpu.setdefault((k, name), []).append(c)
                    texts[(k, name)] = str(out)

    print(f"transcript benchmark: bundled tiny.en (faster-whisper, int8), "
          f"{args.threads} threads, {args.repeats} repeats, "
          f"load average {os.getloadavg()[0]:.2f}, CPUs {os.cpu_count()}")
    print(f"model load: {load_s:.2f} s; peak RSS before load {rss_start:.0f} MiB, "
          f"after load {rss_loaded:.0f} MiB")
    print(f"{'file':<10} {'dur s':>6} {'path':<7} {'wall s':>7} {'RTF':>7} {'cpu s':>7} "
          f"{'cpu RTF':>8} {'WER':>6}")
    for k, (_, ref) in files.items():
        dur = audios[k].duration_s
        for name in paths:
            w = statistics.median(wall[(k, name)])
            c = statistics.median(cpu[(k, name)])
            wer = word_error_rate(ref, texts[(k, name)])
            print(f"{k:<10} {dur:6.1f} {name:<7} {w:7.3f} {w / dur:7.4f} {c:7.3f} "
                  f"{c / dur:8.4f} {wer:6.3f}")
        ratio = (statistics.median(wall[(k, "stream")])
                 / statistics.median(wall[(k, "plain")]))
        print(f"{'':<10} {'':>6} stream/plain wall ratio {ratio:.2f}; "
              f"{len(segments[k])} VAD segments")
    print(f"peak RSS at end: {peak_rss_mib():.0f} MiB")
    print(f"stream text (jfk): {texts[('jfk', 'stream')]}")


if __name__ == "__main__":
    main()
