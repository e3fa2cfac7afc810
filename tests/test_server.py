"""HTTP service (fusion/server.py): routes, limits, hostile uploads, cleanup, auth, logs.

Audio here is real: the bundled JFK recording, synthetic espeak-ng speech (conftest) and numpy
tones/noise written as WAV. Most tests run a light config (prosody only, no Whisper, no
wav2vec2) to stay fast; one module runs the default config. Streaming limits are tested at the
ASGI level with a hand-driven ``receive`` so that we can count how much of a body the server
read before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from _net import wait_until
from fastapi.testclient import TestClient

from fusion.config import load_config
from fusion.schema import SessionResult
from fusion.server.access_log import ACCESS_LOGGER, JsonFormatter
from fusion.server.app import ServerSettings, check_bind_safety, create_app, is_loopback_host
from fusion.server.runtime import JobStore
from fusion.server.upload import display_filename

SR = 16_000
LOOPBACK = ("127.0.0.1", 50000)
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only ever passed to the refusal checks
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}
BOUNDARY = b"vf-test-boundary-7c1e"
#: a Host a keyless server answers to (the TestClient default, "testserver", is foreign)
LOCAL = "http://127.0.0.1"


# ------------------------------------------------------------------------------------ helpers
def light_config(**extra: Any):
    return load_config(overrides={**LIGHT, **extra})


def tone(freq_hz: float, duration_s: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def multipart(parts: Iterable[tuple[bytes, bytes | None, bytes]],
              content_type: bytes | None = b"application/octet-stream") -> tuple[bytes, str]:
    """A multipart/form-data body built by hand, so file names go out byte for byte."""
    out = bytearray()
    for name, filename, data in parts:
        out += b"--" + BOUNDARY + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            out += b'; filename="' + filename + b'"'
            if content_type:
                out += b"\r\nContent-Type: " + content_type
        out += b"\r\n\r\n" + data + b"\r\n"
    out += b"--" + BOUNDARY + b"--\r\n"
    return bytes(out), f"multipart/form-data; boundary={BOUNDARY.decode()}"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_envelope(resp: httpx.Response | dict, code: str | None = None) -> dict:
    body = resp if isinstance(resp, dict) else resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id"}, err
    if code is not None:
        assert err["code"] == code, err
    text = json.dumps(body)
    for leak in ("Traceback", "/tmp", "/work", 'File "'):  # noqa: S108 - looked for, not used
        assert leak not in text, text
    assert err["request_id"], err
    return err


class AsgiResult:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.bytes_read = 0
        self.chunks_read = 0

    def json(self) -> Any:
        return json.loads(self.body)


async def drive(app: Any, *, path: str = "/v1/analyze", headers: dict[str, str],
                chunks: Iterator[bytes], disconnect_after_body: bool = False,
                disconnect_after_chunks: int | None = None, method: str = "POST") -> AsgiResult:
    """Call the ASGI app with a body fed chunk by chunk; count what the app read."""
    res = AsgiResult()
    done = asyncio.Event()
    body_finished = False
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": LOOPBACK, "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
    }

    async def receive() -> dict:
        nonlocal body_finished
        if disconnect_after_chunks is not None and res.chunks_read >= disconnect_after_chunks:
            return {"type": "http.disconnect"}
        if not body_finished:
            chunk = next(chunks, None)
            if chunk is None:
                body_finished = True
                return {"type": "http.request", "body": b"", "more_body": False}
            res.chunks_read += 1
            res.bytes_read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        if disconnect_after_body:
            return {"type": "http.disconnect"}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            res.status = message["status"]
            res.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            res.body += message.get("body", b"")
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return res


def run_with_lifespan(app: Any, coro_fn) -> Any:
    async def main() -> Any:
        async with app.router.lifespan_context(app):
            return await coro_fn()

    return asyncio.run(main())


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def temp_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def app(temp_parent: Path):
    return create_app(light_config(), settings=ServerSettings(temp_dir=temp_parent, workers=2))


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        yield c


@pytest.fixture()
def temp_root(app, client) -> Path:
    """The running app's private temp root; must be empty between requests."""
    return app.state.vocalfusion.tempdirs.root


@pytest.fixture(scope="module")
def jfk_bytes(jfk_path: Path) -> bytes:
    return jfk_path.read_bytes()


@pytest.fixture(scope="module")
def tone_bytes() -> bytes:
    """0.5 s, 16 kB: under every upload limit used here."""
    return wav_bytes(tone(180.0, 0.5))


# ------------------------------------------------------------------------------------ routes
def test_health_ready_models(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["workers"] == 2
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert list(body["streams"]) == ["prosody", "emotion", "transcript", "sentiment",
                                    "egemaps"]
    assert body["streams"]["prosody"]["status"] == "ok"
    assert body["streams"]["prosody"]["provenance"]["backend"]
    for name in ("emotion", "transcript", "sentiment"):
        assert body["streams"][name]["status"] == "skipped"
        assert f"{name}.enabled" in body["streams"][name]["reason"]
    assert body["config_hash"] == light_config().config_hash()


def test_analyze_returns_session_result(client: TestClient, jfk_bytes: bytes,
                                        temp_root: Path) -> None:
    r = client.post("/v1/analyze", files={"file": ("jfk.flac", jfk_bytes, "audio/flac")},
                    headers={"X-Request-ID": "my-req.42"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "my-req.42"
    assert r.headers["x-content-type-options"] == "nosniff"
    result = SessionResult.model_validate_json(r.content)
    assert result.source.path == "jfk.flac"
    assert result.source.sha256 == hashlib.sha256(jfk_bytes).hexdigest()
    assert result.source.duration_s == pytest.approx(11.0, abs=0.05)
    assert len(result.segments) >= 1
    assert result.streams["prosody"].status == "ok"
    assert any(s.prosody and s.prosody.f0_mean_hz for s in result.segments)
    assert str(temp_root) not in r.text
    assert tree(temp_root) == []


def test_analyze_allow_listed_options(client: TestClient, jfk_bytes: bytes) -> None:
    r = client.post("/v1/analyze", params={"segment_policy": "fixed", "window_s": 2},
                    files={"file": ("a.flac", jfk_bytes)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["config"]["segments"]["policy"] == "fixed"
    assert len(body["segments"]) == 6  # 11 s in 2 s windows
    # the same options as form fields
    r2 = client.post("/v1/analyze", files={"file": ("a.flac", jfk_bytes)},
                     data={"segment_policy": "fixed", "window_s": "2"})
    assert r2.status_code == 200, r2.text
    assert [s["start_s"] for s in r2.json()["segments"]] == [s["start_s"] for s in
                                                              body["segments"]]
    assert r2.json()["config_hash"] == body["config_hash"]


@pytest.mark.parametrize("params, data, code", [
    ({"window_s": "0.01"}, None, "invalid_request"),                 # out of range
    ({"segment_policy": "transcript; rm -rf"}, None, "invalid_request"),
    ({"transcript.enabled": "true"}, None, "invalid_request"),       # not an option
    ({"runtime": "x"}, None, "invalid_request"),
    (None, {"window_s": "abc"}, "invalid_option"),
    ({"window_s": "3"}, {"window_s": "3"}, "invalid_option"),        # given twice
    (None, {"fusion.scoring.head": "/etc/passwd"}, "unknown_field"),       # arbitrary config key
])
def test_options_are_validated(client: TestClient, tone_bytes: bytes, params, data,
                               code: str, temp_root: Path) -> None:
    r = client.post("/v1/analyze", params=params, data=data,
                    files={"file": ("t.wav", tone_bytes)})
    assert r.status_code in (400, 422), r.text
    assert_envelope(r, code)
    assert tree(temp_root) == []


# ------------------------------------------------------------------------------------ hostile names
HOSTILE_NAMES = [
    (b"../../etc/passwd.wav", "passwd.wav"),
    (b"..\\x.wav", "x.wav"),
    (b"/abs/x.wav", "x.wav"),
    (b"C:\\Windows\\x.wav", "x.wav"),
    (b"nul\x00byte.wav", "nulbyte.wav"),
    (("a" * 300 + ".wav").encode(), None),
    ("evil\u202egnp.wav".encode(), "evilgnp.wav"),
    (b"..", "upload"),
    (b"<img src=x onerror=alert(1)>.wav", "<img src=x onerror=alert(1)>.wav"),
]


@pytest.mark.parametrize("raw, expected", HOSTILE_NAMES)
def test_hostile_filenames(client: TestClient, tone_bytes: bytes, temp_root: Path,
                           temp_parent: Path, tmp_path: Path, raw: bytes,
                           expected: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = tree(temp_parent)
    body, ctype = multipart([(b"file", raw, tone_bytes)])
    r = client.post("/v1/analyze", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    name = r.json()["source"]["path"]
    if expected is not None:
        assert name == expected
    assert len(name) <= 120
    assert not set(name) & {"/", "\\", "\x00", "\u202e"}
    assert ".." not in name
    # nothing was written anywhere but the private temp root, and that is empty again
    assert tree(tmp_path) == []
    assert tree(temp_parent) == before
    assert tree(temp_root) == []
    assert not Path("/etc/passwd.wav").exists() and not Path("/abs/x.wav").exists()


def test_display_filename_unit() -> None:
    assert display_filename("../../etc/passwd.wav") == "passwd.wav"
    assert display_filename("a\\b\\c.wav") == "c.wav"
    assert display_filename("") == "upload"
    assert display_filename(None) == "upload"
    assert display_filename("x\u200b\u2066y\u2029.wav") == "xy.wav"
    long = display_filename("b" * 300 + ".flac")
    assert len(long) == 120 and long.endswith("….flac")
    assert display_filename("  .hidden.wav ") == "hidden.wav"


# ------------------------------------------------------------------------------------ bad inputs
def _truncated_wav() -> bytes:
    return wav_bytes(tone(200.0, 2.0))[:300]


def _giant_info_wav() -> bytes:
    good = wav_bytes(tone(200.0, 1.0))
    # RIFF header + a LIST chunk that claims 2 GB, then nothing
    return good[:12] + b"LIST" + (0x7FFFFFF0).to_bytes(4, "little") + b"INFO" + b"\x00" * 64


BAD_INPUTS = [
    ("empty", b"", {422}, "empty_file"),
    ("random bytes", os.urandom(4096), {415}, "not_audio"),
    ("text", b"hello, this is not audio\n" * 10, {415}, "not_audio"),
    ("hls playlist", b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.com/a.ts\n", {415}, "not_audio"),
    ("ffconcat", b"ffconcat version 1.0\nfile '/etc/passwd'\n", {415}, "not_audio"),
    ("truncated wav", _truncated_wav(), {200, 422}, None),
    ("giant info chunk", _giant_info_wav(), {422}, None),
    ("header only wav", wav_bytes(np.zeros(0, dtype=np.float32)), {422}, None),
]


@pytest.mark.parametrize("label, data, statuses, code", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_audio_gets_clear_4xx(client: TestClient, temp_root: Path, label: str, data: bytes,
                                  statuses: set[int], code: str | None) -> None:
    r = client.post("/v1/analyze", files={"file": ("x.wav", data, "audio/wav")})
    assert r.status_code in statuses, r.text
    if r.status_code == 200:
        # a truncated WAV decodes as its readable prefix: the result must say how little that
        # was and give no scores
        result = SessionResult.model_validate_json(r.content)
        assert result.source.duration_s < 0.1 and result.status == "insufficient speech"
    else:
        err = assert_envelope(r, code)
        assert err["message"].startswith("x.wav: ")
    assert tree(temp_root) == []
    assert client.get("/healthz").status_code == 200  # still serving


def test_wrong_content_type_and_missing_file(client: TestClient, tone_bytes: bytes) -> None:
    r = client.post("/v1/analyze", content=tone_bytes, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 415
    assert_envelope(r, "unsupported_media_type")
    r = client.post("/v1/analyze", data={"segment_policy": "fixed"},
                    files={"other": ("x.wav", tone_bytes)})
    assert r.status_code == 400
    assert_envelope(r, "unexpected_file")
    body, ctype = multipart([(b"segment_policy", None, b"fixed")])
    r = client.post("/v1/analyze", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 422
    assert_envelope(r, "missing_file")
    r = client.post("/v1/analyze", content=b"--x\r\ngarbage", headers={
        "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400
    assert_envelope(r)


def test_duration_limit(tmp_path: Path, jfk_bytes: bytes) -> None:
    settings = ServerSettings(temp_dir=tmp_path, max_duration_s=5.0, job_max_duration_s=60.0)
    app = create_app(light_config(), settings=settings)
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        r = c.post("/v1/analyze", files={"file": ("long.flac", jfk_bytes)})
        assert r.status_code == 413
        err = assert_envelope(r, "too_long")
        assert "5 s" in err["message"] and "/v1/jobs" in err["message"]
        # the job route has its own, longer limit
        r = c.post("/v1/jobs", files={"file": ("long.flac", jfk_bytes)})
        assert r.status_code == 202
        jid = r.json()["id"]
        assert wait_until(lambda: c.get(f"/v1/jobs/{jid}").json()["status"] == "succeeded")


# ------------------------------------------------------------------------------------ size limits
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_app(tmp_path_factory: pytest.TempPathFactory):
    settings = ServerSettings(temp_dir=tmp_path_factory.mktemp("small"),
                              max_upload_bytes=LIMIT, max_parts=3, workers=1, max_queue=0)
    return create_app(light_config(), settings=settings)


def _endless(prefix: bytes, chunk: int = 8192) -> Iterator[bytes]:
    yield prefix
    block = b"\x00" * chunk
    while True:
        yield block


def _file_prefix() -> bytes:
    return (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n' + wav_bytes(tone(100, 0.5)))


CTYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"


def test_size_limits_while_streaming(small_app) -> None:
    state_box: dict[str, Any] = {}

    async def scenario() -> dict[str, AsgiResult]:
        state_box["state"] = small_app.state.vocalfusion
        out = {}
        # honest Content-Length over the limit: refused before one body byte is read
        out["honest"] = await drive(small_app, headers={
            "content-type": CTYPE, "content-length": str(LIMIT * 100)},
            chunks=_endless(_file_prefix()))
        # chunked, no length: refused as soon as the count passes the limit
        out["chunked"] = await drive(small_app, headers={"content-type": CTYPE,
                                                         "transfer-encoding": "chunked"},
                                     chunks=_endless(_file_prefix()))
        # lying Content-Length (says 1 KiB, sends forever)
        out["lying"] = await drive(small_app, headers={"content-type": CTYPE,
                                                       "content-length": "1024"},
                                   chunks=_endless(_file_prefix()))
        return out

    out = run_with_lifespan(small_app, scenario)
    assert out["honest"].status == 413 and out["honest"].bytes_read == 0
    assert_envelope(out["honest"].json(), "payload_too_large")
    for key in ("chunked", "lying"):
        res = out[key]
        assert res.status == 413, (key, res.body)
        assert_envelope(res.json(), "payload_too_large")
        # stopped reading within one chunk of the limit (plus multipart overhead)
        assert res.bytes_read <= LIMIT + 64 * 1024 + 8192, (key, res.bytes_read)
    state = state_box["state"]
    assert state.gate.in_flight == 0
    assert state.tempdirs.live == 0


def test_many_fields_and_file_parts_fail_fast(small_app) -> None:
    fields = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="f%d"'
                      b"\r\n\r\nv\r\n" % i for i in range(10_000))
    files = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
                     b'filename="a%d.wav"\r\n\r\nRIFF\r\n' % i for i in range(1_000))
    dup = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="window_s"'
                   b"\r\n\r\n2\r\n" for _ in range(10_000))
    headers = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; ' \
        b'filename="a.wav"\r\n' + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"\r\n"

    def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i:i + size]

    async def scenario() -> dict[str, AsgiResult]:
        return {
            "fields": await drive(small_app, headers={"content-type": CTYPE},
                                  chunks=chunks(fields)),
            "files": await drive(small_app, headers={"content-type": CTYPE},
                                 chunks=chunks(files)),
            "dup": await drive(small_app, headers={"content-type": CTYPE}, chunks=chunks(dup)),
            "headers": await drive(small_app, headers={"content-type": CTYPE},
                                   chunks=chunks(headers)),
        }

    out = run_with_lifespan(small_app, scenario)
    expected = {"fields": "unknown_field", "files": "too_many_files", "dup": "duplicate_field",
                "headers": "malformed_multipart"}
    for key, code in expected.items():
        res = out[key]
        assert res.status in (400, 413), (key, res.body)
        assert_envelope(res.json(), code)
        assert res.chunks_read <= 2, (key, res.chunks_read)  # stopped at the offending part


def test_too_many_parts(small_app, tone_bytes: bytes) -> None:
    body, ctype = multipart([(b"file", b"a.wav", tone_bytes), (b"segment_policy", None, b"fixed"),
                             (b"window_s", None, b"2"), (b"max_segment_s", None, b"5")])
    with TestClient(small_app, base_url=LOCAL, client=LOOPBACK) as c:
        r = c.post("/v1/analyze", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 413
    assert_envelope(r, "too_many_parts")


# ------------------------------------------------------------------------------------ capacity
def test_full_queue_gets_429_with_retry_after(small_app, tone_bytes: bytes) -> None:
    with TestClient(small_app, base_url=LOCAL, client=LOOPBACK) as c:
        gate = small_app.state.vocalfusion.gate
        assert gate.capacity == 1
        assert gate.try_acquire()  # occupy the only slot
        try:
            r = c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
            assert r.status_code == 429
            assert_envelope(r, "busy")
            assert int(r.headers["retry-after"]) >= 1
            r = c.post("/v1/jobs", files={"file": ("t.wav", tone_bytes)})
            assert r.status_code == 429
        finally:
            gate.release()
        r = c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
        assert r.status_code == 200


def test_timeout_gives_504_and_cleans_up_later(tmp_path: Path, jfk_bytes: bytes) -> None:
    settings = ServerSettings(temp_dir=tmp_path, request_timeout_s=0.001, workers=1)
    app = create_app(light_config(), settings=settings)
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        state = app.state.vocalfusion
        r = c.post("/v1/analyze", files={"file": ("a.flac", jfk_bytes)})
        assert r.status_code == 504
        assert_envelope(r, "timeout")
        assert wait_until(lambda: state.gate.in_flight == 0 and tree(state.tempdirs.root) == [])


# ------------------------------------------------------------------------------------ concurrency
def test_concurrent_uploads_same_filename_no_crosstalk(app, client, speech_factory,
                                                       temp_root: Path) -> None:
    a = speech_factory("Good morning, I would like a cup of tea, please.", pitch=20)
    b = speech_factory("The quick brown fox jumps over the lazy dog near the river bank, "
                       "and then it runs away.", pitch=90)
    data = {"a": a.read_bytes(), "b": b.read_bytes()}

    async def both() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=LOOPBACK)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL,
                                     timeout=120) as ac:
            ra, rb = await asyncio.gather(*(
                ac.post("/v1/analyze", files={"file": ("same.wav", data[k], "audio/wav")})
                for k in ("a", "b")))
        return {"a": ra, "b": rb}

    # the module's app is already running (TestClient): use its event loop
    responses = client.portal.call(both)
    results = {}
    for k, r in responses.items():
        assert r.status_code == 200, r.text
        results[k] = SessionResult.model_validate_json(r.content)
        assert results[k].source.path == "same.wav"
        assert results[k].source.sha256 == hashlib.sha256(data[k]).hexdigest()
        assert results[k].source.duration_s == pytest.approx(sf.info(a if k == "a" else b).duration,
                                                             abs=0.01)
    f0 = {k: np.nanmean([s.prosody.f0_mean_hz for s in res.segments
                         if s.prosody and s.prosody.f0_mean_hz]) for k, res in results.items()}
    assert f0["a"] < f0["b"] - 20  # espeak pitch 20 vs 90: each got its own audio
    assert tree(temp_root) == []


# ------------------------------------------------------------------------------------ cancel
def test_client_cancel_mid_upload_and_mid_analysis(tmp_path: Path, jfk_bytes: bytes) -> None:
    app = create_app(light_config(), settings=ServerSettings(temp_dir=tmp_path, workers=1))
    body, ctype = multipart([(b"file", b"a.flac", jfk_bytes)])
    box: dict[str, Any] = {}

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]

    async def scenario() -> None:
        state = box["state"] = app.state.vocalfusion
        # 1. the client goes away half-way through the upload
        r1 = await drive(app, headers={"content-type": ctype}, chunks=chunks(),
                         disconnect_after_chunks=3)
        box["mid_upload"] = (r1.status, state.tempdirs.live, state.gate.in_flight)
        # 2. the client goes away while the analysis runs
        r2 = await drive(app, headers={"content-type": ctype}, chunks=chunks(),
                         disconnect_after_body=True)
        box["mid_analysis"] = r2.status
        for _ in range(2000):
            if state.tempdirs.live == 0 and state.gate.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        box["after"] = (state.tempdirs.live, state.gate.in_flight, tree(state.tempdirs.root))

    run_with_lifespan(app, scenario)
    assert box["mid_upload"] == (499, 0, 0)
    assert box["mid_analysis"] == 499
    assert box["after"] == (0, 0, [])
    assert tree(tmp_path) == []  # the per-process root is gone after shutdown


def test_temp_dirs_are_private(app, client, tone_bytes: bytes, monkeypatch) -> None:
    state = app.state.vocalfusion
    seen: list[tuple[str, int]] = []
    original = state.analyze_upload

    def spy(upload, *args, **kwargs):
        seen.append((str(upload.path.relative_to(state.tempdirs.root)),
                     upload.path.parent.stat().st_mode & 0o777))
        return original(upload, *args, **kwargs)

    monkeypatch.setattr(state, "analyze_upload", spy)
    r = client.post("/v1/analyze", files={"file": ("../../../tmp/evil.wav", tone_bytes)})
    assert r.status_code == 200
    (rel, mode), = seen
    assert rel.startswith("req-") and rel.endswith("/upload")
    assert mode == 0o700
    assert state.tempdirs.root.stat().st_mode & 0o777 == 0o700
    assert tree(state.tempdirs.root) == []


# ------------------------------------------------------------------------------------ jobs
def test_jobs_lifecycle(client: TestClient, jfk_bytes: bytes, temp_root: Path) -> None:
    r = client.post("/v1/jobs", files={"file": ("j.flac", jfk_bytes)},
                    params={"segment_policy": "fixed", "window_s": 4})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "succeeded") and job["filename"] == "j.flac"
    assert wait_until(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"]
                      == "succeeded")
    info = client.get(f"/v1/jobs/{job['id']}").json()
    assert info["result_url"] == f"/v1/jobs/{job['id']}/result" and info["expires_at"]
    r = client.get(info["result_url"])
    assert r.status_code == 200
    result = SessionResult.model_validate_json(r.content)
    sync = client.post("/v1/analyze", files={"file": ("j.flac", jfk_bytes)},
                       params={"segment_policy": "fixed", "window_s": 4}).json()
    assert [s.model_dump(mode="json") for s in result.segments] == sync["segments"]
    assert tree(temp_root) == []
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_failed_job_and_unknown_ids(client: TestClient) -> None:
    r = client.post("/v1/jobs", files={"file": ("bad.wav", b"not audio at all")})
    assert r.status_code == 202
    jid = r.json()["id"]
    assert wait_until(lambda: client.get(f"/v1/jobs/{jid}").json()["status"] == "failed")
    assert client.get(f"/v1/jobs/{jid}").json()["error"]["code"] == "not_audio"
    r = client.get(f"/v1/jobs/{jid}/result")
    assert r.status_code == 415
    assert_envelope(r, "not_audio")
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert_envelope(r, "not_found")
    r = client.get("/v1/jobs/..%2F..%2Fetc")
    assert r.status_code in (404, 422)
    assert_envelope(r)
    assert client.delete("/v1/jobs/doesnotexist").status_code == 404


def test_job_store_bounds_and_expiry() -> None:
    store = JobStore(max_jobs=2, ttl_s=0.05)
    a, b = store.add("a"), store.add("b")
    assert a and b and store.add("c") is None  # full of unfinished jobs
    store.finish(a, error=None, error_status=None)
    assert store.add("c") is None  # a result is kept until its expires_at, never evicted
    time.sleep(0.1)
    c = store.add("c")  # the expired one made room
    assert c is not None and store.get(a.id) is None and len(store) == 2
    store.finish(b, result=None, error=None)
    time.sleep(0.1)
    assert store.get(b.id) is None  # expired


# ------------------------------------------------------------------------------------ report
def test_report_is_html_and_escapes_names(client: TestClient, tone_bytes: bytes) -> None:
    evil = "<img src=x onerror=alert(1)>.wav"
    r = client.post("/v1/report", files={"file": (evil, tone_bytes)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<img src=x" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "http://" not in r.text and "https://" not in r.text.replace(
        "https://www.w3.org", "")


# ------------------------------------------------------------------------------------ auth
KEY = "k" * 8 + "-test-key-0123456789"


def test_api_key_required_when_set(tmp_path: Path, tone_bytes: bytes) -> None:
    app = create_app(light_config(), settings=ServerSettings(temp_dir=tmp_path, api_key=KEY))
    with TestClient(app) as c:  # client host "testclient": not loopback, the key decides
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}):
            r = c.get("/v1/models", headers=headers)
            assert r.status_code == 401
            assert_envelope(r, "unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
        assert r.status_code == 401
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)},
                      headers=ok).status_code == 200
        assert tree(app.state.vocalfusion.tempdirs.root) == []


def test_keyless_server_serves_loopback_only(tmp_path: Path) -> None:
    app = create_app(light_config(), settings=ServerSettings(temp_dir=tmp_path))
    with TestClient(app, base_url=LOCAL, client=("203.0.113.7", 4000)) as c:
        r = c.get("/v1/models")
        assert r.status_code == 403
        assert_envelope(r, "forbidden")
        assert c.get("/healthz").status_code == 200
    with TestClient(app, base_url=LOCAL, client=("::1", 4000)) as c:
        assert c.get("/v1/models").status_code == 200


def test_bind_safety_and_serve_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.8.9.1", "::ffff:127.0.0.1"):
        assert is_loopback_host(host)
        check_bind_safety(ServerSettings(host=host))
    for host in (ALL_INTERFACES, "::", "192.168.1.2", "example.com", ""):
        assert not is_loopback_host(host)
    from features.errors import ConfigError

    with pytest.raises(ConfigError, match="API key"):
        check_bind_safety(ServerSettings(host=ALL_INTERFACES))
    check_bind_safety(ServerSettings(host=ALL_INTERFACES, api_key=KEY))
    check_bind_safety(ServerSettings(host=ALL_INTERFACES, allow_unauthenticated_remote=True))
    with pytest.raises(ValueError, match="16"):
        ServerSettings(api_key="short")

    from fusion.cli.main import main

    monkeypatch.delenv("VF_TEST_KEY", raising=False)
    # refuses to start (exit 2) before binding anything
    assert main(["serve", "--host", ALL_INTERFACES, "--api-key-env", "VF_TEST_KEY"]) == 2
    from fusion.cli.commands.serve import settings_from_args
    from fusion.cli.main import build_parser

    monkeypatch.setenv("VF_TEST_KEY", KEY)
    args = build_parser().parse_args(["serve", "--host", ALL_INTERFACES, "--api-key-env",
                                      "VF_TEST_KEY", "--max-upload-mb", "2", "--workers", "1"])
    s = settings_from_args(args)
    assert s.api_key.get_secret_value() == KEY and s.max_upload_bytes == 2 << 20
    check_bind_safety(s)


# ------------------------------------------------------------------------------------ errors, logs
def test_one_error_envelope_everywhere(app, client: TestClient, tone_bytes: bytes,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert_envelope(client.get("/nope"), "not_found")
    r = client.put("/v1/analyze")
    assert r.status_code == 405
    assert_envelope(r, "method_not_allowed")
    r = client.get("/v1/jobs/" + "x" * 100)
    assert r.status_code == 422
    assert_envelope(r, "invalid_request")

    state = app.state.vocalfusion

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("secret detail at /work/private/path.py")

    monkeypatch.setattr(state, "analyze_upload", boom)
    r = client.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
    assert r.status_code == 500
    err = assert_envelope(r, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert err["request_id"] == r.headers["x-request-id"]
    assert state.gate.in_flight == 0 and tree(state.tempdirs.root) == []


def test_one_structured_log_line_per_request(client: TestClient, speech_wav: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vocalfusion")
    r = client.post("/v1/analyze", files={"file": ("secret-patient-name.wav",
                                                    speech_wav.read_bytes())})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    lines = [rec for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["request_id"] == rid and fields["route"] == "/v1/analyze"
    assert fields["status"] == 200 and fields["duration_ms"] > 0 and fields["method"] == "POST"
    formatted = [JsonFormatter().format(rec) for rec in caplog.records]
    for line in formatted:
        parsed = json.loads(line)
        assert "secret-patient-name" not in line
        assert {"ts", "level", "logger", "msg"} <= set(parsed)


def test_openapi_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/healthz", "/readyz", "/v1/models", "/v1/analyze", "/v1/report", "/v1/jobs",
              "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"):
        assert p in paths, p
    analyze = paths["/v1/analyze"]["post"]
    schema = analyze["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert analyze["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SessionResult")
    for code in ("413", "415", "422", "429"):
        assert analyze["responses"][code]["content"]["application/json"]["schema"][
            "$ref"].endswith("/ErrorResponse")
    assert client.get("/docs").status_code == 404  # Swagger UI (CDN scripts) is opt-in


# ------------------------------------------------------------------------------------ models
def test_missing_model_stream_reported_as_skipped(tmp_path: Path, tone_bytes: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = light_config(**{"emotion.enabled": True,
                          "emotion.model": str(tmp_path / "no-such-model")})
    app = create_app(cfg, settings=ServerSettings(temp_dir=tmp_path / "t"))
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        emo = c.get("/v1/models").json()["streams"]["emotion"]
        assert emo["status"] == "skipped"
        assert "no-such-model" in emo["reason"]
        r = c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
        assert r.status_code == 200
        assert r.json()["streams"]["emotion"]["status"] == "skipped"
        assert r.json()["streams"]["prosody"]["status"] == "ok"


def test_background_loading_reports_not_ready_then_ready(tmp_path: Path,
                                                        tone_bytes: bytes) -> None:
    from fusion.engine.analyzer import Analyzer

    release = threading.Event()

    class HeldAnalyzer(Analyzer):
        """The real Analyzer, whose loading waits until the test lets it go."""

        def load(self) -> Analyzer:
            release.wait(30)
            return super().load()

    app = create_app(settings=ServerSettings(temp_dir=tmp_path, load_models="background"),
                     analyzer=HeldAnalyzer(light_config()))
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        assert c.get("/healthz").status_code == 200  # alive while loading
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"]
        assert_envelope(r, "not_ready")
        r = c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)})
        assert r.status_code == 503
        assert_envelope(r, "not_ready")
        release.set()
        assert wait_until(lambda: c.get("/readyz").status_code == 200)
        assert c.post("/v1/analyze", files={"file": ("t.wav", tone_bytes)}).status_code == 200
    app2 = create_app(light_config(), settings=ServerSettings(temp_dir=tmp_path))

    async def not_started() -> httpx.Response:  # lifespan never ran
        transport = httpx.ASGITransport(app=app2, client=LOOPBACK)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            return await ac.get("/readyz")

    r = asyncio.run(not_started())
    assert r.status_code == 503
    assert_envelope(r, "not_ready")
    assert r.headers["retry-after"]


# ------------------------------------------------------------------------------ default config
def test_default_config_end_to_end(tmp_path: Path, speech_wav: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped default config: Whisper tiny.en, VADER, prosody, fusion prior; emotion is
    skipped here (its hub model is not cached on this machine) or ok where it is."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = create_app(settings=ServerSettings(temp_dir=tmp_path))
    with TestClient(app, base_url=LOCAL, client=LOOPBACK) as c:
        streams = c.get("/v1/models").json()["streams"]
        assert set(streams) == {"prosody", "emotion", "transcript", "sentiment",
                                "egemaps"}
        for info in streams.values():
            assert info["status"] in ("ok", "skipped")
            assert info["status"] == "ok" or info["reason"]
        r = c.post("/v1/analyze", files={"file": ("speech.wav", speech_wav.read_bytes())})
        assert r.status_code == 200, r.text
        result = SessionResult.model_validate_json(r.content)
        assert result.streams["transcript"].status == "ok"
        text = " ".join(s.transcript.text for s in result.segments if s.transcript)
        assert "weather" in text.lower() or "market" in text.lower()
        assert result.fusion is not None
        assert tree(app.state.vocalfusion.tempdirs.root) == []


# ------------------------------------------------------------------------------ real uvicorn
@pytest.mark.slow
def test_real_uvicorn_limits_and_cancel_over_tcp(tmp_path: Path, jfk_bytes: bytes) -> None:
    """The same limits through a real uvicorn socket: 413 without reading an over-limit body,
    413 mid-stream for chunked bodies, and a client that hangs up leaves no temp file."""
    import socket

    import uvicorn

    limit = 2 * 1024 * 1024
    settings = ServerSettings(temp_dir=tmp_path, max_upload_bytes=limit)
    app = create_app(light_config(), settings=settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 60)
        state = app.state.vocalfusion
        head = (b'--' + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
                b'filename="x.wav"\r\n\r\n')

        def exchange(request_head: bytes, chunks: Iterable[bytes], read: bool = True) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request_head)
                for c in chunks:
                    try:
                        sock.sendall(c)
                    except OSError:
                        break
                if not read:
                    return b""
                data = b""
                while b"\r\n\r\n" not in data or b"}}" not in data:
                    block = sock.recv(65536)
                    if not block:
                        break
                    data += block
                return data

        honest = exchange(b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " +
                          CTYPE.encode() + b"\r\nContent-Length: 10000000\r\n\r\n", [head])
        assert honest.startswith(b"HTTP/1.1 413"), honest[:100]
        big = [b"%x\r\n%s\r\n" % (65536, b"\x00" * 65536)] * 48  # 3 MiB
        chunked = exchange(b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " +
                           CTYPE.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n",
                           [b"%x\r\n%s\r\n" % (len(head), head), *big])
        assert chunked.startswith(b"HTTP/1.1 413"), chunked[:100]
        body, ctype = multipart([(b"file", b"a.flac", jfk_bytes)])
        req = (b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype.encode() +
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        exchange(req, [body[:len(body) // 2]], read=False)  # hang up mid-upload
        exchange(req, [body], read=False)                   # hang up mid-analysis
        assert wait_until(lambda: state.gate.in_flight == 0 and state.tempdirs.live == 0)
        assert tree(state.tempdirs.root) == []
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/analyze",
                        files={"file": ("a.flac", jfk_bytes)}, timeout=120)
        assert ok.status_code == 200
    finally:
        server.should_exit = True
        thread.join(30)
    assert tree(tmp_path) == []
