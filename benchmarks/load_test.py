"""Load test of ``vocalfusion serve`` on loopback: bounded requests, bounded time.

Starts a real uvicorn server (``python -m fusion.cli.main serve``) on 127.0.0.1 with a private temp
dir, then sends ``--requests`` uploads at ``--concurrency`` in two equal rounds, mixing three
synthetic speech files (espeak-ng voices, not human speech) and checking, for every 200, that
the result belongs to the file that was sent (sha256): no cross-talk under load. Beyond
capacity the server must answer 429 with Retry-After; any other status is a failure. Between
and after the rounds it reads the server's RSS from /proc to show whether memory plateaus.
It also cancels a few uploads half-way (raw sockets closed mid-body) and sends over-limit
bodies (honest Content-Length, chunked, lying Content-Length) to check 413 over real TCP.

At the end the server's temp dir must be empty. Exit status 0 only if every check passed.

Usage::

    python benchmarks/load_test.py                         # 200 requests, concurrency 8
    python benchmarks/load_test.py --requests 60 --concurrency 4 --default-config

Only loopback is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

HOST = "127.0.0.1"
LIGHT = ["transcript.enabled=false", "emotion.enabled=false", "sentiment.enabled=false"]
TEXTS = [
    ("The weather was calm this morning, so we walked slowly to the market.", 40),
    ("I have not been sleeping well, and I feel tired most of the day.", 70),
    ("Please read the numbers one, two, three, four, five, six, seven.", 95),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _make_audio(folder: Path) -> list[bytes]:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is needed to make the synthetic speech for the load test")
    out = []
    for i, (text, pitch) in enumerate(TEXTS):
        path = folder / f"speech{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-p", str(pitch), "-w", str(path), text],
                       check=True, capture_output=True, timeout=60)
        out.append(path.read_bytes())
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def _round(url: str, audio: list[bytes], n: int, concurrency: int, deadline: float,
                 offset: int) -> tuple[Counter, list[float], list[float], list[str]]:
    statuses: Counter = Counter()
    lat_ok: list[float] = []
    lat_all: list[float] = []
    problems: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(offset + i)
    digests = [hashlib.sha256(a).hexdigest() for a in audio]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                k = i % len(audio)
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/analyze",
                                          files={"file": ("same-name.wav", audio[k], "audio/wav")})
                except httpx.HTTPError as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1
                    continue
                dt = time.perf_counter() - t0
                statuses[r.status_code] += 1
                lat_all.append(dt)
                if r.status_code == 200:
                    lat_ok.append(dt)
                    sha = r.json()["source"]["sha256"]
                    if sha != digests[k]:
                        problems.append(f"request {i}: result of another file (cross-talk)")
                elif r.status_code == 429:
                    if not r.headers.get("retry-after", "").isdigit():
                        problems.append(f"request {i}: 429 without Retry-After")
                    await asyncio.sleep(0.05)  # a polite client backs off a little
                else:
                    problems.append(f"request {i}: status {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if not queue.empty():
        problems.append(f"time budget exhausted with {queue.qsize()} requests unsent")
    return statuses, lat_ok, lat_all, problems


def _raw_request(port: int, head: bytes, body_chunks: list[bytes], *, read: bool = True,
                 timeout_s: float = 30.0) -> bytes:
    """Send a hand-made HTTP request; return the response bytes (or b'' if not read)."""
    with socket.create_connection((HOST, port), timeout=timeout_s) as s:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        if not read:
            return b""
        data = b""
        try:
            while True:
                block = s.recv(65536)
                if not block:
                    break
                data += block
                if b"\r\n\r\n" in data and b'"error"' in data:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return data


def _edge_checks(port: int, audio: bytes, limit_bytes: int) -> list[str]:
    problems = []
    boundary = b"loadtestboundary"
    part_head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
                 b'filename="x.wav"\r\nContent-Type: audio/wav\r\n\r\n')
    ctype = b"multipart/form-data; boundary=" + boundary
    big = b"\x00" * (limit_bytes + 256 * 1024)
    cases = {
        "honest Content-Length": (b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Content-Type: " + ctype + b"\r\nContent-Length: "
                                  + str(len(part_head) + len(big)).encode() + b"\r\n\r\n",
                                  [part_head]),
        "chunked": (b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype
                    + b"\r\nTransfer-Encoding: chunked\r\n\r\n",
                    [b"%x\r\n%s\r\n" % (len(c), c) for c in
                     [part_head] + [big[i:i + 65536] for i in range(0, len(big), 65536)]]),
    }
    for name, (head, chunks) in cases.items():
        t0 = time.perf_counter()
        resp = _raw_request(port, head, chunks)
        dt = time.perf_counter() - t0
        status = resp.split(b" ", 2)[1] if resp.startswith(b"HTTP/1.1") else b"?"
        print(f"  over-limit body, {name}: status {status.decode()} in {dt * 1000:.0f} ms")
        if status != b"413":
            problems.append(f"over-limit body ({name}): got {resp[:80]!r}, wanted 413")
    # lying Content-Length: claims 1 KiB, sends more. HTTP/1.1 framing (h11) reads exactly the
    # declared bytes, so the app sees a 1 KiB body (a malformed multipart: 400) and the extra
    # bytes are never read as this request's body.
    head = (b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n")
    resp = _raw_request(port, head, [part_head, big[:200_000]])
    status = resp.split(b" ", 2)[1] if resp.startswith(b"HTTP/1.1") else b"?"
    print(f"  lying Content-Length (1 KiB declared, 200 kB sent): status {status.decode()}")
    if not status.startswith(b"4"):
        problems.append(f"lying Content-Length: got {resp[:80]!r}, wanted a 4xx")
    return problems


def _cancel_uploads(port: int, audio: bytes, n: int) -> None:
    boundary = b"cancelboundary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="c.wav"\r\n\r\n' + audio + b"\r\n--" + boundary + b"--\r\n")
    head = (b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            b"boundary=" + boundary + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n")
    for _ in range(n):  # half the body, then the client hangs up
        _raw_request(port, head, [body[: len(body) // 2]], read=False)
    for _ in range(n):  # the whole body, then hang up while the analysis runs
        _raw_request(port, head, [body], read=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-queue", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--time-budget-s", type=float, default=900.0)
    ap.add_argument("--cancel", type=int, default=3, help="uploads to cancel per kind")
    ap.add_argument("--default-config", action="store_true",
                    help="all streams of the default config (else prosody only + fusion)")
    args = ap.parse_args(argv)
    if args.requests > 5000 or args.concurrency > 64:
        sys.exit("bounded test: at most 5000 requests at concurrency 64")

    work = Path(tempfile.mkdtemp(prefix="vf-load-"))
    tmp_dir = work / "server-tmp"
    tmp_dir.mkdir()
    audio = _make_audio(work)
    port = _free_port()
    limit_mb = 2.0
    cmd = [sys.executable, "-m", "fusion.cli.main", "serve", "--host", HOST, "--port", str(port),
           "--temp-dir", str(tmp_dir), "--max-queue", str(args.max_queue),
           "--max-upload-mb", str(limit_mb), "--api-key-env", "VF_LOADTEST_NO_KEY"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if not args.default_config:
        for ov in LIGHT:
            cmd += ["--set", ov]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("VF_LOADTEST_NO_KEY", None)
    log_path = work / "server.log"
    log_fh = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://{HOST}:{port}"
    problems: list[str] = []
    try:
        t_start = time.monotonic()
        while True:
            if server.poll() is not None:
                sys.exit(f"server exited early; log: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t_start > 300:
                sys.exit("server not ready within 300 s")
            time.sleep(0.2)
        print(f"server ready in {time.monotonic() - t_start:.1f} s on {url} "
              f"({'default config' if args.default_config else 'prosody + fusion only'})")
        ready = httpx.get(f"{url}/readyz").json()
        print(f"  workers={ready['workers']} queue={ready['queue']} cores={os.cpu_count()}")
        # warm-up: one request per file
        for a in audio:
            r = httpx.post(f"{url}/v1/analyze", files={"file": ("w.wav", a)}, timeout=300)
            if r.status_code != 200:
                problems.append(f"warm-up failed: {r.status_code} {r.text[:200]}")
        rss0, _ = _rss_kib(server.pid)
        print(f"  RSS after warm-up: {rss0 / 1024:.0f} MiB")

        deadline = time.monotonic() + args.time_budget_s
        half = args.requests // 2
        totals: Counter = Counter()
        lat_ok_all: list[float] = []
        lat_all_all: list[float] = []
        rss_rounds = []
        t0 = time.perf_counter()
        for rnd, n in enumerate((half, args.requests - half), 1):
            st, lok, lall, probs = asyncio.run(
                _round(url, audio, n, args.concurrency, deadline, offset=(rnd - 1) * half))
            totals.update(st)
            lat_ok_all += lok
            lat_all_all += lall
            problems += probs
            rss, hwm = _rss_kib(server.pid)
            rss_rounds.append(rss)
            print(f"  round {rnd}: {dict(st)}; RSS {rss / 1024:.0f} MiB (peak {hwm / 1024:.0f})")
        wall = time.perf_counter() - t0

        print("edge checks over real TCP:")
        problems += _edge_checks(port, audio[0], int(limit_mb * (1 << 20)))
        _cancel_uploads(port, audio[1], args.cancel)
        print(f"  cancelled {args.cancel} uploads mid-body and {args.cancel} mid-analysis")
        # wait for the server to be idle, then look for leftovers
        for _ in range(600):
            if httpx.get(f"{url}/readyz").json()["in_flight"] == 0:
                break
            time.sleep(0.1)
        leftovers = [str(p.relative_to(tmp_dir)) for p in tmp_dir.rglob("*")
                     if p.parent != tmp_dir]
        if leftovers:
            problems.append(f"temp files left while idle: {leftovers[:5]}")
        rss_end, hwm_end = _rss_kib(server.pid)

        n_ok = len(lat_ok_all)
        print("\nresults (contended: other work shares these CPUs)")
        print(f"  responses: {dict(sorted(totals.items(), key=str))}")
        print(f"  200 latency p50 {_percentile(lat_ok_all, 0.5):.2f} s, "
              f"p95 {_percentile(lat_ok_all, 0.95):.2f} s, max {max(lat_ok_all, default=0):.2f} s")
        print(f"  all-response latency p50 {_percentile(lat_all_all, 0.5):.3f} s, "
              f"p95 {_percentile(lat_all_all, 0.95):.3f} s")
        print(f"  throughput: {n_ok / wall:.2f} analyses/s ({sum(totals.values()) / wall:.1f} "
              f"responses/s) over {wall:.1f} s")
        if n_ok:
            mean_audio_s = statistics.mean(
                len(a) / 2 / 22050 for a in audio)  # espeak-ng writes 22.05 kHz 16-bit mono
            print(f"  mean audio {mean_audio_s:.1f} s → served {n_ok * mean_audio_s / wall:.1f} "
                  "s of audio per s")
        print(f"  RSS: warm-up {rss0 / 1024:.0f} MiB → round 1 {rss_rounds[0] / 1024:.0f} → "
              f"round 2 {rss_rounds[-1] / 1024:.0f} → end {rss_end / 1024:.0f} MiB "
              f"(peak {hwm_end / 1024:.0f} MiB)")
        print(f"  temp files left: {len(leftovers)}")
        bad = {k: v for k, v in totals.items() if k not in (200, 429)}
        if bad:
            problems.append(f"statuses other than 200/429: {bad}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log_fh.close()
    after_stop = list(tmp_dir.iterdir())
    if after_stop:
        problems.append(f"temp dir not empty after shutdown: {after_stop}")
    log_lines = log_path.read_text(errors="replace").splitlines()
    access = [json.loads(ln) for ln in log_lines if '"vocalfusion.server.access"' in ln]
    logged = Counter(a["status"] for a in access)
    print(f"  server log: {len(log_lines)} lines, {len(access)} access lines, statuses "
          f"{dict(sorted(logged.items()))} (499 = client went away); "
          f"'same-name' in log: {any('same-name' in ln for ln in log_lines)}")
    if any("same-name" in ln for ln in log_lines):
        problems.append("upload file names appear in the server log")
    if problems:
        print("\nFAILED:")
        for p in problems[:20]:
            print("  -", p)
        print(f"(work dir kept: {work})")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("\nOK: only 200/429, no cross-talk, no temp files left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
