"""Tests of model resolution, the pickle policy, offline behaviour and `vocalfusion models`.

No test reaches the internet: hub ids are looked up in temporary (empty or hand-built) cache
directories, "network" tests talk to servers on 127.0.0.1 started here (one that never answers,
one that answers a model-info request), and socket connections are refused and recorded where a
test must prove that nothing was attempted. Model directories hold tiny RANDOMLY INITIALISED
wav2vec2 weights or plain files; none of them is a usable emotion model.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from _no_network import NoNetwork

from features.errors import ModelUnavailable, UnsafeModelFileError
from features.sources import (
    KNOWN_SAFE_REVISIONS,
    ModelSource,
    UnsafeModelWeights,
    ensure_model,
    is_offline,
    resolve_model,
)
from fusion.config import load_config
from fusion.engine.inventory import fetch_models, list_models


def _go_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode for this test even when the run started offline (CI sets HF_HUB_OFFLINE=1):
    huggingface_hub reads the variable once, at import, into its constants."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

def _transformers_dir(path: Path, weights: str = "model.safetensors") -> Path:
    """A directory with the *file layout* of a transformers model (contents are not loaded)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "wav2vec2"}')
    (path / weights).write_bytes(b"\0" * 16)
    return path


def _hub_cache(root: Path, repo_id: str, files: dict[str, bytes], *,
               commit: str = "a" * 40, ref: str = "main") -> Path:
    """The Hugging Face cache layout (models--org--name/{refs,snapshots}) with given files."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit)
    return snap


# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, kind", [("bundled:tiny.en", "faster-whisper"),
                                        ("bundled:silero-vad", "onnx"),
                                        ("bundled:vader", "lexicon")])
def test_bundled_models_resolve_without_network(spec, kind, monkeypatch) -> None:
    net = NoNetwork().install(monkeypatch)
    src = resolve_model(spec)
    assert src.origin == "bundled" and src.available and src.kind == kind
    assert Path(src.path).exists()
    assert net.attempts == []


def test_unknown_bundled_name_lists_the_valid_ones() -> None:
    src = resolve_model("bundled:huge")
    assert not src.available
    assert "bundled:tiny.en" in src.remedy
    with pytest.raises(ModelUnavailable, match="unknown bundled model"):
        ensure_model(src)


def test_local_directory_states(tmp_path) -> None:
    missing = resolve_model(str(tmp_path / "nope"), setting="emotion.model")
    assert missing.origin == "local" and not missing.available
    assert "does not exist" in missing.detail and "emotion.model" in missing.remedy
    ok = resolve_model(str(_transformers_dir(tmp_path / "safe")))
    assert ok.available and ok.weights == "safetensors"
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    src = resolve_model(str(empty))
    assert not src.available and "no model.safetensors" in src.detail


def test_pickle_only_directory_refused_unless_allowed(tmp_path) -> None:
    d = _transformers_dir(tmp_path / "old", weights="pytorch_model.bin")
    src = resolve_model(str(d), setting="emotion.model")
    assert not src.available and src.unsafe and src.weights == "pickle"
    with pytest.raises(UnsafeModelWeights) as exc:
        ensure_model(src)
    # one exception that both the pipeline (ModelUnavailable → skipped) and callers that
    # look for unsafe files recognise
    assert isinstance(exc.value, ModelUnavailable)
    assert isinstance(exc.value, UnsafeModelFileError)
    assert "emotion.allow_pickle_weights = true" in str(exc.value)
    allowed = resolve_model(str(d), allow_pickle=True)
    assert allowed.available and allowed.weights == "pickle"
    assert ensure_model(allowed) == d.resolve()


def test_hub_id_in_cache_is_used_offline(tmp_path, monkeypatch) -> None:
    net = NoNetwork().install(monkeypatch)
    commit = "b" * 40
    snap = _hub_cache(tmp_path, "org/er-model", {"config.json": b"{}",
                                                 "model.safetensors": b"\0"}, commit=commit)
    src = resolve_model("org/er-model", offline=True, cache_dir=tmp_path)
    assert src.origin == "hub-cache" and src.available
    assert src.commit == commit and Path(src.path) == snap
    assert src.label == f"org/er-model@{commit}"
    assert ensure_model(src, cache_dir=tmp_path) == snap
    # a pinned revision that is not cached is not silently replaced by another one
    other = resolve_model("org/er-model", revision="c" * 40, offline=True, cache_dir=tmp_path)
    assert other.origin == "hub-download" and not other.available
    assert net.attempts == []


def test_cached_pickle_only_revision_is_refused(tmp_path) -> None:
    _hub_cache(tmp_path, "org/old", {"config.json": b"{}", "pytorch_model.bin": b"\0"})
    src = resolve_model("org/old", offline=True, cache_dir=tmp_path, setting="emotion.model")
    assert src.origin == "hub-cache" and not src.available and src.unsafe
    msg = str(src.error())
    assert "pin a revision of org/old that has model.safetensors" in msg


def test_default_emotion_model_is_pinned_to_its_safetensors_commit(tmp_path) -> None:
    src = resolve_model("superb/wav2vec2-base-superb-er", offline=True, cache_dir=tmp_path)
    assert src.revision == KNOWN_SAFE_REVISIONS["superb/wav2vec2-base-superb-er"]
    pinned = resolve_model("superb/wav2vec2-base-superb-er", revision="main", offline=True,
                           cache_dir=tmp_path)
    assert pinned.revision == "main"  # an explicit revision wins


def test_offline_hub_id_fails_fast_with_remedy_and_no_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = NoNetwork().install(monkeypatch)
    t0 = time.perf_counter()
    src = resolve_model("superb/wav2vec2-base-superb-er", cache_dir=tmp_path,
                        setting="emotion.model")
    assert src.offline and src.origin == "hub-download" and not src.available
    with pytest.raises(ModelUnavailable) as exc:
        ensure_model(src, cache_dir=tmp_path, setting="emotion.model")
    elapsed = time.perf_counter() - t0
    msg = str(exc.value)
    assert "vocalfusion models fetch" in msg
    assert "set emotion.model to a local directory" in msg
    assert "offline" in msg
    assert net.attempts == []
    assert elapsed < 10.0  # hang guard only


def test_runtime_offline_wins_over_environment(monkeypatch) -> None:
    _go_online(monkeypatch)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert is_offline(None) is False and is_offline(True) is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline(None) is True and is_offline(False) is False


@pytest.fixture()
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a dead hub)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


def test_unreachable_hub_fails_within_the_timeout(tmp_path, monkeypatch, silent_server) -> None:
    _go_online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    src = resolve_model("org/name", offline=False, cache_dir=tmp_path, setting="emotion.model")
    assert src.origin == "hub-download" and not src.offline
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as exc:
        ensure_model(src, cache_dir=tmp_path, timeout_s=1.0, setting="emotion.model")
    elapsed = time.perf_counter() - t0
    assert "cannot reach the Hugging Face hub" in str(exc.value)
    assert "vocalfusion models fetch" in str(exc.value)
    assert elapsed < 15.0  # hang guard only (measured: about 1 s)


class _InfoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with a hub model-info JSON whose only weights are a pickle."""

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(b"{}")

    def do_GET(self) -> None:  # noqa: N802
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self._reply(json.dumps({
            "id": "org/old", "sha": "d" * 40, "private": False,
            "siblings": [{"rfilename": "config.json"}, {"rfilename": "pytorch_model.bin"}],
        }).encode())

    def log_message(self, *args: object) -> None:
        pass


def test_pickle_only_hub_revision_is_refused_before_download(tmp_path, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InfoHandler)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _go_online(monkeypatch)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        src = resolve_model("org/old", offline=False, cache_dir=tmp_path,
                            setting="emotion.model")
        with pytest.raises(UnsafeModelWeights, match="publishes only pickle weights"):
            ensure_model(src, cache_dir=tmp_path, timeout_s=2.0, setting="emotion.model")
        assert any(p.startswith("/api/models/org/old") for p in server.paths)
        assert not any("resolve" in p for p in server.paths)  # no file was downloaded
    finally:
        server.shutdown()


def test_list_models_on_the_default_config(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = NoNetwork().install(monkeypatch)
    rows = list_models(load_config(), cache_dir=tmp_path)
    by_stream = {r.stream: r for r in rows}
    assert set(by_stream) == {"segments", "prosody", "emotion", "transcript", "sentiment"}
    for name in ("segments", "transcript", "sentiment"):
        assert by_stream[name].origin == "bundled" and by_stream[name].available
    emo = by_stream["emotion"]
    assert emo.spec == "superb/wav2vec2-base-superb-er"
    assert emo.origin == "hub-download" and not emo.available
    assert "vocalfusion models fetch" in emo.detail
    assert net.attempts == []
    # a disabled stream is not listed; a local emotion model is
    d = _transformers_dir(tmp_path / "local_er")
    cfg = load_config(overrides=[f"emotion.model={json.dumps(str(d))}", "sentiment.enabled=false"])
    rows = {r.stream: r for r in list_models(cfg, cache_dir=tmp_path)}
    assert "sentiment" not in rows
    assert rows["emotion"].origin == "local" and rows["emotion"].available


def test_fetch_models_offline_attempts_nothing(tmp_path, monkeypatch) -> None:
    net = NoNetwork().install(monkeypatch)
    cfg = load_config(overrides=["runtime.offline=true"])
    rows = {r.stream: r for r in fetch_models(cfg, cache_dir=tmp_path)}
    assert not rows["emotion"].available
    assert "offline mode is on" in rows["emotion"].detail
    assert rows["transcript"].available
    assert net.attempts == []


def test_models_cli_list_and_fetch(tmp_path, monkeypatch, capsys) -> None:
    from fusion.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    net = NoNetwork().install(monkeypatch)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "superb/wav2vec2-base-superb-er" in out and "bundled" in out
    assert "vocalfusion models fetch" in out
    assert main(["models", "list", "--json", "--set", "emotion.enabled=false"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["stream"] for d in data} == {"segments", "prosody", "transcript", "sentiment"}
    assert main(["models", "fetch", "--stream", "emotion"]) == 1  # offline: cannot fetch
    assert "offline mode is on" in capsys.readouterr().out.replace("\n", " ")
    assert main(["models", "fetch", "--stream", "transcript"]) == 0  # bundled: nothing to do
    assert main(["models", "list", "--set", "emotion.nope=1"]) == 2  # config error
    assert net.attempts == []


def test_model_source_error_types() -> None:
    plain = ModelSource(spec="x", kind="transformers", origin="local", available=False,
                        detail="gone", remedy="do y")
    assert type(plain.error()) is ModelUnavailable
    assert "gone" in str(plain.error()) and "do y" in str(plain.error())
    unsafe = plain.model_copy(update={"unsafe": True})
    assert isinstance(unsafe.error(), UnsafeModelWeights)


# --------------------------------------------------------------------------------------------
# a local stand-in for the hub's HTTP API (the real hub is unreachable from the test machine)
# --------------------------------------------------------------------------------------------

_FAKE_REPO = "org/fake"
_FAKE_COMMIT = "e" * 40
_FAKE_FILES = {"config.json": b'{"model_type": "wav2vec2"}', "model.safetensors": b"\1" * 64,
               "pytorch_model.bin": b"\2" * 64, "flax_model.msgpack": b"\3" * 8,
               "preprocessor_config.json": b"{}", "README.md": b"# card"}


class _FakeHubHandler(http.server.BaseHTTPRequestHandler):
    """The four hub endpoints snapshot_download uses: revision info, tree, HEAD/GET resolve.
    The files are placeholder bytes (this tests what is fetched and where, not loading)."""

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _any(self) -> None:
        import hashlib
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(self.path).path)
        self.server.log.append((self.command, path))  # type: ignore[attr-defined]
        if path == f"/api/models/{_FAKE_REPO}" or path.startswith(
                f"/api/models/{_FAKE_REPO}/revision/"):
            return self._send(200, json.dumps({
                "id": _FAKE_REPO, "sha": _FAKE_COMMIT, "private": False,
                "siblings": [{"rfilename": f} for f in _FAKE_FILES]}).encode(),
                {"Content-Type": "application/json"})
        if path.startswith(f"/api/models/{_FAKE_REPO}/tree/"):
            tree = [{"type": "file", "path": f, "size": len(b),
                     "oid": hashlib.sha256(b).hexdigest()[:40]} for f, b in _FAKE_FILES.items()]
            return self._send(200, json.dumps(tree).encode(),
                              {"Content-Type": "application/json"})
        prefix = f"/{_FAKE_REPO}/resolve/"
        if path.startswith(prefix):
            fname = path[len(prefix):].partition("/")[2]
            if fname in _FAKE_FILES:
                body = _FAKE_FILES[fname]
                return self._send(200, body, {
                    "X-Repo-Commit": _FAKE_COMMIT,
                    "ETag": '"' + hashlib.sha256(body).hexdigest() + '"'})
        return self._send(404, b"{}", {"Content-Type": "application/json"})

    do_GET = do_HEAD = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_hub(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHubHandler)
    server.log = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _go_online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()


def test_download_fetches_safe_files_and_records_the_ref(tmp_path, fake_hub) -> None:
    src = resolve_model(_FAKE_REPO, offline=False, cache_dir=tmp_path)
    assert src.origin == "hub-download" and not src.available
    path = ensure_model(src, cache_dir=tmp_path, timeout_s=5.0)
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    downloaded = {p for m, p in fake_hub.log if m == "GET" and "/resolve/" in p}
    assert not any(p.endswith((".bin", ".msgpack")) for p in downloaded)
    # the cache now answers for revision "main" without the network (refs/main was written)
    again = resolve_model(_FAKE_REPO, offline=True, cache_dir=tmp_path)
    assert again.origin == "hub-cache" and again.available and again.commit == _FAKE_COMMIT


def test_fetch_models_then_list_offline(tmp_path, fake_hub) -> None:
    cfg = load_config(overrides=[f'emotion.model="{_FAKE_REPO}"',
                                 "emotion.allow_pickle_weights=true"])
    rows = {r.stream: r for r in fetch_models(cfg, cache_dir=tmp_path, timeout_s=5.0,
                                              streams=["emotion"])}
    assert list(rows) == ["emotion"] and rows["emotion"].available
    snap = Path(rows["emotion"].source.path)
    assert (snap / "pytorch_model.bin").is_file()  # pickle fetched only because allowed
    offline_cfg = cfg.with_overrides(["runtime.offline=true"])
    listed = {r.stream: r for r in list_models(offline_cfg, cache_dir=tmp_path)}
    assert listed["emotion"].origin == "hub-cache" and listed["emotion"].available
