"""The news lead → title summarisation protocol (GUIDE): pairs, ROUGE, and the Lead-N baseline.

Pairs: source = the first sentence of an article's text (the data layer's cleaning and sentence
splitter, which skip datelines and fragments), reference = its title; rows with an empty title
or text are dropped. Titles are only ever read here, never by training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .data.builtin import load_builtin
from .data.clean import clean_text
from .data.sentences import split_sentences
from .modeling.text.salience import first_order_drops
from .modeling.text.select import budgets


def lead_title_pairs() -> list[dict[str, str | int]]:
    """[{article_id, source, title}] for every news article with a title and a first sentence."""
    news = load_builtin("news")
    pairs = []
    for article_id, text, title in zip(news["article_id"], news["text"], news["title"]):
        title = clean_text(title or "")
        sentences = split_sentences(clean_text(text or "", keep_newlines=True))
        if title and sentences:
            pairs.append({"article_id": article_id, "source": sentences[0], "title": title})
    return pairs


def lead(texts: Sequence[str], n_words: int) -> list[str]:
    """The Lead-N baseline: the first N whitespace words."""
    return [" ".join(t.split()[:n_words]) for t in texts]


def rouge(summaries: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 × 100 (rouge-score, Porter stemmer) and the mean summary length in words."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for summary, reference in zip(summaries, references, strict=True):
        for name, score in scorer.score(reference, summary).items():
            totals[name] += score.fmeasure
    n = max(1, len(summaries))
    return {k: 100 * v / n for k, v in totals.items()} | {"avg_words": sum(len(s.split()) for s in summaries) / n}


def salience_summaries(texts: Sequence[str], encoder, max_words: int, ratio: float = 0.5) -> list[str]:
    """The sentence encoder's own choice, as a reference for what the text family's compressor
    learns from it: each text's k whitespace words (the compressor's own `budgets`) with the
    largest salience (first-order leave-one-out, see salience.py), in order. Needs the encoder
    at summary time, so it is no summariser."""
    words = [text.split() for text in texts]
    ks = budgets(torch.tensor([len(w) for w in words]), max_words, ratio).tolist() if texts else []
    out = [" ".join(w) for w in words]  # texts within their budget stay whole
    longer = [i for i, (w, k) in enumerate(zip(words, ks)) if len(w) > k]
    for i, (states, word_of) in zip(longer, encoder.token_states([words[i] for i in longer])):
        drops = first_order_drops(states.float(), word_of, len(words[i])).nan_to_num(-1.0)
        out[i] = " ".join(words[i][j] for j in sorted(drops.topk(ks[i]).indices.tolist()))
    return out


def _bigrams(text: str) -> list[tuple[str, str]]:
    words = text.lower().split()
    return list(zip(words, words[1:]))


def attested_bigrams(summaries: Sequence[str], corpus: Sequence[str]) -> float:
    """Readability proxy, in %: the share of the summaries' adjacent word pairs that occur somewhere
    in `corpus` (the training sentences). Contiguous text scores 100; dropped words leave pairs
    like "committee Tuesday" that real text rarely has."""
    seen = {pair for text in corpus for pair in _bigrams(text)}
    pairs = [pair for summary in summaries for pair in _bigrams(summary)]
    return 100 * sum(pair in seen for pair in pairs) / max(1, len(pairs))


def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float]:
    """fn's summaries and how many it made per second."""
    start = time.perf_counter()
    out = fn()
    return out, len(out) / max(time.perf_counter() - start, 1e-9)
