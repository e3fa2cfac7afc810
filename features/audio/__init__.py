"""Audio input: any common format → mono float32 16 kHz :class:`~features.audio.load.Audio`.

:mod:`~features.audio.load` sniffs, probes and loads; :mod:`~features.audio.blocks` decodes,
checks, mixes and resamples in ~10-s blocks; ``_decode_worker`` is the isolated decoder child.
"""
