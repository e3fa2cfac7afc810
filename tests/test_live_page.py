"""The live page ``/live`` in headless Chromium (Playwright) with a fake microphone.

The browser's microphone plays ``examples/jfk.flac`` (``--use-file-for-fake-audio-capture``);
the page's AudioWorklet sends int16 frames to ``/v1/stream`` of a real uvicorn server. Checked:
segments appear, the chart grows, no console error, no request leaves the server's origin.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from fusion.config import load_config
from fusion.server.app import ServerSettings, create_app, uvicorn_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "examples" / "jfk.flac"
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = ServerSettings(temp_dir=tmp_path_factory.mktemp("page"), port=port)
    app = create_app(load_config(overrides=LIGHT), settings=settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(40)


def wait_js(page: Any, expr: str, timeout_s: float = 60.0) -> None:
    """Poll ``expr`` with ``page.evaluate`` (``wait_for_function`` evals a string, which the
    page's CSP rightly forbids)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(f"() => Boolean({expr})"):
            return
        time.sleep(0.1)
    pytest.fail(f"not true within {timeout_s} s: {expr}")


def test_live_page_with_fake_microphone(server_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on this machine")
    y, sr = sf.read(JFK, dtype="float32")
    y = y.mean(axis=1) if y.ndim == 2 else y
    wav = tmp_path / "mic.wav"
    # speech, then 2 s of silence so the last segment closes while the fake mic loops
    sf.write(wav, np.concatenate([y, np.zeros(2 * sr, dtype=np.float32)]), sr,
             subtype="PCM_16")
    console_errors: list[str] = []
    foreign: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))

            def watch(req: Any) -> None:
                if not (req.url.startswith(server_url) or req.url.startswith("blob:")
                        or req.url.startswith(server_url.replace("http", "ws", 1))
                        or req.url.startswith("data:")):
                    foreign.append(req.url)

            page.on("request", watch)
            page.on("websocket", lambda ws: watch(ws))
            page.goto(f"{server_url}/live")
            page.click("#mic")
            wait_js(page, "document.querySelectorAll('#rows tr').length >= 2")
            n_points = page.evaluate(
                "() => document.getElementById('line-depression').getAttribute('points')"
                ".trim().split(' ').filter(Boolean).length")
            wait_js(page, "document.querySelectorAll('#rows tr').length >= 3")
            grown = page.evaluate(
                "() => document.getElementById('line-depression').getAttribute('points')"
                ".trim().split(' ').filter(Boolean).length")
            page.click("#stop")
            wait_js(page, "document.body.dataset.done === '1'")
            rows = page.locator("#rows tr").count()
        finally:
            browser.close()
    assert rows >= 3
    assert grown > n_points >= 1
    assert console_errors == []
    assert foreign == []
