"""``vocalfusion live``: live analysis of a file or the microphone; rows print as segments close.

``--input FILE`` streams a file (as fast as possible, or ``--realtime``); ``--mic`` records from
the microphone (``pip install 'vocalfusion[live]'`` for ``sounddevice``; Ctrl-C ends it).
``--url ws://HOST:PORT`` sends the audio to a running ``vocalfusion serve`` (``/v1/stream``)
instead of analysing in this process. The session JSON is written at the end (``-o``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from features.errors import ParameterError
from fusion.cli.commands._common import add_config_args, config_from_args, console, err_console
from fusion.files import atomic_write_text

__all__ = ["register", "run", "format_row"]

_FRAME_S = 0.5
_SR = 16_000


def register(sub: Any) -> None:
    p = sub.add_parser("live", help="live analysis of a file or the microphone",
                       description="Stream audio through the live engine (or to a server's "
                                   "/v1/stream); one row per segment as it closes, the session "
                                   "JSON at the end. Research measurements, not a diagnosis; "
                                   "scores from the prior are not calibrated.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, metavar="FILE", help="audio file to stream")
    src.add_argument("--mic", action="store_true",
                     help="record from the default microphone (needs sounddevice; Ctrl-C ends)")
    p.add_argument("--realtime", action="store_true",
                   help="send a file at real time (default: as fast as possible)")
    p.add_argument("--url", default=None, metavar="WS_URL",
                   help="send to a running server, e.g. ws://127.0.0.1:8000 (its /v1/stream)")
    p.add_argument("--api-key-env", default="VOCALFUSION_API_KEY", metavar="VAR",
                   help="environment variable holding the server's API key (with --url)")
    p.add_argument("--speakers", choices=["off", "auto"], default="off",
                   help="online speaker labels from running voiceprints (default: off)")
    p.add_argument("--speaker-id", default=None, help="the speaker's id (session speaker_id)")
    p.add_argument("-o", "--out", type=Path, default=Path("live-session.json"), metavar="JSON",
                   help="where the session JSON is written (default: ./live-session.json)")
    add_config_args(p)
    p.set_defaults(func=run)


def format_row(seg: dict[str, Any], info: dict[str, Any]) -> str:
    """One printed row: time, speaker, stress, depression, transcript (rich markup)."""
    def val(kind: str) -> str:
        sc = (seg.get("scores") or {}).get(kind) or {}
        v = sc.get("value")
        return "  –  " if v is None else f"{v:5.2f}"

    text = ((seg.get("transcript") or {}).get("text") or "").strip()
    warm = " [dim](warm-up)[/]" if info.get("warmup") else ""
    return (f"{seg['index']:>4} {seg['start_s']:8.2f}–{seg['end_s']:<8.2f} "
            f"{escape(str(info.get('speaker', ''))):<6} stress {val('stress')} "
            f"depression {val('depression')}{warm}  {escape(text[:80])}")


def _file_frames(path: Path, realtime: bool) -> Iterator[np.ndarray]:
    from features.audio.load import load_audio

    audio = load_audio(path)
    pcm = np.clip(np.round(audio.y * 32767.0), -32768, 32767).astype(np.int16)
    step = int(_FRAME_S * _SR)
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), step)):
        if realtime:
            ahead = k * _FRAME_S - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        yield pcm[i:i + step]


def _mic_frames() -> Iterator[np.ndarray]:
    try:
        import sounddevice as sd  # type: ignore[import-not-found, unused-ignore]
    except (ImportError, OSError) as exc:
        raise ParameterError("--mic needs sounddevice and PortAudio: pip install "
                             f"'vocalfusion[live]' ({exc})") from None
    q: queue.Queue[np.ndarray] = queue.Queue(maxsize=64)

    def callback(indata: Any, frames: int, t: Any, status: Any) -> None:
        try:
            q.put_nowait(indata[:, 0].copy())
        except queue.Full:
            pass  # the analysis fell behind: drop rather than grow

    with sd.InputStream(samplerate=_SR, channels=1, dtype="int16",
                        blocksize=int(_FRAME_S * _SR), callback=callback):
        err_console.print("[green]recording[/] — Ctrl-C to end")
        try:
            while True:
                yield q.get()
        except KeyboardInterrupt:
            return


def run(args: argparse.Namespace) -> int:
    frames = _mic_frames() if args.mic else _file_frames(args.input, args.realtime)
    if args.url:
        result = _run_remote(args, frames)
    else:
        result = _run_local(args, frames)
    atomic_write_text(args.out, json.dumps(result, indent=2))
    summary = result.get("summary") or {}
    err_console.print(f"session: {summary.get('n_segments', 0)} segments, "
                      f"{summary.get('speech_s', 0.0):.1f} s of speech → {escape(str(args.out))}")
    return 0


def _run_local(args: argparse.Namespace, frames: Iterator[np.ndarray]) -> dict[str, Any]:
    from fusion.engine.analyzer import Analyzer

    analyzer = Analyzer(config_from_args(args)).load()
    session = analyzer.stream(sample_rate=_SR, speaker_id=args.speaker_id,
                              speakers_mode=args.speakers)
    for frame in frames:
        for seg in session.feed(frame):
            console.print(format_row(seg.model_dump(mode="json"),
                                     session.segment_info(seg.index).to_dict()))
    n_sent = len(session.results)
    result = session.close()
    for seg in result.segments[n_sent:]:
        console.print(format_row(seg.model_dump(mode="json"),
                                 session.segment_info(seg.index).to_dict()))
    return result.model_dump(mode="json")


def _run_remote(args: argparse.Namespace, frames: Iterator[np.ndarray]) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = args.url.rstrip("/")
    if not url.startswith(("ws://", "wss://")):
        raise ParameterError(f"--url must start with ws:// or wss://; got {args.url!r}")
    query = f"sample_rate={_SR}&speakers_mode={args.speakers}"
    if args.speaker_id:
        query += f"&speaker_id={args.speaker_id}"
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    result: dict[str, Any] | None = None
    with connect(f"{url}/v1/stream?{query}", additional_headers=headers, max_size=None,
                 open_timeout=60) as ws:
        def send() -> None:
            try:
                for frame in frames:
                    ws.send(frame.astype("<i2").tobytes())
                ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while True:
                msg = json.loads(ws.recv())
                if msg["type"] == "segment":
                    console.print(format_row(msg["segment"], msg))
                elif msg["type"] == "error":
                    raise ParameterError(f"server: {msg['code']}: {msg['message']}")
                elif msg["type"] == "session":
                    result = msg["result"]
        except ConnectionClosed:
            pass
        sender.join(5)
    if result is None:
        raise ParameterError(f"the server closed the stream without a session "
                             f"(close code {ws.close_code})")
    return result
