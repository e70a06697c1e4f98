"""A 2-D map of codes: project with PCA, t-SNE or UMAP and colour by label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .autoencoder import AutoEncoder
from .errors import TextAEError

METHODS = ("pca", "tsne", "umap")


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, F) → (N, 2). t-SNE and UMAP start from a 50-dimensional PCA, which keeps them fast."""
    from sklearn.decomposition import PCA

    if method not in METHODS:
        raise TextAEError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    if len(vectors) < 3:
        raise TextAEError(f"need at least 3 texts to draw a map, got {len(vectors)}")
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(vectors)
    reduced = PCA(min(50, *vectors.shape), random_state=seed).fit_transform(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, perplexity=min(30.0, (len(vectors) - 1) / 3), init="pca", random_state=seed).fit_transform(reduced)
    try:
        import umap
    except ImportError:
        raise TextAEError("UMAP needs the umap-learn package: pip install umap-learn (or use --method pca / tsne)") from None
    return umap.UMAP(random_state=seed).fit_transform(reduced)


def plot_codes(
    ae: AutoEncoder,
    texts: Sequence[str],
    labels: Sequence[str],
    output: str | Path,
    method: str = "pca",
    title: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Encode `texts`, project the codes the decoder reads to 2-D, save a scatter plot; returns the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ae.require_vector_codes("plot")
    output = Path(output)
    if output.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise TextAEError(f"cannot draw '{output.name}': name the map .png, .pdf or .svg")
    vectors = ae.decoder_vectors(ae.encode(texts, progress=True))
    points = project(vectors, method, seed)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    names = sorted(set(labels), key=str)
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for k, name in enumerate(names):
        sel = np.array([label == name for label in labels])
        ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.6, color=colours(k % colours.N), label=f"{name} ({sel.sum()})")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_title(title or f"{ae.family} codes of {len(texts)} texts, {method.upper()}")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.tmp{output.suffix}")  # the suffix tells matplotlib the format
    fig.savefig(partial)
    plt.close(fig)
    partial.replace(output)
    return points
