"""Live analysis (issue 17) end to end: a REAL uvicorn server and a ``websockets`` client.

The server is built as ``vocalfusion serve`` builds it (:func:`fusion.server.app.uvicorn_config`)
with the prosody stream only (fast); the live limits are lowered through
``app.state.vocalfusion_live.settings`` so the idle and capacity paths run in seconds.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

websockets = pytest.importorskip("websockets")
from _net import free_port, wait_until  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from fusion.config import load_config  # noqa: E402
from fusion.server.app import ServerSettings, create_app, uvicorn_config  # noqa: E402
from fusion.server.live_ws import LiveSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "examples" / "jfk.flac"
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}
KEY = "live-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Served:
    port: int
    app: Any

    def url(self, query: str = "sample_rate=16000") -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream?{query}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import uvicorn

    port = free_port()
    settings = ServerSettings(temp_dir=tmp_path_factory.mktemp("live"), port=port,
                              api_key=KEY, allowed_origins=["http://localhost:9999"])
    app = create_app(load_config(overrides=LIGHT), settings=settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 120), "the server did not start"
        app.state.vocalfusion_live.settings = LiveSettings(
            max_streams=3, idle_timeout_s=2.0, max_session_s=120.0, max_queue_s=4.0,
            status_interval_s=0.5)
        yield Served(port, app)
    finally:
        server.should_exit = True
        thread.join(40)


def jfk_int16() -> tuple[np.ndarray, int]:
    y, sr = sf.read(JFK, dtype="int16")
    if y.ndim == 2:
        y = y.mean(axis=1).astype(np.int16)
    return y, int(sr)


def open_ws(served: Served, query: str = "sample_rate=16000", **kw: Any) -> Any:
    kw.setdefault("additional_headers", AUTH)
    return ws_connect(served.url(query), max_size=None, open_timeout=30, **kw)


def drain(ws: Any, timeout_s: float = 60.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes; and the close code."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            out.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
    except ConnectionClosed:
        pass
    except TimeoutError:
        pytest.fail(f"the server neither finished nor closed within {timeout_s} s: {out[-3:]}")
    return out, ws.close_code


def error_of(msgs: list[dict[str, Any]]) -> dict[str, Any]:
    errs = [m for m in msgs if m["type"] == "error"]
    assert len(errs) == 1, msgs
    assert errs[0]["message"]
    return errs[0]


def session_f0_median(segments: list[dict[str, Any]]) -> float:
    vals = [s["prosody"]["f0_median_hz"] for s in segments
            if s.get("prosody") and s["prosody"].get("f0_median_hz")]
    return float(np.median(vals))


# ------------------------------------------------------------------------------------ protocol
def test_stream_jfk_end_to_end_matches_file_analysis(served: Served) -> None:
    y, sr = jfk_int16()
    sent = b""
    with open_ws(served, f"sample_rate={sr}") as ws:
        for i in range(0, len(y), sr // 2):  # 0.5-s frames, as fast as possible
            frame = y[i:i + sr // 2].astype("<i2").tobytes()
            sent += frame
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        msgs, code = drain(ws)
    assert code == 1000
    kinds = [m["type"] for m in msgs]
    assert kinds[-1] == "session" and "error" not in kinds, kinds
    segs = [m for m in msgs if m["type"] == "segment"]
    result = msgs[-1]["result"]
    assert [s["segment"] for s in segs] == result["segments"]  # emitted segments are final
    for m in segs:
        assert m["speaker"] == "S1" and m["reference"] in ("session", "population")
        assert isinstance(m["warmup"], bool)
    assert [m["warmup"] for m in segs][:2] == [True, True]  # fewer than min_segments (3)
    src = result["source"]
    assert src["path"] == "<live>" and src["format"] == "pcm_s16le"
    assert src["sha256"] == hashlib.sha256(sent).hexdigest()
    assert src["duration_s"] == pytest.approx(len(y) / sr, abs=1e-3)
    assert src["original_sr"] == sr and src["channels"] == 1
    # equivalence with the file analysis of the same recording
    filed = served.app.state.vocalfusion.analyzer.process_file(JFK).model_dump(mode="json")
    assert abs(len(result["segments"]) - len(filed["segments"])) <= 1
    f_live, f_file = session_f0_median(result["segments"]), session_f0_median(filed["segments"])
    assert abs(f_live - f_file) / f_file < 0.02, (f_live, f_file)


def test_subprotocol_auth_is_answered_vocalfusion(served: Served) -> None:
    with ws_connect(served.url(), subprotocols=["vocalfusion", f"vocalfusion.bearer.{KEY}"],
                    open_timeout=30) as ws:
        assert ws.subprotocol == "vocalfusion"
        ws.send(np.zeros(1600, dtype="<i2").tobytes())
        ws.send(json.dumps({"type": "end"}))
        msgs, code = drain(ws)
    assert code == 1000 and msgs[-1]["type"] == "session"
    assert msgs[-1]["result"]["status"] == "insufficient speech"


@pytest.mark.parametrize("how", ["none", "wrong-header", "wrong-subprotocol"])
def test_unauthorized_is_refused_with_1008(served: Served, how: str) -> None:
    kw: dict[str, Any] = {"additional_headers": {}}
    if how == "wrong-header":
        kw["additional_headers"] = {"Authorization": "Bearer not-the-key-0123456789"}
    if how == "wrong-subprotocol":
        kw["subprotocols"] = ["vocalfusion", "vocalfusion.bearer.not-the-key-0123456789"]
    with open_ws(served, **kw) as ws:
        msgs, code = drain(ws)
    assert code == 1008 and error_of(msgs)["code"] == "unauthorized"


def test_forged_origin_is_refused_before_accept(served: Served) -> None:
    with pytest.raises(InvalidStatus) as info:
        open_ws(served, origin="https://evil.example")
    assert info.value.response.status_code == 403
    with open_ws(served, origin="http://localhost:9999") as ws:  # an allowed origin
        ws.send(json.dumps({"type": "end"}))
        _, code = drain(ws)
    assert code == 1000


@pytest.mark.parametrize("query", ["sample_rate=7999", "sample_rate=48001", "", "sample_rate=x",
                                   "sample_rate=16000&channels=2",
                                   "sample_rate=16000&speakers_mode=channels",
                                   "sample_rate=16000&num_speakers=0",
                                   "sample_rate=16000&colour=blue"])
def test_bad_query_is_bad_request_4400(served: Served, query: str) -> None:
    with open_ws(served, query) as ws:
        msgs, code = drain(ws)
    assert code == 4400 and error_of(msgs)["code"] == "bad_request"


@pytest.mark.parametrize("payload,code,err", [
    (b"\x00\x01\x02", 4400, "bad_request"),                 # odd length
    ("hello", 4400, "bad_request"),                          # text where audio is expected
    ('{"type": "stop"}', 4400, "bad_request"),
    (b"\x00\x00" * 16_001, 1009, "too_large"),               # more than 1 s at 16 kHz
])
def test_bad_frames(served: Served, payload: Any, code: int, err: str) -> None:
    with open_ws(served) as ws:
        ws.send(np.zeros(800, dtype="<i2").tobytes())
        ws.send(payload)
        msgs, close = drain(ws)
    assert close == code and error_of(msgs)["code"] == err


def test_client_that_never_ends_gets_idle_timeout(served: Served) -> None:
    t0 = time.monotonic()
    with open_ws(served) as ws:
        ws.send(np.zeros(1600, dtype="<i2").tobytes())
        msgs, code = drain(ws, timeout_s=20)
    assert code == 4408 and error_of(msgs)["code"] == "idle_timeout"
    assert 1.5 < time.monotonic() - t0 < 10


def test_disconnect_mid_segment_then_others_are_served(served: Served) -> None:
    y, sr = jfk_int16()
    with open_ws(served, f"sample_rate={sr}") as ws:  # 1 s: inside the first words
        ws.send(y[:sr].astype("<i2").tobytes())
    assert wait_until(lambda: served.app.state.vocalfusion_live.active == 0, 20)
    with open_ws(served) as ws2:
        ws2.send(json.dumps({"type": "end"}))
        msgs, code = drain(ws2)
    assert code == 1000 and msgs[-1]["type"] == "session"


def test_thousand_tiny_frames_per_second(served: Served) -> None:
    n, per = 2000, 16  # 2,000 frames of 1 ms = 2 s of audio, sent at about 1,000 frames/s
    with open_ws(served) as ws:
        t0 = time.monotonic()
        for k in range(n):
            ws.send(np.full(per, 100 * (k % 7), dtype="<i2").tobytes())
            ahead = k / 1000 - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        ws.send(json.dumps({"type": "end"}))
        msgs, code = drain(ws)
    assert code == 1000
    assert msgs[-1]["result"]["source"]["duration_s"] == pytest.approx(n * per / 16000)
    statuses = [m for m in msgs if m["type"] == "status"]
    assert statuses and all(m["lag_s"] >= 0 for m in statuses)
    assert max(m["received_s"] for m in statuses) <= n * per / 16000


def test_capacity_is_1013(served: Served) -> None:
    cap = served.app.state.vocalfusion_live.settings.max_streams
    with ExitStack() as stack:
        held = [stack.enter_context(open_ws(served)) for _ in range(cap)]
        for ws in held:  # each is admitted (a frame is accepted: no error arrives)
            ws.send(np.zeros(160, dtype="<i2").tobytes())
        assert wait_until(lambda: served.app.state.vocalfusion_live.active == cap, 10)
        with open_ws(served) as extra:
            msgs, code = drain(extra)
        assert code == 1013 and error_of(msgs)["code"] == "capacity"
    assert wait_until(lambda: served.app.state.vocalfusion_live.active == 0, 20)


def test_live_page_is_self_contained(served: Served) -> None:
    import httpx

    r = httpx.get(f"http://127.0.0.1:{served.port}/live", timeout=30)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in r.text
