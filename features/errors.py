"""One exception hierarchy for the whole engine.

Every message names the file (or the parameter) and states the bad value and, where there is
one, the valid range, in the manner of librosa's ``ParameterError``.
"""

from __future__ import annotations

__all__ = [
    "VocalfusionError",
    "ParameterError",
    "ConfigError",
    "InputFileError",
    "AudioError",
    "AudioFileNotFoundError",
    "UnreadableAudioFileError",
    "EmptyAudioFileError",
    "NotAudioError",
    "CorruptAudioError",
    "ZeroLengthAudioError",
    "InvalidSamplesError",
    "AudioTooLongError",
    "DecodeTimeoutError",
    "ModelUnavailable",
    "UnsafeModelFileError",
]


class VocalfusionError(Exception):
    """Base class of every error this package raises on purpose."""


class ParameterError(VocalfusionError, ValueError):
    """A function argument is outside its valid domain."""


class ConfigError(VocalfusionError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class InputFileError(VocalfusionError):
    """A path given as input is missing, not a regular file, unreadable or over a size cap.

    Parameters
    ----------
    path : str
        The path as the user gave it.
    problem : str
        What is wrong, in plain words.
    kind : {"not_found", "not_regular", "unreadable", "too_large"}
    """

    def __init__(self, path: str, problem: str, *, kind: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{self.path}: {problem}")


class AudioError(VocalfusionError):
    """A file could not be turned into analysable audio.

    Parameters
    ----------
    path : str
        The file concerned (as the user gave it).
    problem : str
        What is wrong, in plain words.
    """

    #: short machine-readable code, used by the batch runner and the HTTP API
    code: str = "audio_error"

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    code = "file_not_found"


class UnreadableAudioFileError(AudioError):
    code = "unreadable"


class EmptyAudioFileError(AudioError):
    code = "empty_file"


class NotAudioError(AudioError):
    code = "not_audio"


class CorruptAudioError(AudioError):
    code = "corrupt_audio"


class ZeroLengthAudioError(AudioError):
    code = "zero_length"


class InvalidSamplesError(AudioError):
    code = "invalid_samples"


class AudioTooLongError(AudioError):
    code = "too_long"


class DecodeTimeoutError(AudioError):
    code = "decode_timeout"


class ModelUnavailable(VocalfusionError):
    """A configured model cannot be loaded here; the message says what to run or set."""


class UnsafeModelFileError(VocalfusionError):
    """A model or calibration file would need an unsafe loader (pickle) and is refused."""
