"""`AnomalyDetector`: PyOD-style outlier scoring of documents with a trained autoencoder.

A document can be unusual in its form (spam among messages: odd spelling, numbers, URLs) or in
its meaning (a question of another kind among questions written alike). Scorers (higher = more
unusual):
- ``nll_char``: reconstruction NLL per character of the text (needs no fit). Like bits per byte
  in language modelling it does not depend on how the tokenizer cuts the text: per token, a text
  full of words the tokenizer splits into many easy pieces (numbers, URLs, rare words) looks
  normal, per character it does not. Form;
- ``nll``: reconstruction NLL per token (needs no fit);
- ``elbo``: the VAE's negative evidence bound per token, (NLL + KL) / tokens (VAE models);
- ``knn``: mean cosine distance from the document's code to its k nearest codes of the fit texts;
- ``mahalanobis``: distance of the code from the fit codes' mean under their (shrunk) covariance;
- ``semantic``: the same distance for what the document says: the mean token state after layer 3
  of a pretrained sentence encoder (all-MiniLM-L6-v2, `textae.similarity`), which knows words a
  model trained on a few thousand normal texts never met, and what they mean;
- ``semantic_knn``: mean cosine distance from the encoder's sentence embedding (its last layer) to
  the 10 nearest of the fit texts' (the "embed, then detect" baseline, with more neighbours);
- ``semantic_pieces``: the mean, over the document's word pieces, of each piece's cosine distance
  to the nearest word piece of the fit texts, both read after the encoder's layer 4 (in context:
  "free" in "feel free" and in "free entry" differ). PatchCore's idea (Roth et al. 2022: a memory
  bank of the normal data's patches) for text: a few unusual words in an ordinary sentence show,
  where a mean embedding washes them out;
- ``ensemble``: ``nll_char``, ``semantic``, ``semantic_knn`` and ``semantic_pieces`` together, by
  Fisher's method: each score becomes its p-value among held-out scores of normal texts, and the
  ensemble scores -2 Σ log p. A text is unusual when it is hard to rebuild *or* means something
  normal texts do not; one member far in its tail is enough, and a member that sees nothing adds
  little noise;
- ``fast_ensemble``: ``nll_char`` and ``mahalanobis``, each standardised on the fit texts, averaged:
  no sentence encoder, so faster, and enough when unusual texts differ in form (spam).
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
from ..similarity import shared_encoder
from .features import Features, document_features

ENSEMBLES = {"ensemble": ("nll_char", "semantic", "semantic_knn", "semantic_pieces"),
             "fast_ensemble": ("nll_char", "mahalanobis")}
FISHER = ("ensemble",)  # ensembles combined by Fisher's method; the others average standardised scores
SCORERS = ("nll_char", "nll", "elbo", "knn", "mahalanobis", "semantic", "semantic_knn", "semantic_pieces",
           *ENSEMBLES)
GAUSSIAN = {"mahalanobis": "codes", "semantic": "semantic"}  # scorer -> the vectors its Gaussian is fitted on
# scorer -> the vectors its neighbours are found among
BANKS = {"knn": "codes", "semantic_knn": "semantic_knn", "semantic_pieces": "pieces"}
SEMANTIC_LAYER = {"semantic": 3, "semantic_knn": 6}  # the sentence-encoder layer each reads (6, the last: the embedding)
SEMANTIC_LAYERS = tuple(SEMANTIC_LAYER.values())
SEMANTIC_NEIGHBORS = 10
PIECE_LAYER = 4  # semantic_pieces reads word pieces here: past the words alone (1-2), before the sentence's mean (6)
MEANING_ADVICE = "check the connection, or score without it: --scorer fast_ensemble (or nll_char, which needs no fitted detector)"
MAX_PIECE_BANK = 16_384  # fit word pieces semantic_pieces compares with (a random sample of more)
QUERY_ROWS = 1024  # vectors compared with a bank at once: a (rows, bank) similarity matrix at a time
TAIL_SHARE, TAIL_MIN = 0.05, 10  # held-out normal scores an ensemble's exponential tail is fitted to (share, at least)
MAX_BANK = 20_000  # fit texts a kNN scorer compares with (a random sample of larger fit sets)
DEFAULT_SCORER = "ensemble"  # the best on average over the sets of benchmarks/results/anomaly.json
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
        self._banks: dict[str, np.ndarray] = {}  # features -> (N, C) unit-norm fit vectors of the kNN-like scorers
        self._members: tuple[str, ...] | None = None  # an ensemble's members as a saved detector was fitted
        self._gaussians: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # features -> mean, precision (mahalanobis, semantic)
        self._scale: np.ndarray | None = None  # (2, members) location and scale of each member (averaged ensembles)
        self._null: np.ndarray | None = None  # (members, N) sorted held-out scores of the fit texts (Fisher ensembles)

    @property
    def members(self) -> tuple[str, ...]:
        """The scorers this one combines (itself alone unless it is an ensemble)."""
        return self._members or ENSEMBLES.get(self.scorer, (self.scorer,))

    # ----- fitting ------------------------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return any(m in (*BANKS, *GAUSSIAN) for m in self.members)

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
        bank_doc = None  # the fit text of each banked word piece, which its held-out score skips
        for m in self.members:
            if m == "semantic_pieces":
                if not len(feats.pieces):
                    raise TextAEError("these features have no word pieces: compute them with this detector's "
                                      "features()")
                keep = _sample(len(feats.pieces), MAX_PIECE_BANK)
                self._banks["pieces"], bank_doc = feats.pieces[keep].astype(np.float32), feats.piece_doc[keep]
            elif m in BANKS:
                self._banks[BANKS[m]] = _bank(_vectors(feats, BANKS[m]))
        parts = np.stack([self._piece_distances(feats, bank_doc) if m == "semantic_pieces" else
                          self._held_out_scores(m, feats) for m in self.members], axis=1)  # (N, members)
        for m in self.members:
            if m in GAUSSIAN:
                self._gaussians[GAUSSIAN[m]] = _gaussian(_vectors(feats, GAUSSIAN[m]))
        if self.scorer in FISHER:
            self._null = np.sort(parts, axis=0).T.copy()
            scores = self._fisher(parts)
        elif self.scorer in ENSEMBLES:
            self._scale = np.stack([parts.mean(0), parts.std(0) + 1e-9])
            scores = ((parts - self._scale[0]) / self._scale[1]).mean(1)
        else:
            scores = parts[:, 0]
        self.decision_scores_ = scores
        self.set_contamination(self.contamination)
        return self

    def _held_out_scores(self, scorer: str, feats: Features) -> np.ndarray:
        """Fit-text scores of one member as new normal texts would get them. A Gaussian member is
        cross-fitted (two halves, each scored by the other's Gaussian): in-sample Mahalanobis
        distances are far smaller than those of new normal texts when the features have more
        dimensions than the fit set has texts, so neither the threshold nor the ensemble's
        standardisation can come from them. A kNN member (its bank already built) skips each text itself;
        so does semantic_pieces, scored in `fit_features`, which knows each banked piece's text."""
        if scorer not in GAUSSIAN:
            return self._member_scores(scorer, feats, leave_one_out=scorer in BANKS)
        member = AnomalyDetector(self.ae, scorer, self.contamination, self.n_neighbors, self.aggregate, self.batch_size)
        n = len(feats.nll)
        half = np.random.default_rng(0).permutation(n) < n // 2
        out = np.zeros(n)
        for side in (half, ~half):
            member._gaussians = {GAUSSIAN[scorer]: _gaussian(_vectors(_subset(feats, ~side), GAUSSIAN[scorer]))}
            out[side] = member._member_scores(scorer, _subset(feats, side))
        return out

    def set_contamination(self, contamination: float) -> None:
        """Move `threshold_` so that this fraction of the fit texts counts as outliers."""
        _check_contamination(contamination)
        if self.decision_scores_ is None:
            raise TextAEError("contamination needs a fitted detector: fit it on normal texts first (textae fit-detector)")
        self.contamination = contamination
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    # ----- scoring ------------------------------------------------------------------------------
    @property
    def reads_meaning(self) -> bool:
        return any(m.startswith("semantic") for m in self.members)

    def features(self, texts: Sequence[str]) -> Features:
        encoder = shared_encoder(self.ae.model.device, fast=True, advice=MEANING_ADVICE) if self.reads_meaning else None
        pieces = PIECE_LAYER if "semantic_pieces" in self.members else None
        return document_features(self.ae, texts, self.batch_size, encoder, SEMANTIC_LAYERS, pieces)

    def scores(self, feats: Features) -> np.ndarray:
        """Scores of documents from their features (higher = more unusual)."""
        if self.needs_fit and not self._banks and not self._gaussians:
            raise TextAEError(f"the {self.scorer} scorer compares with normal texts: fit the detector first (textae fit-detector)")
        parts = np.stack([self._member_scores(m, feats) for m in self.members], axis=1)
        if self.scorer in FISHER:
            return self._fisher(parts)
        if self.scorer in ENSEMBLES:
            return ((parts - self._scale[0]) / self._scale[1]).mean(1)
        return parts[:, 0]

    def _fisher(self, parts: np.ndarray) -> np.ndarray:
        """-2 Σ log p, p = each member's p-value among its held-out normal scores (`_p_values`)."""
        p = [_p_values(null, col) for null, col in zip(self._null, parts.T, strict=True)]
        return -2.0 * np.log(np.stack(p, axis=1)).sum(1)

    def _member_scores(self, scorer: str, feats: Features, leave_one_out: bool = False) -> np.ndarray:
        if scorer == "semantic":
            return self._mahalanobis("semantic", _vectors(feats, "semantic"))
        if scorer == "semantic_knn":
            return _knn(self._banks["semantic_knn"], _vectors(feats, "semantic_knn"), SEMANTIC_NEIGHBORS, leave_one_out)
        if scorer == "semantic_pieces":
            return self._piece_distances(feats)
        if scorer == "knn":
            if self.aggregate == "max":
                return _max_by_doc(feats.window_doc, _knn(self._banks["codes"], feats.window_codes, self.n_neighbors,
                                                          leave_one_out), len(feats.nll))
            return _knn(self._banks["codes"], feats.codes, self.n_neighbors, leave_one_out)
        if scorer == "mahalanobis":
            if self.aggregate == "max":
                return _max_by_doc(feats.window_doc, self._mahalanobis("codes", feats.window_codes), len(feats.nll))
            return self._mahalanobis("codes", feats.codes)
        elbo = scorer == "elbo"
        if self.aggregate == "max":
            size = feats.window_chars if scorer == "nll_char" else feats.window_tokens
            per_window = (feats.window_nll + (feats.window_kl if elbo else 0.0)) / np.maximum(size, 1)
            return _max_by_doc(feats.window_doc, per_window, len(feats.nll))
        size = feats.n_chars if scorer == "nll_char" else feats.n_tokens
        return (feats.nll + (feats.kl if elbo else 0.0)) / np.maximum(size, 1)

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

    def _piece_distances(self, feats: Features, bank_doc: np.ndarray | None = None) -> np.ndarray:
        return _piece_distances(self._banks["pieces"], feats, bank_doc, self.ae.model.device)

    def _mahalanobis(self, name: str, x: np.ndarray) -> np.ndarray:
        mean, precision = self._gaussians[name]
        centred = x - mean
        return np.sqrt(((centred @ precision) * centred).sum(1).clip(min=0))  # a matmul: einsum here is unblocked and slow

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
        settings = {"scorer": self.scorer, "members": list(self.members), "contamination": self.contamination,
                    "n_neighbors": self.n_neighbors, "aggregate": self.aggregate, "threshold": self.threshold_}
        arrays = {"decision_scores": self.decision_scores_.astype(np.float64)}
        for key, value in (("scale", self._scale), ("null", self._null)):
            if value is not None:
                arrays[key] = value
        for name, bank in self._banks.items():
            arrays[_saved_name(name, "bank")] = bank
        for name, (mean, precision) in self._gaussians.items():
            arrays[_saved_name(name, "mean")], arrays[_saved_name(name, "precision")] = mean, precision
        # Each file under a temporary name first, the settings last: a detector is there once detector.json is.
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / "detector.safetensors.tmp"))
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
        scorer = settings["scorer"]
        members = settings.get("members", list(ENSEMBLES["fast_ensemble"]))
        if scorer == "ensemble" and members == list(ENSEMBLES["fast_ensemble"]):
            scorer = "fast_ensemble"  # fitted before the ensemble read meaning: it scores as it was fitted
        if scorer not in SCORERS or not set(members) <= set(SCORERS):
            raise TextAEError(f"the detector in {path} uses scorers this textae does not know ({scorer}: "
                              f"{', '.join(members)}); fit it again with textae fit-detector --overwrite")
        det = cls(ae, scorer, settings["contamination"], settings["n_neighbors"], settings["aggregate"], batch_size)
        if scorer in ENSEMBLES and tuple(members) != det.members:
            det._members = tuple(members)  # fitted when the ensemble had other members: it scores with those
        arrays = load_file(str(path / "detector.safetensors"))
        det.decision_scores_ = arrays["decision_scores"]
        det._scale, det._null = arrays.get("scale"), arrays.get("null")
        for name in ("codes", "semantic", "semantic_knn", "pieces"):
            if _saved_name(name, "bank") in arrays:
                det._banks[name] = arrays[_saved_name(name, "bank")]
            if _saved_name(name, "mean") in arrays:
                det._gaussians[name] = (arrays[_saved_name(name, "mean")], arrays[_saved_name(name, "precision")])
        det.threshold_ = settings["threshold"]
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int64)
        return det


def _p_values(null: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The share of normal scores (`null`, sorted) at least as high as each score. Past the top
    TAIL_SHARE of them it follows an exponential tail fitted to those (peaks over threshold), so
    texts more extreme than every normal one keep their order instead of tying at 1 / (N + 1)."""
    n = len(null)
    above = n - np.searchsorted(null, scores, side="left")
    p = (above + 1.0) / (n + 1.0)
    k = min(n - 1, max(TAIL_MIN, int(TAIL_SHARE * n)))
    if k < 1:
        return p
    start = null[n - k - 1]  # the tail holds the k scores above it
    scale = float((null[n - k :] - start).mean()) + 1e-12
    tail = scores > start
    p[tail] = k / (n + 1.0) * np.exp(-(scores[tail] - start) / scale)
    return p


def _saved_name(features: str, array: str) -> str:
    """The code's arrays keep the names of detectors saved before the semantic scorers."""
    return array if features == "codes" else f"{features}_{array}"


def _vectors(feats: Features, name: str) -> np.ndarray:
    """The vectors a distance scorer reads: the codes, or a sentence-encoder layer's embeddings."""
    if name == "codes":
        return feats.codes
    return feats.semantic[:, SEMANTIC_LAYERS.index(SEMANTIC_LAYER[name])]


def _sample(n: int, most: int) -> np.ndarray:
    """Indices of all n rows, or of a random `most` of them (sorted), the same on every fit."""
    return np.sort(np.random.default_rng(0).choice(n, most, replace=False)) if n > most else np.arange(n)


def _bank(vectors: np.ndarray) -> np.ndarray:
    """Unit-norm fit vectors a kNN scorer compares with; a random MAX_BANK of them for larger fit sets."""
    return _unit(vectors[_sample(len(vectors), MAX_BANK)])


def _piece_distances(bank: np.ndarray, feats: Features, bank_doc: np.ndarray | None = None,
                     device: torch.device | str = "cpu") -> np.ndarray:
    """Per document, the mean over its word pieces of the cosine distance to the nearest bank piece;
    with `bank_doc` (the documents are the fit texts) a piece skips the bank pieces of its own text.
    Compared on `device` (the model's: on a GPU this is its largest matmul)."""
    bank_t = torch.from_numpy(bank).to(device)
    owner = torch.from_numpy(bank_doc).to(device) if bank_doc is not None else None
    near = np.zeros(len(feats.pieces))
    for start in range(0, len(feats.pieces), QUERY_ROWS):
        rows = slice(start, start + QUERY_ROWS)
        sim = torch.from_numpy(feats.pieces[rows].astype(np.float32)).to(device) @ bank_t.T  # (rows, bank)
        if owner is not None:
            sim.masked_fill_(torch.from_numpy(feats.piece_doc[rows]).to(device)[:, None] == owner[None], -1.0)
        near[rows] = sim.max(1).values.cpu().numpy()
    n = len(feats.nll)
    return np.bincount(feats.piece_doc, 1.0 - near, n) / np.maximum(np.bincount(feats.piece_doc, minlength=n), 1)


def _knn(bank: np.ndarray, queries: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """Mean cosine distance to the k nearest bank vectors; with `leave_one_out` (queries are the fit
    texts) a query's own copy in the bank, its nearest at distance 0, is skipped."""
    bank_t = torch.from_numpy(bank)
    out = np.zeros(len(queries))
    for start in range(0, len(queries), QUERY_ROWS):
        sim = torch.from_numpy(_unit(queries[start : start + QUERY_ROWS])) @ bank_t.T  # (b, N)
        top = sim.topk(min(k + leave_one_out, bank_t.shape[0]), dim=1).values
        if leave_one_out:
            own = top[:, 0] > 1 - 1e-5
            top = torch.where(own[:, None], top[:, 1:], top[:, :-1]) if top.shape[1] > 1 else top
        out[start : start + len(top)] = (1.0 - top).mean(1).numpy()
    return out


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
    pieces = keep[feats.piece_doc]
    return Features(feats.nll[keep], feats.n_tokens[keep], feats.n_chars[keep], feats.kl[keep], feats.codes[keep],
                    renumber[feats.window_doc[windows]], feats.window_nll[windows], feats.window_tokens[windows],
                    feats.window_chars[windows], feats.window_kl[windows], feats.window_codes[windows],
                    feats.semantic[keep], feats.pieces[pieces], renumber[feats.piece_doc[pieces]])


def _max_by_doc(doc: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -math.inf)
    np.maximum.at(out, doc, values)
    return out
