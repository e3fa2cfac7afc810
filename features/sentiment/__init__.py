"""The sentiment stream (:mod:`~features.sentiment.stream`) and its word lists
(:mod:`~features.sentiment.lexicon`)."""
