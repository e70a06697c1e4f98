"""`AnomalyDetector`: PyOD-style outlier scoring of documents with a trained autoencoder.

A document is unusual when a model trained on normal text cannot rebuild it, or when its code
lies far from the codes of normal text. Scorers (higher = more unusual):
- ``nll_char``: reconstruction NLL per character of the text (needs no fit). Like bits per byte
  in language modelling it does not depend on how the tokenizer cuts the text: per token, a text
  full of words the tokenizer splits into many easy pieces (numbers, URLs, rare words) looks
  normal, per character it does not;
- ``nll``: reconstruction NLL per token (needs no fit);
- ``elbo``: the VAE's negative evidence bound per token, (NLL + KL) / tokens (VAE models);
- ``knn``: mean cosine distance from the document's code to its k nearest codes of the fit texts;
- ``mahalanobis``: distance of the code from the fit codes' mean under their (shrunk) covariance;
- ``ensemble``: the mean of ``nll_char`` and ``mahalanobis``, each standardised by its scores on the
  fit texts: a text is unusual when it is hard to rebuild *or* its code is far from normal codes.
`fit` keeps what the scorer needs and sets `threshold_` so that a `contamination` fraction of the
fit texts lies above it. A fitted detector is saved into the model directory (`detector/`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from ..autoencoder import AutoEncoder
from ..loading import load
from ..errors import TextAEError
from .features import Features, document_features

SCORERS = ("nll_char", "nll", "elbo", "knn", "mahalanobis", "ensemble")
ENSEMBLE = ("nll_char", "mahalanobis")
DEFAULT_SCORER = "ensemble"  # the best on average over SMS and TREC (benchmarks/results/anomaly.json)
NO_FIT_SCORER = "nll_char"  # the best of those that need no fitted detector
AGGREGATES = ("mean", "max")
DETECTOR_DIR = "detector"


class AnomalyDetector:
    """Outlier scores from a trained model: `fit(texts)`, `decision_function(texts)`, `predict(texts)`."""

    def __init__(self, model: AutoEncoder | str | Path, scorer: str = DEFAULT_SCORER, contamination: float = 0.05,
                 n_neighbors: int = 5, aggregate: str = "mean", batch_size: int = 128):
        self.ae = load(model) if isinstance(model, str | Path) else model
        if scorer not in SCORERS:
            raise TextAEError(f"unknown scorer '{scorer}'; choose one of {', '.join(SCORERS)}")
        self.ae.require_vector_codes("anomaly scoring")
        if scorer == "elbo" and not self.ae.model.bottleneck.standard_normal_prior:
            raise TextAEError(f"the elbo scorer needs a VAE; this is a {self.ae.family} model (use nll_char, nll, knn, mahalanobis or ensemble)")
        if aggregate not in AGGREGATES:
            raise TextAEError(f"unknown aggregate '{aggregate}'; choose mean or max")
        _check_contamination(contamination)
        if n_neighbors < 1:
            raise TextAEError(f"n_neighbors must be at least 1, got {n_neighbors}")
        self.scorer, self.contamination, self.n_neighbors = scorer, contamination, n_neighbors
        self.aggregate, self.batch_size = aggregate, batch_size
        self.threshold_: float | None = None
        self.decision_scores_: np.ndarray | None = None  # scores of the fit texts
        self.labels_: np.ndarray | None = None  # 1 = outlier among the fit texts
        self._bank: np.ndarray | None = None  # (N, C) unit-norm fit codes (knn)
        self._mean: np.ndarray | None = None  # (C,) and (C, C) (mahalanobis)
        self._precision: np.ndarray | None = None
        self._scale: np.ndarray | None = None  # (2, len(ENSEMBLE)) location and scale of each part (ensemble)

    # ----- fitting ------------------------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return self.scorer in ("knn", "mahalanobis", "ensemble")

    @property
    def fitted(self) -> bool:
        return self.threshold_ is not None

    def fit(self, texts: Sequence[str]) -> AnomalyDetector:
        """Learn what normal looks like from `texts` (normal documents) and set `threshold_`."""
        return self.fit_features(self.features([t for t in texts if t and t.strip()]))

    def fit_features(self, feats: Features) -> AnomalyDetector:
        """`fit` from features already computed (`features(texts)`), so several scorers can share one pass."""
        if len(feats.nll) < self.n_neighbors + 1:
            raise TextAEError(f"fit needs at least {self.n_neighbors + 1} non-empty texts, got {len(feats.nll)}")
        if self.scorer == "knn":
            self._bank = _unit(feats.codes)
            scores = self._knn(feats, leave_one_out=True)
        elif self.scorer in ("mahalanobis", "ensemble"):
            scores = self._cross_fit(feats)
            self._mean, self._precision = _gaussian(feats.codes)
        else:
            scores = self.scores(feats)
        self.decision_scores_ = scores
        self.set_contamination(self.contamination)
        return self

    def _cross_fit(self, feats: Features) -> np.ndarray:
        """Fit-text scores from a Gaussian that did not see them (two halves, each scored by the other's).

        In-sample Mahalanobis distances are far smaller than those of new normal texts when codes
        have more dimensions than the fit set has texts, so neither the threshold nor the ensemble's
        standardisation can come from them."""
        n = len(feats.nll)
        half = np.random.default_rng(0).permutation(n) < n // 2
        member = self._member("mahalanobis")
        maha = np.zeros(n)
        for side in (half, ~half):
            member._mean, member._precision = _gaussian(feats.codes[~side])
            maha[side] = member.scores(_subset(feats, side))
        if self.scorer == "mahalanobis":
            return maha
        parts = np.stack([self._member(ENSEMBLE[0]).scores(feats), maha], axis=1)
        self._scale = np.stack([parts.mean(0), parts.std(0) + 1e-9])
        return ((parts - self._scale[0]) / self._scale[1]).mean(1)

    def set_contamination(self, contamination: float) -> None:
        """Move `threshold_` so that this fraction of the fit texts counts as outliers."""
        _check_contamination(contamination)
        if self.decision_scores_ is None:
            raise TextAEError("contamination needs a fitted detector: fit it on normal texts first (textae fit-detector)")
        self.contamination = contamination
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    # ----- scoring ------------------------------------------------------------------------------
    def features(self, texts: Sequence[str]) -> Features:
        return document_features(self.ae, texts, self.batch_size)

    def scores(self, feats: Features) -> np.ndarray:
        """Scores of documents from their features (higher = more unusual)."""
        if self.needs_fit and (self._bank is None and self._mean is None):
            raise TextAEError(f"the {self.scorer} scorer compares with normal texts: fit the detector first (textae fit-detector)")
        if self.scorer == "knn":
            return self._knn(feats)
        if self.scorer == "ensemble":
            return ((self._parts(feats) - self._scale[0]) / self._scale[1]).mean(1)
        if self.scorer == "mahalanobis":
            if self.aggregate == "max":
                return _max_by_doc(feats.window_doc, self._mahalanobis(feats.window_codes), len(feats.nll))
            return self._mahalanobis(feats.codes)
        elbo = self.scorer == "elbo"
        if self.aggregate == "max":
            size = feats.window_chars if self.scorer == "nll_char" else feats.window_tokens
            per_window = (feats.window_nll + (feats.window_kl if elbo else 0.0)) / np.maximum(size, 1)
            return _max_by_doc(feats.window_doc, per_window, len(feats.nll))
        size = feats.n_chars if self.scorer == "nll_char" else feats.n_tokens
        return (feats.nll + (feats.kl if elbo else 0.0)) / np.maximum(size, 1)

    def _parts(self, feats: Features) -> np.ndarray:
        """(N, len(ENSEMBLE)) scores of the ensemble's members."""
        return np.stack([self._member(name).scores(feats) for name in ENSEMBLE], axis=1)

    def _member(self, scorer: str) -> AnomalyDetector:
        member = AnomalyDetector(self.ae, scorer, self.contamination, self.n_neighbors, self.aggregate, self.batch_size)
        member._mean, member._precision = self._mean, self._precision
        return member

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Outlier score of each text (higher = more unusual); empty texts score NaN."""
        texts = list(texts)
        out = np.full(len(texts), np.nan)
        keep = [i for i, t in enumerate(texts) if t and t.strip()]
        if keep:
            out[keep] = self.scores(self.features([texts[i] for i in keep]))
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """1 for outliers (score above `threshold_`), else 0."""
        if self.threshold_ is None:
            raise TextAEError("predict needs a threshold: fit the detector on normal texts first")
        return (self.decision_function(texts) > self.threshold_).astype(np.int64)

    def _knn(self, feats: Features, leave_one_out: bool = False) -> np.ndarray:
        """Mean cosine distance to the k nearest fit codes; fit texts skip themselves."""
        bank = torch.from_numpy(self._bank)
        queries = feats.window_codes if self.aggregate == "max" else feats.codes
        k = self.n_neighbors + leave_one_out
        out = np.zeros(len(queries))
        for start in range(0, len(queries), 1024):
            sim = torch.from_numpy(_unit(queries[start : start + 1024])) @ bank.T  # (b, N)
            top = sim.topk(min(k, bank.shape[0]), dim=1).values
            if leave_one_out:
                top = top[:, 1:]
            out[start : start + len(top)] = (1.0 - top).mean(1).numpy()
        return _max_by_doc(feats.window_doc, out, len(feats.nll)) if self.aggregate == "max" else out

    def _mahalanobis(self, codes: np.ndarray) -> np.ndarray:
        centred = codes - self._mean
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self._precision, centred).clip(min=0))

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write the fitted detector to `<model dir>/detector` (or `path`): JSON settings + safetensors arrays."""
        if not self.fitted:
            raise TextAEError("nothing to save: fit the detector first")
        if path is None:
            if self.ae.path is None:
                raise TextAEError("this model was not loaded from a directory; pass a path to save the detector")
            path = Path(self.ae.path) / DETECTOR_DIR
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        settings = {"scorer": self.scorer, "contamination": self.contamination, "n_neighbors": self.n_neighbors,
                    "aggregate": self.aggregate, "threshold": self.threshold_}
        arrays = {"decision_scores": self.decision_scores_.astype(np.float64)}
        for name in ("_bank", "_mean", "_precision", "_scale"):
            if getattr(self, name) is not None:
                arrays[name.lstrip("_")] = np.ascontiguousarray(getattr(self, name))
        # Each file under a temporary name first, the settings last: a detector is there once detector.json is.
        save_file(arrays, str(path / "detector.safetensors.tmp"))
        (path / "detector.safetensors.tmp").replace(path / "detector.safetensors")
        (path / "detector.json.tmp").write_text(json.dumps(settings, indent=2) + "\n")
        (path / "detector.json.tmp").replace(path / "detector.json")
        return path

    @classmethod
    def load(cls, model: AutoEncoder | str | Path, path: str | Path | None = None, batch_size: int = 128) -> AnomalyDetector:
        """A detector saved by `save` (by default from the model directory's `detector/`)."""
        ae = load(model) if isinstance(model, str | Path) else model
        path = Path(path) if path is not None else Path(ae.path or ".") / DETECTOR_DIR
        if not (path / "detector.json").is_file():
            raise TextAEError(f"no fitted detector in {path}; run textae fit-detector --model DIR --input NORMAL_TEXTS")
        settings = json.loads((path / "detector.json").read_text())
        det = cls(ae, settings["scorer"], settings["contamination"], settings["n_neighbors"], settings["aggregate"], batch_size)
        arrays = load_file(str(path / "detector.safetensors"))
        det.decision_scores_ = arrays["decision_scores"]
        det._bank, det._mean, det._precision, det._scale = (arrays.get(k) for k in ("bank", "mean", "precision", "scale"))
        det.threshold_ = settings["threshold"]
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int64)
        return det


def _check_contamination(value: float) -> None:
    if not 0 < value < 0.5:
        raise TextAEError(f"contamination is the expected fraction of outliers, in (0, 0.5); got {value}")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def _gaussian(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of the codes; the covariance is shrunk toward its diagonal (Ledoit-Wolf)
    because codes have more dimensions than a small fit set has texts."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(codes.astype(np.float64))
    return lw.location_.astype(np.float32), lw.precision_.astype(np.float32)


def _subset(feats: Features, keep: np.ndarray) -> Features:
    """The features of the documents where `keep` (N,) is True."""
    docs = np.flatnonzero(keep)
    windows = np.isin(feats.window_doc, docs)
    renumber = np.full(len(keep), -1)
    renumber[docs] = np.arange(len(docs))
    return Features(feats.nll[keep], feats.n_tokens[keep], feats.n_chars[keep], feats.kl[keep], feats.codes[keep],
                    renumber[feats.window_doc[windows]], feats.window_nll[windows], feats.window_tokens[windows],
                    feats.window_chars[windows], feats.window_kl[windows], feats.window_codes[windows])


def _max_by_doc(doc: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -math.inf)
    np.maximum.at(out, doc, values)
    return out
