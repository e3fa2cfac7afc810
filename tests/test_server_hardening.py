"""Server hardening (issue 18, class 7): resource exhaustion and origin, over a REAL uvicorn.

Every test here talks to a real uvicorn server on 127.0.0.1 (a free port), built exactly as
``vocalfusion serve`` builds it (:func:`fusion.server.app.uvicorn_config`), with raw sockets and
httpx. Other "clients" are other loopback source addresses (127.0.0.2, 127.0.0.3: Linux routes
all of 127.0.0.0/8 to the loopback interface). Every loop is bounded and every socket is closed.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from _net import free_port, wait_until

from fusion.config import load_config
from fusion.server.app import ServerSettings, create_app, uvicorn_config
from fusion.server.runtime import JobStore

SR = 16_000
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}
BOUNDARY = b"vf-hardening-boundary-3d9a"
CTYPE = b"multipart/form-data; boundary=" + BOUNDARY
KEY = "k" * 8 + "-hardening-key-0123456789"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{8,}")


# ------------------------------------------------------------------------------------ helpers
def tone_wav(freq_hz: float = 180.0, duration_s: float = 0.5) -> bytes:
    t = np.arange(int(duration_s * SR)) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), SR,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class Served:
    port: int
    app: Any
    settings: ServerSettings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Any:
        return self.app.state.vocalfusion

    def client(self, source: str = "127.0.0.1", **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            transport=httpx.HTTPTransport(local_address=source), **kw)


@contextmanager
def serving(tmp: Path, **overrides: Any) -> Iterator[Served]:
    """A real uvicorn server in a thread, configured as ``vocalfusion serve`` configures it."""
    import uvicorn

    port = free_port()
    settings = ServerSettings(temp_dir=tmp, port=port, **overrides)
    app = create_app(load_config(overrides=LIGHT), settings=settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 60), "the server did not start"
        yield Served(port, app, settings)
    finally:
        server.should_exit = True
        thread.join(40)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``timeout_s`` passes)."""
    sock.settimeout(timeout_s)
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            block = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, OSError):
            break
        if not block:
            break
        out += block
    return out


def status_of(raw: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def body_of(raw: bytes) -> dict[str, Any]:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def assert_envelope(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["code"] == code, body


def stalled_upload(port: int, source: str, path: str = "/v1/analyze") -> socket.socket:
    """Headers and the start of a 1-MB multipart body, then nothing."""
    sock = connect(port, source)
    head = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() +
            b"\r\nContent-Type: " + CTYPE + b"\r\nContent-Length: 1000000\r\n\r\n")
    part = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="slow.wav"\r\nContent-Type: audio/wav\r\n\r\n' + tone_wav()[:2000])
    sock.sendall(head + part)
    return sock


# ------------------------------------------------------------------------------------ servers
@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The shipped defaults, with one worker and a job store of two (to fill it quickly)."""
    with serving(tmp_path_factory.mktemp("hard-default"), workers=1, max_jobs=2) as s:
        yield s


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Short header/body timeouts and a small per-client connection cap."""
    with serving(tmp_path_factory.mktemp("hard-tight"), workers=1, header_timeout_s=1.0,
                 body_idle_timeout_s=1.5, max_connections_per_client=3) as s:
        yield s


# ------------------------------------------------------------------------------------ connections
def test_idle_connections_never_starve_health_or_work(default_server: Served) -> None:
    """130 idle TCP connections (more than the connection limit) from one client: health
    checks and authenticated work from every client are still answered."""
    s = default_server
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(s.port)) for _ in range(130)]
        time.sleep(0.3)
        for source in ("127.0.0.1", "127.0.0.2"):
            with s.client(source) as c:
                r = c.get("/healthz")
                assert r.status_code == 200, (source, r.status_code, r.text)
                r = c.get("/v1/models")
                assert r.status_code == 200, (source, r.status_code, r.text)
                r = c.post("/v1/analyze", files={"file": ("t.wav", tone_wav())})
                assert r.status_code == 200, (source, r.status_code, r.text)
        # the server let go of idle connections rather than of the clients that work
        closed = 0
        for sock in idle:
            sock.settimeout(0.01)
            try:
                closed += sock.recv(1024) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= 130 - s.settings.max_connections_per_client


def test_slowloris_headers_and_idle_connections_are_cut(tight_server: Served) -> None:
    s = tight_server
    # a connection that never sends a byte
    with connect(s.port, "127.0.0.4") as sock:
        t0 = time.monotonic()
        assert read_all(sock, 8.0) == b""
        assert time.monotonic() - t0 < 4.0
    # headers trickled one line at a time (each line well within any per-read timeout)
    with connect(s.port, "127.0.0.4") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert drip_until_cut(sock) < 4.0
    # the same on a kept-alive connection, after one complete request
    with connect(s.port, "127.0.0.4") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert status_of(sock.recv(65536)) == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert drip_until_cut(sock) < 4.0


def drip_until_cut(sock: socket.socket, max_s: float = 8.0) -> float:
    """Send a header line every 0.2 s until the server answers or closes; the seconds taken."""
    t0 = time.monotonic()
    for i in range(int(max_s / 0.2)):
        time.sleep(0.2)
        try:
            sock.sendall(b"X-Drip-%d: x\r\n" % i)
            sock.settimeout(0.01)
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - t0
        assert status_of(data) in (None, 408), data[:200]
        return time.monotonic() - t0
    raise AssertionError("the server kept waiting for headers that never ended")


def test_per_client_connection_cap(tight_server: Served) -> None:
    """One client's busy connections are capped; the others are served meanwhile."""
    s = tight_server
    cap = s.settings.max_connections_per_client
    with ExitStack() as stack:
        for _ in range(cap):
            stack.enter_context(stalled_upload(s.port, "127.0.0.2"))
        assert wait_until(lambda: s.state.tempdirs.live >= cap, 5)
        with connect(s.port, "127.0.0.2") as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Connection: close\r\n\r\n")
            except OSError:
                pass
            raw = read_all(extra, 5.0)
            assert status_of(raw) in (None, 429), raw[:200]
            if raw:
                assert_envelope(body_of(raw), "too_many_connections")
        with s.client("127.0.0.1") as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/models").status_code == 200


def test_stalled_uploads_hold_no_work_slot(default_server: Served) -> None:
    """Five stalled uploads (the whole work gate: 1 worker + 4 queued) do not make anyone
    else wait: a request is admitted only once its body is in."""
    s = default_server
    assert s.state.gate.capacity == 5
    with ExitStack() as stack:
        for _ in range(5):
            stack.enter_context(stalled_upload(s.port, "127.0.0.3"))
        assert wait_until(lambda: s.state.tempdirs.live >= 5, 5)
        with s.client("127.0.0.1") as c:
            r = c.post("/v1/analyze", files={"file": ("t.wav", tone_wav())})
            assert r.status_code == 200, r.text
            r = c.post("/v1/jobs", files={"file": ("t.wav", tone_wav())})
            assert r.status_code == 202, r.text
            job = r.json()["id"]
            assert wait_until(lambda: c.get(f"/v1/jobs/{job}").json()["status"] == "succeeded")
            assert c.delete(f"/v1/jobs/{job}").status_code == 204


def test_stalled_body_times_out(tight_server: Served) -> None:
    """A stalled body gets 408 once nothing arrived for ``body_idle_timeout_s`` (not after
    the whole-upload limit), and its temp dir is removed."""
    t = tight_server
    sock = stalled_upload(t.port, "127.0.0.5")
    with sock:
        t0 = time.monotonic()
        raw = read_all(sock, 10.0)
        assert status_of(raw) == 408, raw[:200]
        assert_envelope(body_of(raw), "upload_timeout")
        assert time.monotonic() - t0 < 6.0
    assert wait_until(lambda: t.state.tempdirs.live == 0, 5)


# ------------------------------------------------------------------------------------ origin
def test_foreign_host_and_origin_refused_without_key(default_server: Served) -> None:
    """DNS rebinding (a foreign Host) and cross-site requests (a foreign Origin; a form POST
    needs no preflight) are refused by a keyless server, before any work is done."""
    s = default_server
    port = s.port
    with s.client() as c:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "",
                     f"attacker.test:{port}"):
            r = c.get("/v1/models", headers={"Host": host})
            assert r.status_code == 400, (host, r.status_code)
            assert_envelope(r.json(), "invalid_host")
        r = c.post("/v1/analyze", files={"file": ("t.wav", tone_wav())},
                   headers={"Host": f"evil.example:{port}"})
        assert r.status_code == 400
        for origin in ("http://evil.example", f"http://evil.example:{port}", "null",
                       "https://127.0.0.1.evil.example", "file://"):
            r = c.post("/v1/analyze", files={"file": ("t.wav", tone_wav())},
                       headers={"Origin": origin})
            assert r.status_code == 403, (origin, r.status_code)
            assert_envelope(r.json(), "forbidden_origin")
        assert s.state.tempdirs.live == 0 and s.state.gate.in_flight == 0
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert c.get("/v1/models", headers={"Host": host}).status_code == 200, host
        for origin in (f"http://127.0.0.1:{port}", "http://localhost:5173", "http://[::1]"):
            assert c.get("/v1/models", headers={"Origin": origin}).status_code == 200, origin
        # health checks answer whatever the Host (liveness probes)
        assert c.get("/healthz", headers={"Host": "evil.example"}).status_code == 200


def test_allowed_hosts_and_origins_settings(tmp_path: Path) -> None:
    with serving(tmp_path / "a", allowed_hosts=["vf.lab.example"],
                 allowed_origins=["https://app.lab.example"]) as s, s.client() as c:
        assert c.get("/v1/models", headers={"Host": "vf.lab.example"}).status_code == 200
        assert c.get("/v1/models", headers={"Host": "other.example"}).status_code == 400
        assert c.get("/v1/models",
                     headers={"Origin": "https://app.lab.example"}).status_code == 200
        assert c.get("/v1/models",
                     headers={"Origin": "http://app.lab.example"}).status_code == 403
    # with an API key a browser cannot forge the request: Host/Origin are open by default
    with serving(tmp_path / "b", api_key=KEY) as s, s.client() as c:
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.get("/v1/models", headers={**ok, "Host": "vf.example"}).status_code == 200
        assert c.get("/v1/models", headers={"Host": "vf.example"}).status_code == 401


def test_cli_flags_for_allowed_hosts_and_origins() -> None:
    from fusion.cli.commands.serve import settings_from_args
    from fusion.cli.main import build_parser
    from fusion.server.origin import OriginPolicy

    args = build_parser().parse_args(
        ["serve", "--allowed-host", "vf.lab.example", "--allowed-host", "10.0.0.5",
         "--allowed-origin", "https://app.lab.example", "--header-timeout-s", "5",
         "--max-connections-per-client", "8"])
    st = settings_from_args(args)
    assert st.allowed_hosts == ["vf.lab.example", "10.0.0.5"]
    assert st.allowed_origins == ["https://app.lab.example"]
    assert st.header_timeout_s == 5 and st.max_connections_per_client == 8
    policy = OriginPolicy.from_settings(st)
    assert {"localhost", "127.0.0.1", "[::1]", "vf.lab.example"} <= set(policy.hosts)
    for bad in (["https://app.example/path"], ["app.example"], ["http://"]):
        with pytest.raises(ValueError, match="allowed_origins"):
            ServerSettings(allowed_origins=bad)
    with pytest.raises(ValueError, match="allowed_hosts"):
        ServerSettings(allowed_hosts=["bad host/"])


def test_origin_policy_unit() -> None:
    """The one check that HTTP routes and the WebSocket handshake share, on raw headers."""
    from fusion.server.api_models import APIError
    from fusion.server.origin import OriginPolicy, check_host_and_origin

    def verdict(policy: OriginPolicy, **headers: str) -> int:
        try:
            check_host_and_origin([(k.encode(), v.encode()) for k, v in headers.items()],
                                  policy)
        except APIError as exc:
            return exc.status_code
        return 200

    keyless = OriginPolicy.build(bound_host="127.0.0.1", allowed_hosts=None,
                                 allowed_origins=None, has_api_key=False)
    assert verdict(keyless, host="127.0.0.1:8000") == 200
    assert verdict(keyless) == 200  # no Host (HTTP/1.0): no browser sends that
    assert verdict(keyless, host="evil.example:8000") == 400
    assert verdict(keyless, host="localhost:8000", origin="http://localhost:8000") == 200
    assert verdict(keyless, host="localhost:8000", origin="http://evil.example") == 403
    assert verdict(keyless, host="localhost:8000", origin="HTTP://LOCALHOST:3000") == 200
    # "*" hosts: a rebound name is not its own trusted origin
    anyhost = OriginPolicy.build(bound_host="127.0.0.1", allowed_hosts=["*"],
                                 allowed_origins=None, has_api_key=False)
    assert verdict(anyhost, host="evil.example:8000") == 200
    assert verdict(anyhost, host="evil.example:8000", origin="http://evil.example:8000") == 403
    named = OriginPolicy.build(bound_host="0.0.0.0", allowed_hosts=["vf.lab.example"],  # noqa: S104
                               allowed_origins=["https://app.lab.example:*"], has_api_key=True)
    assert "0.0.0.0" not in named.hosts  # noqa: S104 - a bind-all address names no host
    assert verdict(named, host="vf.lab.example", origin="http://vf.lab.example") == 200
    assert verdict(named, host="vf.lab.example", origin="https://app.lab.example:9") == 200
    assert verdict(named, host="vf.lab.example", origin="https://evil.example") == 403
    keyed = OriginPolicy.build(bound_host="0.0.0.0", allowed_hosts=None,  # noqa: S104
                               allowed_origins=None, has_api_key=True)
    assert verdict(keyed, host="anything.example", origin="https://evil.example") == 200


# ------------------------------------------------------------------------------------ jobs
def test_job_results_live_until_expires_at(default_server: Served) -> None:
    """A full job store refuses new jobs (429) rather than evicting a result before its
    ``expires_at``; deleting a job makes room."""
    s = default_server
    assert s.settings.max_jobs == 2
    with s.client() as c:
        ids = []
        for _ in range(2):
            r = c.post("/v1/jobs", files={"file": ("t.wav", tone_wav())})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for jid in ids:
            assert wait_until(lambda jid=jid: c.get(f"/v1/jobs/{jid}").json()["status"]
                              == "succeeded", 60)
        r = c.post("/v1/jobs", files={"file": ("t.wav", tone_wav())})
        assert r.status_code == 429, r.text
        assert_envelope(r.json(), "too_many_jobs")
        assert int(r.headers["retry-after"]) >= 1
        for jid in ids:
            info = c.get(f"/v1/jobs/{jid}").json()
            assert c.get(f"/v1/jobs/{jid}/result").status_code == 200, jid
            expires = info["expires_at"]
            assert expires is not None and expires > info["finished_at"]
        assert c.delete(f"/v1/jobs/{ids[0]}").status_code == 204
        r = c.post("/v1/jobs", files={"file": ("t.wav", tone_wav())})
        assert r.status_code == 202, r.text
        new = r.json()["id"]
        assert wait_until(lambda: c.get(f"/v1/jobs/{new}").json()["status"] == "succeeded")
        for jid in (ids[1], new):
            assert c.delete(f"/v1/jobs/{jid}").status_code == 204


def test_job_store_keeps_unexpired_results() -> None:
    store = JobStore(max_jobs=2, ttl_s=0.3)
    a, b = store.add("a"), store.add("b")
    assert a and b
    store.finish(a, error=None, error_status=None)
    store.finish(b, error=None, error_status=None)
    assert store.add("c") is None  # full of results that have not expired
    assert store.get(a.id) is a and store.get(b.id) is b
    assert 0 < store.retry_after_s() <= 1
    time.sleep(0.35)
    assert store.add("c") is not None  # expired results make room
    assert store.get(a.id) is None


# ------------------------------------------------------------------------------------ errors
def test_scrub_removes_heap_addresses() -> None:
    from fusion.server.app import scrub_message

    for raw in ("cannot read the file header ([matroska,webm @ 0x55df5b0dd940] Length 5 "
                "indicated by an EBML number's first byte 0x0d at pos 17238 (0x4356))",
                "[mp3float @ 0x7f3a2c004b80] Header missing",
                "[NULL @ 0x56488ff71cc0] Error parsing Ogg extradata.",
                "object at 0x7F00DEADBEEF failed"):
        out = scrub_message(raw)
        assert not re.search(r"0x[0-9a-fA-F]{8,}", out), out
        assert "@ 0x" not in out
    assert scrub_message("first byte 0x0d at pos 17238") == "first byte 0x0d at pos 17238"


def _corrupt_webm(tmp_path: Path) -> bytes:
    """An ffmpeg-made WebM with one byte changed so that ffprobe names its demuxer context
    (``[NULL @ 0x5648...] Error parsing Ogg extradata``)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    out = tmp_path / "a.webm"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=f=200:d=3", "-c:a", "libopus", str(out)], check=True, timeout=60)
    data = bytearray(out.read_bytes())
    data[359] = 143
    return bytes(data)


def test_ffmpeg_heap_addresses_not_in_error_bodies(default_server: Served,
                                                   tmp_path: Path) -> None:
    from features.audio.load import load_audio
    from features.errors import AudioError

    data = _corrupt_webm(tmp_path)
    probe = tmp_path / "bad.webm"
    probe.write_bytes(data)
    with pytest.raises(AudioError) as info:
        load_audio(probe, timeout_s=30)
    if not ADDRESS.search(str(info.value)):
        pytest.skip("this ffmpeg build names no heap address for the corrupt file")
    with default_server.client() as c:
        r = c.post("/v1/analyze", files={"file": ("bad.webm", data)})
        assert 400 <= r.status_code < 500, r.text
        assert not ADDRESS.search(r.text), r.text
        assert "bad.webm" in r.json()["error"]["message"]
        r = c.post("/v1/jobs", files={"file": ("bad.webm", data)})
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        assert wait_until(lambda: c.get(f"/v1/jobs/{jid}").json()["status"] == "failed")
        info_r = c.get(f"/v1/jobs/{jid}")
        assert not ADDRESS.search(info_r.text), info_r.text
        res = c.get(f"/v1/jobs/{jid}/result")
        assert 400 <= res.status_code < 500 and not ADDRESS.search(res.text), res.text
        assert c.delete(f"/v1/jobs/{jid}").status_code == 204
