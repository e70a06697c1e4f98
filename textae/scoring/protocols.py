"""The anomaly evaluation protocols of GUIDE (SMS spam; TREC one-vs-rest) and their baselines.

Two variants of each. `distinct=True` (ours) deduplicates first (exact text after cleaning), so
no text is both fitted and tested: SMS has 5,159 distinct messages of the repaired 5,574 (see
`textae.data.builtin`), TREC 5,381 distinct questions of 15,452 rows. `distinct=False` is GUIDE's
protocol as written, where the same text can sit in the fit and the test split: TREC's file
repeats most questions 2-5 times, so a nearest-neighbour baseline finds many test questions at
distance 0. That leak is what lifts TF-IDF + kNN from 0.75 to 0.91 on TREC. Labels are used only
to make the splits and to compute AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score

from ..data.builtin import load_builtin
from ..data.clean import clean_text

TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
# sets of text kinds the project trains on nowhere else: name -> (normal source, unusual source)
SNIPPET_SETS = {"movie_vs_amazon": ("movie", "amazon"), "nyt_vs_tweets": ("nyt", "tweets")}


@dataclass
class Split:
    """Normal texts to fit on; test texts with labels (1 = anomaly)."""

    name: str
    fit: list[str]
    test: list[str]
    labels: list[int]


def _clean(texts: list[str], labels: list, distinct: bool) -> tuple[list[str], list]:
    seen: set[str] = set()
    out_t, out_l = [], []
    for text, label in zip(texts, labels):
        text = clean_text(text)
        if text and not (distinct and text in seen):
            seen.add(text)
            out_t.append(text)
            out_l.append(label)
    return out_t, out_l


def sms_split(seed: int = 0, distinct: bool = True) -> Split:
    """Normal = ham: fit on a random half of ham, test on the other half plus all spam."""
    ds = load_builtin("sms")
    texts, spam = _clean(ds["text"], ds["spam"], distinct)
    spam = np.asarray(spam)
    ham = np.random.default_rng(seed).permutation(np.flatnonzero(spam == 0))
    half = len(ham) // 2
    test = np.concatenate([ham[half:], np.flatnonzero(spam == 1)])
    return Split("sms" if distinct else "guide_sms", [texts[i] for i in ham[:half]], [texts[i] for i in test], spam[test].tolist())


def trec_splits(seed: int = 0, distinct: bool = True) -> list[Split]:
    """For each coarse class: fit on 80 % of it; test on its other 20 % plus as many from other classes."""
    ds = load_builtin("trec")
    texts, coarse = _clean(ds["text"], ds["coarse"], distinct)
    coarse = np.asarray(coarse)
    splits = []
    for name in TREC_CLASSES:
        rng = np.random.default_rng(seed)
        own = rng.permutation(np.flatnonzero(coarse == name))
        n_fit = int(round(0.8 * len(own)))
        held = own[n_fit:]
        others = rng.choice(np.flatnonzero(coarse != name), size=len(held), replace=False)
        test = np.concatenate([held, others])
        splits.append(Split(f"trec_{name}" if distinct else f"guide_trec_{name}", [texts[i] for i in own[:n_fit]], [texts[i] for i in test],
                            [0] * len(held) + [1] * len(others)))
    return splits


def snippet_split(name: str, seed: int = 0) -> Split:
    """One source of the sentiment snippets is normal, another unusual, matched in length so that
    length alone is near chance: fit on half of the normal texts; test on the other half plus, for
    each, an unusual text of the same word count, give or take one (a held-out normal text with
    no such partner left is dropped)."""
    normal, unusual = SNIPPET_SETS[name]
    ds = load_builtin("snippets")
    texts, sources = _clean(ds["text"], ds["source"], distinct=True)
    rng = np.random.default_rng(seed)
    own = rng.permutation([i for i, s in enumerate(sources) if s == normal])
    half = len(own) // 2
    by_length: dict[int, list[int]] = {}
    for i in rng.permutation([i for i, s in enumerate(sources) if s == unusual]):
        by_length.setdefault(len(texts[i].split()), []).append(int(i))
    held, matched = [], []
    for i in own[half:]:
        n = len(texts[i].split())
        near = min((k for k, v in by_length.items() if v), key=lambda k: (abs(k - n), k), default=None)
        if near is None or abs(near - n) > 1:
            continue
        held.append(i)
        matched.append(by_length[near].pop())
    return Split(name, [texts[i] for i in own[:half]], [texts[i] for i in held + matched], [0] * len(held) + [1] * len(matched))


def auroc(labels: list[int], scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def tfidf_knn_scores(fit: list[str], test: list[str], k: int = 5) -> np.ndarray:
    """GUIDE's baseline: TF-IDF vectors, mean cosine distance to the k nearest fit texts."""
    vec = TfidfVectorizer().fit(fit)
    a, b = vec.transform(fit), vec.transform(test)  # rows are L2-normalised; empty rows stay zero
    return _mean_nearest_distance((b @ a.T).toarray(), k)


def minilm_knn_scores(fit: list[str], test: list[str], encoder=None, k: int = 5) -> np.ndarray:
    """Embed, then detect (NLP-ADBench): all-MiniLM-L6-v2 sentence embeddings, mean cosine distance
    to the k nearest fit texts."""
    if encoder is None:
        from ..similarity import shared_encoder

        encoder = shared_encoder()
    a, b = encoder.encode(fit), encoder.encode(test)
    return _mean_nearest_distance(b @ a.T, k)


def _mean_nearest_distance(similarity: np.ndarray, k: int) -> np.ndarray:
    """(test, fit) cosine similarities → each test text's mean cosine distance to its k nearest fit texts."""
    top = -np.sort(-similarity, axis=1)[:, :k]
    return (1.0 - top).mean(1)


def length_scores(test: list[str], tokenizer=None) -> np.ndarray:
    """Length alone: subword tokens with `tokenizer`, else whitespace words."""
    if tokenizer is None:
        return np.asarray([len(t.split()) for t in test], dtype=float)
    return np.asarray([len(x) for x in tokenizer(test, add_special_tokens=False)["input_ids"]], dtype=float)


def cross_domain(split: Split, others: list[str], name: str, seed: int = 0) -> Split:
    """The same detector on another domain: `split`'s normal test texts against as many `others`."""
    normal = [t for t, y in zip(split.test, split.labels) if y == 0]
    rng = np.random.default_rng(seed)
    foreign = [others[i] for i in rng.choice(len(others), size=min(len(normal), len(others)), replace=False)]
    return Split(name, split.fit, normal + foreign, [0] * len(normal) + [1] * len(foreign))
