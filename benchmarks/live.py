"""Live analysis (issue 17): latency, concurrent real-time streams, memory, file equivalence.

Run (a few minutes on 2 cores)::

    /work/main/.venv/bin/python benchmarks/live.py                   # all parts
    /work/main/.venv/bin/python benchmarks/live.py --parts latency --streams 1,4 --seconds 40

Material: REAL read speech, LibriSpeech test-other (``/work/shared/data/librispeech``, CC BY
4.0): one speaker's utterances concatenated with 0.8 s of silence between them, one speaker per
stream (1688, 2033, 367, 533, then again).

* ``latency``: a ``vocalfusion serve``-equivalent server in a child process (default config:
  prosody, transcript, sentiment; emotion when its model is cached) and N ``websockets`` clients
  sending 100-ms frames at real time. Latency = arrival of a segment's message − the wall time
  the frame holding the segment's last sample (``end_s``) was sent. A stream "falls behind" when
  its session message arrives more than 5 s after its last frame or a status reported lag ≥ 5 s.
* ``memory``: one LiveSession in this process fed ``--memory-minutes`` of speech as fast as it
  goes (≥ 10× real time on 2 cores); RSS at the start and the end.
* ``equivalence``: the same recording streamed and analysed as a file: session F0 median,
  segment count, transcript WER of the streamed transcript against the file's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.audio.load import load_audio  # noqa: E402

LIBRI = Path("/work/shared/data/librispeech")
SPEAKERS = ("1688", "2033", "367", "533")
SR = 16_000
FRAME_S = 0.1


def speech(speaker: str, seconds: float) -> np.ndarray:
    """``seconds`` of one speaker's utterances with 0.8 s of silence between them (int16)."""
    files = sorted(glob.glob(str(LIBRI / speaker / "*.flac")))
    parts: list[np.ndarray] = []
    total = 0
    k = 0
    while total < seconds * SR:
        y = load_audio(files[k % len(files)]).y
        parts += [y, np.zeros(int(0.8 * SR), dtype=np.float32)]
        total += len(y) + int(0.8 * SR)
        k += 1
    y = np.concatenate(parts)[: int(seconds * SR)]
    return np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------------------------ server
def start_server(max_streams: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    code = textwrap.dedent(f"""
        import uvicorn
        from fusion.server.app import ServerSettings, create_app, uvicorn_config
        from fusion.server.live_ws import LiveSettings
        settings = ServerSettings(port={port})
        app = create_app(settings=settings)
        app.state.vocalfusion_live.settings = LiveSettings(max_streams={max_streams})
        uvicorn.Server(uvicorn_config(app, settings)).run()
    """)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not become ready")


def run_client(port: int, pcm: np.ndarray, out: dict[str, Any]) -> None:
    from websockets.sync.client import connect

    step = int(FRAME_S * SR)
    sent_at: list[float] = []
    latencies: list[float] = []
    max_lag = 0.0
    with connect(f"ws://127.0.0.1:{port}/v1/stream?sample_rate={SR}", max_size=None,
                 open_timeout=60) as ws:
        def send() -> None:
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(pcm), step)):
                ahead = k * FRAME_S - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                ws.send(pcm[i:i + step].tobytes())
                sent_at.append(time.monotonic())
            ws.send(json.dumps({"type": "end"}))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        last_frame_t = None
        session_t = None
        while True:
            msg = json.loads(ws.recv())
            now = time.monotonic()
            if msg["type"] == "segment":
                end = int(round(msg["segment"]["end_s"] * SR))
                k = max(0, (end - 1) // step)
                if k < len(sent_at) and end < len(pcm) - step:  # not closed by the end
                    latencies.append(now - sent_at[k])
            elif msg["type"] == "status":
                max_lag = max(max_lag, float(msg["lag_s"]))
            elif msg["type"] == "session":
                session_t = now
                last_frame_t = sent_at[-1] if sent_at else now
                out["result"] = msg["result"]
                break
            elif msg["type"] == "error":
                out["error"] = msg
                break
        sender.join(5)
    out.update(latencies=latencies, max_lag_s=max_lag,
               finish_s=(session_t - last_frame_t) if session_t and last_frame_t else None)


def latency(streams: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    proc, port = start_server(max(streams))
    try:
        for n in streams:
            outs: list[dict[str, Any]] = [{} for _ in range(n)]
            threads = [threading.Thread(target=run_client, args=(
                port, speech(SPEAKERS[i % len(SPEAKERS)], seconds), outs[i])) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            lat = np.array([x for o in outs for x in o.get("latencies", [])])
            behind = sum(1 for o in outs if o.get("error") or (o.get("finish_s") or 99) > 5
                         or o.get("max_lag_s", 0) >= 5)
            row = {"streams": n, "segments": int(len(lat)),
                   "p50_s": float(np.percentile(lat, 50)) if len(lat) else None,
                   "p95_s": float(np.percentile(lat, 95)) if len(lat) else None,
                   "max_lag_s": max(o.get("max_lag_s", 0) for o in outs),
                   "finish_s": max((o.get("finish_s") or 0) for o in outs),
                   "fell_behind": behind, "errors": [o["error"] for o in outs if "error" in o]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


# ------------------------------------------------------------------------------------ memory
def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory(minutes: float) -> dict[str, Any]:
    from fusion.engine.analyzer import Analyzer

    az = Analyzer().load()
    block = speech("1688", 60.0)
    live = az.stream(sample_rate=SR)
    step = SR  # 1-s chunks
    marks = []
    t0 = time.perf_counter()
    for minute in range(int(minutes)):
        for i in range(0, len(block), step):
            live.feed(block[i:i + step])
        marks.append(round(rss_mb(), 1))
        if minute == 0:
            first = marks[0]
    result = live.close()
    wall = time.perf_counter() - t0
    row = {"minutes": minutes, "speed_x_realtime": round(minutes * 60 / wall, 1),
           "rss_after_1_min_mb": first, "rss_end_mb": marks[-1],
           "growth_mb": round(marks[-1] - first, 1), "rss_per_min_mb": marks,
           "segments": len(result.segments)}
    print(json.dumps(row), flush=True)
    return row


# ------------------------------------------------------------------------------------ equivalence
def equivalence(seconds: float) -> dict[str, Any]:
    import jiwer

    from fusion.engine.analyzer import Analyzer

    az = Analyzer().load()
    pcm = speech("367", seconds)
    filed = az.process_signal(pcm.astype(np.float32) / 32768.0, SR)
    live = az.stream(sample_rate=SR)
    for i in range(0, len(pcm), 1600):
        live.feed(pcm[i:i + 1600])
    streamed = live.close()

    def f0(r: Any) -> float:
        return float(np.median([s.prosody.f0_median_hz for s in r.segments
                                if s.prosody and s.prosody.f0_median_hz]))

    def text(r: Any) -> str:
        return " ".join(s.transcript.text for s in r.segments if s.transcript).lower()

    norm = jiwer.Compose([jiwer.RemovePunctuation(), jiwer.ToLowerCase(),
                          jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                          jiwer.ReduceToListOfListOfWords()])
    wer = jiwer.wer(text(filed), text(streamed), reference_transform=norm,
                    hypothesis_transform=norm)
    # jfk.flac has a known transcript: WER of each against the truth
    jfk_truth = ("and so my fellow americans ask not what your country can do for you ask what "
                 "you can do for your country")
    root = Path(__file__).resolve().parents[1]
    jfk = load_audio(root / "examples" / "jfk.flac")
    jfk_pcm = np.clip(np.round(jfk.y * 32767), -32768, 32767).astype(np.int16)
    jfk_file = az.process_audio(jfk)
    jlive = az.stream(sample_rate=SR)
    for i in range(0, len(jfk_pcm), 1600):
        jlive.feed(jfk_pcm[i:i + 1600])
    jfk_live = jlive.close()
    wer_truth = {name: round(100 * jiwer.wer(jfk_truth, text(r), reference_transform=norm,
                                             hypothesis_transform=norm), 1)
                 for name, r in (("file", jfk_file), ("live", jfk_live))}
    row = {"jfk_wer_vs_truth_pct": wer_truth, "seconds": seconds,
           "segments_file": len(filed.segments),
           "segments_live": len(streamed.segments),
           "f0_median_file_hz": round(f0(filed), 2), "f0_median_live_hz": round(f0(streamed), 2),
           "f0_diff_pct": round(100 * abs(f0(streamed) - f0(filed)) / f0(filed), 2),
           "wer_live_vs_file_pct": round(100 * wer, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="equivalence,latency,memory")
    ap.add_argument("--streams", default="1,4,6")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--memory-minutes", type=float, default=10.0)
    args = ap.parse_args()
    parts = args.parts.split(",")
    if "equivalence" in parts:
        equivalence(90.0)
    if "latency" in parts:
        latency([int(x) for x in args.streams.split(",")], args.seconds)
    if "memory" in parts:
        memory(args.memory_minutes)


if __name__ == "__main__":
    main()
