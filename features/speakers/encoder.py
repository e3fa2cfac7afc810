"""GE2E speaker encoder (the one ``resemblyzer`` ships), run without resemblyzer's audio helpers.

The network is a 3-layer LSTM (40 → 256) over 40-band mel power frames (25 ms window, 10 ms
hop, 16 kHz) followed by a linear layer, a ReLU and L2 normalisation: every embedding is a
256-vector with non-negative entries and unit norm, so the cosine of two embeddings lies in
[0, 1]. The weights are read from ``pretrained.pt`` inside the installed ``resemblyzer``
package with ``torch.load(weights_only=True)`` (a restricted unpickler that builds tensors and
plain containers only, never arbitrary objects). The package is found without importing it:
``import resemblyzer`` imports ``webrtcvad``, which is not needed here.

torch is imported lazily, on :meth:`SpeakerEncoder.load`.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import ModelUnavailable, ParameterError

__all__ = [
    "SR",
    "FRAME_HOP_S",
    "WINDOW_FRAMES",
    "EMBEDDING_DIM",
    "SpeakerEncoder",
    "resemblyzer_weights_path",
    "mel_frames",
    "normalize_volume",
]

#: sample rate the encoder was trained at
SR = 16_000
#: mel frame hop (10 ms)
FRAME_HOP_S = 0.010
_N_FFT = 400  # 25 ms
_HOP = 160  # 10 ms
_N_MELS = 40
#: frames per embedding window in training (1.6 s)
WINDOW_FRAMES = 160
EMBEDDING_DIM = 256
_HIDDEN = 256
_LAYERS = 3
_TARGET_DBFS = -30.0
_INSTALL = ("install it with `pip install --no-deps resemblyzer` (its weights, pretrained.pt, "
            "17 MB, ship inside the package), or set speakers.mode = 'off' or 'channels'")


def resemblyzer_weights_path() -> Path:
    """Path of ``pretrained.pt`` inside the installed ``resemblyzer`` package.

    Raises
    ------
    ModelUnavailable
        When the package is not installed or has no ``pretrained.pt``.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the speaker encoder needs the resemblyzer package: {_INSTALL}.")
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "pretrained.pt"
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(
        "the resemblyzer package has no pretrained.pt; reinstall it "
        "(`pip install --no-deps --force-reinstall resemblyzer`).")


def normalize_volume(y: np.ndarray, target_dbfs: float = _TARGET_DBFS) -> np.ndarray:
    """Raise (never lower) the level of ``y`` to ``target_dbfs`` RMS, as the encoder's training did.

    Silence (RMS 0) is returned unchanged.
    """
    y = np.asarray(y, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0
    if rms <= 0.0:
        return y
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    if gain_db <= 0.0:
        return y
    return (y * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa.filters  # the filter bank only: librosa.feature costs seconds to import

    return np.asarray(librosa.filters.mel(sr=SR, n_fft=_N_FFT, n_mels=_N_MELS), np.float32)


def mel_frames(y: np.ndarray) -> np.ndarray:
    """40-band mel power frames of a 16 kHz signal, shape ``(n_frames, 40)``, float32.

    The encoder's front end, as ``librosa.feature.melspectrogram`` computes it (Hann window,
    centred frames with zero padding, power 2, Slaney mel filters; not a log spectrogram),
    in numpy. Frame ``i`` is centred at ``i * 10 ms``.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"the speaker encoder needs a mono signal; got shape {y.shape}")
    if len(y) == 0:
        return np.zeros((0, _N_MELS), dtype=np.float32)
    padded = np.pad(y, _N_FFT // 2)
    n_frames = 1 + (len(padded) - _N_FFT) // _HOP
    window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as scipy's
    basis = _mel_basis()
    out = np.empty((n_frames, _N_MELS), dtype=np.float32)
    step = 4096  # frames per block: bounded memory on long files
    for i in range(0, n_frames, step):
        idx = np.arange(i, min(n_frames, i + step))[:, None] * _HOP + np.arange(_N_FFT)[None, :]
        spec = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
        out[i:i + len(idx)] = spec.astype(np.float32) @ basis.T
    return out


class SpeakerEncoder:
    """The GE2E encoder: mel frames → unit-norm 256-d speaker embeddings.

    Load once with :meth:`load` (about 0.1 s); :meth:`embed_windows` is thread-safe.

    Parameters
    ----------
    weights_path : str or Path, optional
        A ``pretrained.pt`` in resemblyzer's format; default: the one inside the installed
        package.
    num_threads : int, optional
        torch intra-op threads for inference (default: torch's setting is left alone).
    """

    def __init__(self, weights_path: str | Path | None = None, *,
                 num_threads: int | None = None) -> None:
        self._weights_path = Path(weights_path) if weights_path is not None else None
        self._num_threads = num_threads
        self._net: Any = None
        self._lock = threading.Lock()

    @property
    def weights_path(self) -> Path:
        return self._weights_path or resemblyzer_weights_path()

    def load(self) -> SpeakerEncoder:
        """Build the network and read the weights (idempotent)."""
        with self._lock:
            if self._net is not None:
                return self
            path = self.weights_path
            if not path.is_file():
                raise ModelUnavailable(f"speaker encoder weights not found: {path}")
            try:
                import torch
            except ImportError as exc:  # pragma: no cover - torch is a core dependency
                raise ModelUnavailable("the speaker encoder needs torch: `pip install torch`"
                                       ) from exc
            try:
                ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure is "cannot load this file"
                raise ModelUnavailable(
                    f"{path}: cannot read the speaker encoder weights with the safe loader "
                    f"({type(exc).__name__}: {exc})") from exc
            state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
            if not isinstance(state, dict):
                raise ModelUnavailable(f"{path}: not a resemblyzer state dict")
            lstm = torch.nn.LSTM(_N_MELS, _HIDDEN, _LAYERS, batch_first=True)
            linear = torch.nn.Linear(_HIDDEN, EMBEDDING_DIM)
            try:
                lstm.load_state_dict({k[5:]: v for k, v in state.items()
                                      if k.startswith("lstm.")})
                linear.load_state_dict({k[7:]: v for k, v in state.items()
                                        if k.startswith("linear.")})
            except (RuntimeError, KeyError) as exc:
                raise ModelUnavailable(
                    f"{path}: the weights do not fit the GE2E encoder (3-layer LSTM 40→256, "
                    f"linear 256→256): {exc}") from exc
            lstm.eval()
            linear.eval()
            self._net = (torch, lstm, linear)
        return self

    def embed_frames(self, mels: np.ndarray) -> np.ndarray:
        """Embeddings of a batch of equally long mel windows.

        Parameters
        ----------
        mels : np.ndarray, shape (batch, n_frames, 40)

        Returns
        -------
        np.ndarray, shape (batch, 256), float32
            Unit-norm, non-negative rows (a row of zeros stays zeros: silence has no voice).
        """
        mels = np.asarray(mels, dtype=np.float32)
        if mels.ndim != 3 or mels.shape[2] != _N_MELS or mels.shape[1] == 0:
            raise ParameterError(
                f"mel windows must have shape (batch, frames ≥ 1, {_N_MELS}); got {mels.shape}")
        if mels.shape[0] == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self.load()
        torch, lstm, linear = self._net
        old_threads = torch.get_num_threads()
        if self._num_threads:
            torch.set_num_threads(self._num_threads)
        try:
            with torch.inference_mode():
                _, (hidden, _) = lstm(torch.from_numpy(mels))
                raw = torch.relu(linear(hidden[-1])).numpy()
        finally:
            if self._num_threads:
                torch.set_num_threads(old_threads)
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norm, 1e-12)).astype(np.float32)

    def embed_windows(self, mel: np.ndarray, starts: np.ndarray, n_frames: int = WINDOW_FRAMES,
                      *, batch_size: int = 256) -> np.ndarray:
        """Embeddings of ``mel[s : s + n_frames]`` for each start frame ``s`` (zero-padded)."""
        starts = np.asarray(starts, dtype=np.int64)
        if n_frames < 1:
            raise ParameterError(f"n_frames must be ≥ 1; got {n_frames}")
        pad = max(0, int(starts.max(initial=0)) + n_frames - len(mel))
        padded = np.concatenate([mel, np.zeros((pad, _N_MELS), np.float32)]) if pad else mel
        out = [self.embed_frames(np.stack([padded[s:s + n_frames]
                                           for s in starts[i:i + batch_size]]))
               for i in range(0, len(starts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)

    def embed_utterance(self, y: np.ndarray, *, hop_frames: int = 80) -> np.ndarray:
        """One voiceprint for a whole 16 kHz utterance: the normalised mean of its window
        embeddings.

        Utterances shorter than one window (1.6 s) are embedded whole.
        """
        mel = mel_frames(normalize_volume(y))
        if len(mel) == 0:
            raise ParameterError("cannot embed an empty signal")
        if len(mel) <= WINDOW_FRAMES:
            return self.embed_frames(mel[None])[0]
        starts = np.arange(0, len(mel) - WINDOW_FRAMES + 1, hop_frames)
        e = self.embed_windows(mel, starts).mean(axis=0)
        return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)
