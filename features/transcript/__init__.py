"""The transcript stream: Whisper backends (:mod:`~features.transcript.stream`) and speech windows
for batched decoding (:mod:`~features.transcript.windows`)."""
