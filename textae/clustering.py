"""Clusters from a Gaussian-mixture VAE: each text's component, and the words that mark each one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .autoencoder import AutoEncoder
from .errors import TextAEError


def cluster(ae: AutoEncoder, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """q(c|x) (N, C): each row is a text's cluster probabilities (summing to one), in input order."""
    ae.require_vector_codes("cluster")
    if not ae.model.bottleneck.mixture_prior:
        raise TextAEError(f"cluster needs a mixture-prior model; this one is '{ae.family}'. "
                          "Train one with --family gmvae (set the number of clusters with "
                          "--set model.bottleneck='{components: 6}')")
    codes = ae.code_tensor(ae.encode(texts, batch_size=batch_size, progress=progress))
    with torch.no_grad():
        return ae.model.bottleneck.responsibilities(codes).cpu().numpy()


def top_words(texts: Sequence[str], clusters: Sequence[int], n: int = 10) -> dict[int, list[str]]:
    """The n words most typical of each non-empty cluster, by class-based TF-IDF (as BERTopic):
    a word's frequency in the cluster times log(1 + average cluster size / its total frequency).
    English stop words are left out."""
    from sklearn.feature_extraction.text import CountVectorizer

    clusters = np.asarray(clusters)
    ids = sorted(set(clusters.tolist()))
    try:
        counts = CountVectorizer(stop_words="english").fit(texts)
    except ValueError:  # nothing but stop words or empty texts
        return {c: [] for c in ids}
    matrix = counts.transform(texts)
    per_cluster = np.vstack([np.asarray(matrix[clusters == c].sum(0)).ravel() for c in ids]).astype(float)
    tf = per_cluster / np.maximum(per_cluster.sum(1, keepdims=True), 1)
    idf = np.log1p(per_cluster.sum(1).mean() / np.maximum(per_cluster.sum(0), 1))
    vocab = counts.get_feature_names_out()
    scores = tf * idf
    return {c: [vocab[j] for j in np.argsort(-scores[k])[:n] if per_cluster[k, j] > 0] for k, c in enumerate(ids)}
