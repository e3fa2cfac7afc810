"""The model inventory: every model a config would load, where it comes from, whether it is
here (``vocalfusion models list``), and fetching the missing ones (``vocalfusion models fetch``).

It reads the config, so it lives in the engine layer; resolving one model is
:func:`features.sources.resolve_model`'s job.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from features.errors import ModelUnavailable, ParameterError
from features.registry import stream_specs
from features.sources import ModelStatus, _looks_like_path, download_model, resolve_model
from fusion.config import Config

__all__ = ["list_models", "fetch_models", "MODEL_STREAMS"]

#: the streams that can have a model (the names ``models fetch --stream`` accepts)
MODEL_STREAMS = ("segments", "prosody", "emotion", "transcript", "sentiment")


# --------------------------------------------------------------------------------------------
# every model of a config
# --------------------------------------------------------------------------------------------

def _config_models(config: Config) -> list[tuple[str, str, dict[str, Any]]]:
    """(stream, spec, resolve kwargs) for every model the config would load: the VAD, then
    what each registered stream's spec says its section needs."""
    items: list[tuple[str, str, dict[str, Any]]] = []
    if config.segments.policy == "vad":
        items.append(("segments", "bundled:silero-vad", {"kind": "onnx"}))
    for spec in stream_specs():
        for need in spec.model_needs(config.stream_section(spec.name)):
            items.append((spec.name, need.spec, need.kwargs))
    return items


def _status_builtin(stream: str, spec: str) -> ModelStatus:
    if spec.startswith("builtin:opensmile"):
        from features.egemaps.stream import INSTALL_HINT

        ok = importlib.util.find_spec("opensmile") is not None
        return ModelStatus(stream=stream, spec=spec, origin="builtin", available=ok,
                           detail="openSMILE functionals (configs inside the package)" if ok
                           else INSTALL_HINT)
    ok = importlib.util.find_spec("parselmouth") is not None
    return ModelStatus(stream=stream, spec=spec, origin="builtin", available=ok,
                       detail="Praat via Parselmouth (no model file)" if ok else
                       "parselmouth is not installed: run `pip install praat-parselmouth`")


def _status_openai_whisper(stream: str, spec: str) -> ModelStatus:
    if spec.startswith("bundled:"):
        return ModelStatus(stream=stream, spec=spec, origin="bundled", available=False,
                           detail="bundled Whisper models are CTranslate2 models for the "
                                  "faster-whisper backend; set transcript.backend = "
                                  "'faster-whisper' or name an openai-whisper model")
    root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "whisper"
    path = Path(spec).expanduser() if _looks_like_path(spec) else root / f"{spec}.pt"
    ok = path.is_file()
    return ModelStatus(
        stream=stream, spec=spec, origin="local" if _looks_like_path(spec) else "download",
        available=ok,
        detail=(f"{path} (openai-whisper checkpoint, a PyTorch pickle)" if ok else
                f"{path} not found; openai-whisper downloads its own checkpoints (PyTorch "
                "pickle files, not fetched by `vocalfusion models fetch`)"))


def list_models(config: Config, *, cache_dir: str | os.PathLike[str] | None = None
                ) -> list[ModelStatus]:
    """Every model the active config would load, where it comes from and whether it is here.

    Uses no network. ``config.runtime.offline`` (or ``HF_HUB_OFFLINE``) decides whether a
    missing hub model is reported as "will be downloaded" or "downloads are off".
    """
    offline = config.runtime.offline
    rows: list[ModelStatus] = []
    for stream, spec, kw in _config_models(config):
        if spec.startswith("builtin:"):
            rows.append(_status_builtin(stream, spec))
            continue
        if kw.get("kind") == "openai-whisper":
            rows.append(_status_openai_whisper(stream, spec))
            continue
        src = resolve_model(spec, offline=offline, cache_dir=cache_dir, **kw)
        detail = src.detail if src.available or not src.remedy else (
            f"{src.detail}. To fix: {src.remedy}")
        rows.append(ModelStatus(stream=stream, spec=spec, origin=src.origin,
                                available=src.available, detail=detail, source=src))
    return rows


def fetch_models(config: Config, *, cache_dir: str | os.PathLike[str] | None = None,
                 timeout_s: float | None = None,
                 streams: Iterable[str] | None = None) -> list[ModelStatus]:
    """Download every configured hub model that is not in the cache yet.

    Safetensors, config and tokenizer files only (plus ``pytorch_model*.bin`` where the
    stream's ``allow_pickle_weights`` is on). Bundled and local models are checked, not
    copied. Offline mode (``runtime.offline`` / ``HF_HUB_OFFLINE``) makes every needed
    download fail with a message instead of trying.

    Returns
    -------
    list of ModelStatus
        One row per model, after the attempt; ``available`` False rows say why.
    """
    wanted = set(streams) if streams is not None else None
    unknown = sorted(wanted - set(MODEL_STREAMS)) if wanted is not None else []
    if unknown:
        raise ParameterError(f"unknown stream name(s) {', '.join(unknown)} for models fetch; "
                             f"valid: {', '.join(MODEL_STREAMS)}")
    out: list[ModelStatus] = []
    for stream, spec, kw in _config_models(config):
        if wanted is not None and stream not in wanted:
            continue
        if spec.startswith("builtin:"):
            out.append(_status_builtin(stream, spec))
            continue
        if kw.get("kind") == "openai-whisper":
            out.append(_status_openai_whisper(stream, spec))
            continue
        src = resolve_model(spec, offline=config.runtime.offline, cache_dir=cache_dir, **kw)
        if src.available or src.origin != "hub-download" or src.repo_id is None:
            out.append(ModelStatus(stream=stream, spec=spec, origin=src.origin,
                                   available=src.available,
                                   detail=src.detail if src.available else str(src.error()),
                                   source=src))
            continue
        if src.offline:
            out.append(ModelStatus(
                stream=stream, spec=spec, origin=src.origin, available=False, source=src,
                detail=f"{src.repo_id}@{src.revision}: not downloaded because offline mode is "
                       "on (runtime.offline or HF_HUB_OFFLINE=1); run this on a machine with "
                       "network, then copy the Hugging Face cache"))
            continue
        try:
            path = download_model(src.repo_id, kind=src.kind, revision=src.revision,
                                  allow_pickle=bool(kw.get("allow_pickle", False)),
                                  cache_dir=cache_dir, timeout_s=timeout_s,
                                  setting=str(kw.get("setting", "the model setting")))
        except ModelUnavailable as exc:
            out.append(ModelStatus(stream=stream, spec=spec, origin=src.origin,
                                   available=False, detail=str(exc), source=src))
            continue
        new = resolve_model(spec, offline=config.runtime.offline, cache_dir=cache_dir, **kw)
        out.append(ModelStatus(stream=stream, spec=spec, origin=new.origin,
                               available=new.available,
                               detail=f"downloaded to {path}" if new.available else new.detail,
                               source=new))
    return out
