"""Corpus runs: the resumable runner (:mod:`~fusion.batch.runner`), its worker pool
(:mod:`~fusion.batch.pool`, :mod:`~fusion.batch.worker`), progress display
(:mod:`~fusion.batch.progress`) and the Ray Data backend (:mod:`~fusion.batch.ray_data`)."""
