"""Speaker diarization: who speaks when (GE2E embeddings + clustering, or one speaker per
channel)."""
