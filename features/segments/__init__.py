"""Segments: Silero VAD and segmentation policies (:mod:`~features.segments.vad`), and words ↔
segments alignment (:mod:`~features.segments.alignment`)."""
