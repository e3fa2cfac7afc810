"""The ``pyannote`` diarization backend, for users who have ``pyannote.audio`` installed.

The pipeline is configured by ``speakers.model``: a local pipeline directory (with its
``config.yaml``) or a hub id already in the local Hugging Face cache; nothing is downloaded
here. pyannote checkpoints are pickle files (``pytorch_model.bin``), so they are refused unless
``speakers.allow_pickle_weights = true``, the same rule as every other model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from features.errors import ModelUnavailable
from features.segments.vad import Segment
from features.sources import UnsafeModelWeights, resolve_model
from features.speakers.config import SpeakersConfig
from features.speakers.result import SpeakerInfo, SpeakersResult, SpeakerTurn

__all__ = ["pyannote_pipeline_path", "diarize_pyannote"]

_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def pyannote_pipeline_path(cfg: SpeakersConfig) -> Path:
    """Local directory of the configured pyannote pipeline, checked under the weights rule.

    Raises
    ------
    ModelUnavailable
        pyannote.audio is not installed, or the pipeline is not on this machine.
    UnsafeModelWeights
        The pipeline holds pickle checkpoints and ``allow_pickle_weights`` is false.
    """
    if importlib.util.find_spec("pyannote") is None or \
            importlib.util.find_spec("pyannote.audio") is None:
        raise ModelUnavailable(
            "speakers.backend = 'pyannote' needs pyannote.audio, which is not installed: "
            "`pip install pyannote.audio`, or use speakers.backend = 'resemblyzer' (offline, "
            "no extra download)")
    src = resolve_model(str(cfg.model or ""), kind="pyannote", offline=True,
                        allow_pickle=cfg.allow_pickle_weights, setting="speakers.model")
    if not src.available or src.path is None:
        raise ModelUnavailable(
            f"speakers.model = {cfg.model!r}: {src.detail}; {src.remedy or ''} (download the "
            "pipeline yourself and set speakers.model to its local directory)")
    path = Path(src.path)
    if path.is_file():
        path = path.parent
    if not (path / "config.yaml").is_file():
        raise ModelUnavailable(f"speakers.model: {path} has no config.yaml (not a pyannote "
                               "pipeline directory)")
    pickled = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                     if p.suffix in _PICKLE_SUFFIXES)
    if pickled and not cfg.allow_pickle_weights:
        raise UnsafeModelWeights(
            f"speakers.model: {path} holds pickle checkpoints ({', '.join(pickled[:3])}); pickle "
            "files can run code when loaded and are refused by default. Only if you trust the "
            "file's author, set speakers.allow_pickle_weights = true")
    return path


def diarize_pyannote(y: np.ndarray, segments: Sequence[Segment], cfg: SpeakersConfig
                     ) -> SpeakersResult:  # pragma: no cover - needs pyannote.audio
    """Diarize with a local pyannote pipeline; turns are clipped to the VAD speech."""
    path = pyannote_pipeline_path(cfg)
    import torch
    from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(str(path / "config.yaml"))
    kwargs = {"num_speakers": cfg.num_speakers} if cfg.num_speakers else \
        {"max_speakers": cfg.max_speakers}
    ann = pipeline({"waveform": torch.from_numpy(np.asarray(y, np.float32))[None],
                    "sample_rate": 16_000}, **kwargs)
    raw = [(float(t.start), float(t.end), str(lab))
           for t, _, lab in ann.itertracks(yield_label=True)]
    names: dict[str, str] = {}
    turns: list[SpeakerTurn] = []
    for seg in segments:
        for a, b, lab in raw:
            lo, hi = max(a, seg.start_s), min(b, seg.end_s)
            if hi > lo:
                names.setdefault(lab, f"S{len(names) + 1}")
                overlap = any(o != lab and max(oa, lo) < min(ob, hi) for oa, ob, o in raw)
                turns.append(SpeakerTurn(start_s=lo, end_s=hi, speaker=names[lab],
                                         overlap=overlap))
    turns.sort(key=lambda t: (t.start_s, t.speaker))
    speakers = [SpeakerInfo(label=n, speech_s=float(sum(t.duration_s for t in turns
                                                        if t.speaker == n and not t.overlap)))
                for n in names.values()]
    return SpeakersResult(
        mode="auto", backend="pyannote", num_speakers=len(speakers),
        count_estimated=cfg.num_speakers is None, turns=turns, speakers=speakers,
        policy=f"pyannote pipeline {path}, its turns clipped to the VAD speech")
