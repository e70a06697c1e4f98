"""Label markers (Li et al. 2018, "Delete, Retrieve, Generate"): the word n-grams that mark a label.

An n-gram marks label v when it occurs in at least `ratio` times as many of v's rows as of the other
labels' rows, those counts scaled to as many rows as v has and both add-`smoothing` (the salience of
Li et al., made fair to labels of unequal size: a rare label's words need the same evidence).
Deleting every marker of every label from a sentence leaves what no label marks, its content; a
decoder told a label writes that label's markers back, which is style transfer when the label is
another one. Markers are token n-grams that start and end
on word boundaries, so a deletion never leaves half a word.

Some labels are a whole message's content rather than a few words (spam): one marker edited in
does not make a text read as one. For those, training also keeps *exemplars*, sentences of the
label's own rows that its markers mark, and each label's *typical lead* (how many more of its
markers than of any other label's its rows hold, the median), which `textae.exemplars` uses.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from .tokenizer import NUM_SPECIAL


def find_markers(
    rows: Iterable[Sequence[int]],
    labels: Sequence[int],
    num_labels: int,
    word_start: Sequence[bool],
    max_n: int = 3,
    ratio: float = 5.0,
    min_count: int = 3,
    smoothing: float = 1.0,
    num_special: int = NUM_SPECIAL,
) -> list[list[int]]:
    """[[label id, token ids...], ...]: the markers of every label, most salient first.

    `labels`: each row's label id (negative: unknown, skipped); `word_start[t]`: token t begins a
    word (special tokens count as boundaries). Each n-gram is counted once per row."""
    counts = [Counter() for _ in range(num_labels)]
    rows_per_label = [0] * num_labels
    for ids, label in zip(rows, labels):
        if label < 0:
            continue
        rows_per_label[label] += 1
        counts[label].update({gram for gram in _word_grams(ids, word_start, max_n, num_special)})
    found = []
    for v in range(num_labels):
        others = sum(rows_per_label) - rows_per_label[v]
        if not rows_per_label[v] or not others:
            continue
        for gram, count in counts[v].items():
            if count < min_count:
                continue
            elsewhere = sum(counts[w][gram] for w in range(num_labels) if w != v)
            salience = (count + smoothing) / (elsewhere * rows_per_label[v] / others + smoothing)
            if salience >= ratio:
                found.append((salience, v, gram))
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    return [[v, *gram] for _, v, gram in found]


def _word_grams(ids: Sequence[int], word_start: Sequence[bool], max_n: int, num_special: int):
    """Every token n-gram (n ≤ max_n) of ids that starts a word and ends where the next word (or the row) starts."""
    n_ids = len(ids)
    for i in range(n_ids):
        if ids[i] < num_special or not word_start[ids[i]]:
            continue
        for j in range(i + 1, min(n_ids, i + max_n * 4) + 1):  # words may be several tokens: n counts words
            if ids[j - 1] < num_special:
                break
            if j == n_ids or ids[j] < num_special or word_start[ids[j]]:
                gram = tuple(ids[i:j])
                if sum(word_start[t] for t in gram) > max_n:
                    break
                yield gram


class MarkerTable:
    """Deletes markers from token rows and votes for the label they mark."""

    def __init__(self, markers: Sequence[Sequence[int]], num_labels: int, word_start: Sequence[bool], num_special: int = NUM_SPECIAL):
        self.label_of: dict[tuple[int, ...], int] = {}
        for v, *gram in markers:
            self.label_of.setdefault(tuple(gram), v)
        self.longest = max((len(g) for g in self.label_of), default=0)
        self.num_labels, self.word_start, self.num_special = num_labels, word_start, num_special

    def __len__(self) -> int:
        return len(self.label_of)

    def lead(self, ids: Sequence[int], label: int) -> int:
        """How many more of `label`'s markers `ids` holds than of any other label's (negative: fewer)."""
        votes = self.delete(ids, -1)[1]
        return votes[label] - max(v for w, v in enumerate(votes) if w != label)

    def delete(self, ids: Sequence[int], mask_id: int) -> tuple[list[int], list[int]]:
        """(ids with each run of markers replaced by one mask_id, how many markers of each label it held).
        Longest match first, at word starts only."""
        out: list[int] = []
        votes = [0] * self.num_labels
        i, n = 0, len(ids)
        while i < n:
            hit = 0
            if ids[i] >= self.num_special and self.word_start[ids[i]]:
                for length in range(min(self.longest, n - i), 0, -1):
                    label = self.label_of.get(tuple(ids[i : i + length]))
                    end = i + length
                    if label is not None and (end == n or ids[end] < self.num_special or self.word_start[ids[end]]):
                        votes[label] += 1
                        hit = length
                        break
            if hit:
                if not out or out[-1] != mask_id:
                    out.append(mask_id)
                i += hit
            else:
                out.append(ids[i])
                i += 1
        return out, votes


def find_exemplars(
    rows: Sequence[Sequence[int]], labels: Sequence[int], table: MarkerTable, sentence_end: Sequence[bool],
    per_label: int, min_lead: float, cut_length: int | None = None, seed: int = 0,
) -> tuple[list[list[int]], list[float]]:
    """([[label id, token ids...], ...], each label's typical lead): the median lead of each label's rows,
    and, for labels whose typical lead is at least `min_lead`, up to `per_label` distinct sentences of
    their rows that lead for them (a random sample, seeded).
    `sentence_end[t]`: token t ends a sentence when a word or the row starts after it. A row of
    `cut_length` tokens or more was cut to fit the model, so its last sentence is not whole: not kept."""
    sentences: list[set[tuple[int, ...]]] = [set() for _ in range(table.num_labels)]
    leads: list[list[int]] = [[] for _ in range(table.num_labels)]
    for ids, label in zip(rows, labels):
        if label < 0:
            continue
        leads[label].append(table.lead(ids, label))
        whole = _sentences(ids, sentence_end, table.word_start)
        if cut_length is not None and len(ids) >= cut_length:
            whole = whole[:-1]
        for sentence in whole:
            if table.lead(sentence, label) > 0:
                sentences[label].add(tuple(sentence))
    typical = [float(statistics.median(v)) if v else 0.0 for v in leads]
    rng, out = random.Random(seed), []
    for label, found in enumerate(sentences):
        ordered = sorted(found)
        chosen = rng.sample(ordered, min(per_label, len(ordered)))  # every label draws, so the seed gives the same samples
        out += [[label, *s] for s in chosen] if typical[label] >= min_lead else []
    return out, typical


def _sentences(ids: Sequence[int], sentence_end: Sequence[bool], word_start: Sequence[bool]) -> list[list[int]]:
    """A row cut after each sentence-ending token that a word start (or the row's end) follows."""
    out, start = [], 0
    for i, t in enumerate(ids):
        if sentence_end[t] and (i + 1 == len(ids) or word_start[ids[i + 1]]):
            out.append(list(ids[start : i + 1]))
            start = i + 1
    if start < len(ids):
        out.append(list(ids[start:]))
    return out
