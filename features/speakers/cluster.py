"""Clustering of speaker embeddings with an estimated number of speakers.

Spectral clustering on the cosine affinity of the window embeddings (rows pruned to their
strongest neighbours, then symmetrised, as in Wang et al. 2018, "Speaker diarization with
LSTM"); the count is the largest eigengap of the normalised affinity. Spectral clustering
always splits, so clusters whose voiceprints (normalised mean embeddings) are more alike than
``merge_similarity`` are then merged: this is what lets a one-speaker file stay one speaker.
"""

from __future__ import annotations

import numpy as np

from features.errors import ParameterError

__all__ = ["cluster_embeddings", "centroids", "eigengap_count"]


def centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit-norm mean embedding of each label ``0..k-1`` (zeros for an empty label)."""
    c = np.zeros((k, x.shape[1]), dtype=np.float64)
    for j in range(k):
        members = x[labels == j]
        if len(members):
            m = members.mean(axis=0)
            c[j] = m / max(float(np.linalg.norm(m)), 1e-12)
    return c


def _affinity(x: np.ndarray, keep: float = 0.3) -> np.ndarray:
    s = np.clip(x @ x.T, 0.0, 1.0)
    n = len(s)
    n_keep = max(2, int(np.ceil(keep * n)))
    if n_keep < n:
        thresh = -np.partition(-s, n_keep - 1, axis=1)[:, n_keep - 1:n_keep]
        s = np.where(s >= thresh, s, 0.0)
    return np.maximum(s, s.T)


def eigengap_count(affinity: np.ndarray, max_k: int) -> tuple[int, np.ndarray]:
    """Estimated cluster count (largest gap of the normalised affinity's top eigenvalues) and
    the spectral embedding (top eigenvectors, rows unit-norm) for ``max_k`` columns."""
    d = affinity.sum(axis=1)
    inv = 1.0 / np.sqrt(np.maximum(d, 1e-12))
    norm = affinity * inv[:, None] * inv[None, :]
    vals, vecs = np.linalg.eigh(norm)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    top = vals[:max_k + 1]
    gaps = top[:-1] - top[1:]
    k = int(np.argmax(gaps[:max_k])) + 1
    return k, vecs[:, :max_k]


def _kmeans(rows: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k <= 1:
        return np.zeros(len(rows), dtype=np.int64)
    emb = rows[:, :k] / np.maximum(np.linalg.norm(rows[:, :k], axis=1, keepdims=True), 1e-12)
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(emb).astype(np.int64)


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    uniq = np.unique(labels)
    mapping = {int(u): i for i, u in enumerate(uniq)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64), len(uniq)


def cluster_embeddings(
    x: np.ndarray,
    *,
    num_speakers: int | None = None,
    max_speakers: int = 6,
    merge_similarity: float = 0.8,
    weights_s: np.ndarray | None = None,
    min_speaker_s: float = 0.0,
) -> np.ndarray:
    """Speaker label (0..k-1) of each embedding.

    Parameters
    ----------
    x : np.ndarray, shape (n, d)
        Unit-norm embeddings, one per window.
    num_speakers : int, optional
        Fixed count (no estimate, no merging); capped at ``n``.
    max_speakers : int
        Upper bound of the estimated count.
    merge_similarity : float
        Clusters whose voiceprints have a cosine above this are merged (estimated count only).
    weights_s : np.ndarray, shape (n,), optional
        Seconds of speech each embedding stands for (default 1 each).
    min_speaker_s : float
        An estimated cluster with less speech than this joins the most similar other cluster.

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ParameterError(f"embeddings must have shape (n, d); got {x.shape}")
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.ones(n) if weights_s is None else np.asarray(weights_s, dtype=np.float64)
    if num_speakers is not None:
        k = min(int(num_speakers), n)
        if k <= 1:
            return np.zeros(n, dtype=np.int64)
        _, rows = eigengap_count(_affinity(x), min(k, n - 1))
        labels = _kmeans(rows, k) if k < n else np.arange(n, dtype=np.int64)
        return _refine(x, labels, k, fixed=True)
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    max_k = max(1, min(max_speakers, n - 1))
    k, rows = eigengap_count(_affinity(x), max_k)
    labels = _kmeans(rows, k)
    labels, k = _relabel(labels)
    while k > 1:  # merge clusters of one voice
        c = centroids(x, labels, k)
        sim = c @ c.T
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[i, j] <= merge_similarity:
            break
        labels[labels == max(i, j)] = min(i, j)
        labels, k = _relabel(labels)
    while k > 1:  # too little speech to be a speaker of its own
        mass = np.bincount(labels, weights=w, minlength=k)
        small = int(np.argmin(mass))
        if mass[small] >= min_speaker_s:
            break
        c = centroids(x, labels, k)
        sim = c @ c[small]
        sim[small] = -np.inf
        labels[labels == small] = int(np.argmax(sim))
        labels, k = _relabel(labels)
    return _refine(x, labels, k, fixed=False)


def _refine(x: np.ndarray, labels: np.ndarray, k: int, *, fixed: bool, iters: int = 3
            ) -> np.ndarray:
    """A few k-means steps in cosine space: each window to its nearest voiceprint."""
    for _ in range(iters):
        c = centroids(x, labels, k)
        new = np.argmax(x @ c.T, axis=1).astype(np.int64)
        if fixed and len(np.unique(new)) < min(k, len(x)):
            break  # keep the fixed count
        if np.array_equal(new, labels):
            break
        labels = new
    labels, _ = _relabel(labels)
    return labels
