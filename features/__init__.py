"""vocalfusion measurements: what the voice does.

One module per job: :mod:`features.audio` (input), :mod:`features.segments` (VAD and
segmentation), and one module per stream (:mod:`features.prosody`, :mod:`features.emotion`,
:mod:`features.transcript`, :mod:`features.sentiment`) behind the contract in
:mod:`features.stream`. Importing this package imports no model library.
"""

__all__ = ["audio", "segments", "stream", "errors"]
