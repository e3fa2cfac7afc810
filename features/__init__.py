"""vocalfusion measurements: what the voice does.

One module per job: :mod:`features.audio.load` (input), :mod:`features.segments.vad` (VAD and
segmentation), and one package per stream (:mod:`features.prosody.stream`,
:mod:`features.emotion.stream`,
:mod:`features.transcript.stream`, :mod:`features.sentiment.stream`) behind the contract in
:mod:`features.stream`. Importing this package imports no model library.
"""

__all__ = ["audio", "segments", "stream", "errors"]
