"""The acoustic emotion stream (:mod:`~features.emotion.stream`)."""
