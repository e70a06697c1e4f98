"""Transfer by edits: put one of the new label's markers into the text, where the decoder likes it best.

Infilling (`textae.infill`) writes the new label's words only where the old label's markers stood,
token by token, so a text whose label is marked by words no marker list holds ("What is yohimbine ?"
asked as a location) comes back unchanged or with word pieces. Editing gives the decoder whole
markers to choose from instead (the "template" step of "Delete, Retrieve, Generate", Li et al. 2018):
a candidate inserts one marker of the new label at a word boundary, or puts it in place of the next
one or two words. Only whole markers are edited in: one that lies inside a longer marker of the
same label ("stand" in "stand for", "many" in "How many") is a piece of that label's frame, and an
edit with it leaves the frame half-built (`whole_markers`); deletion still reads them all. The
decoder's next-token log-probabilities at every boundary, told the new label (l) and the text's own
(l_own), shortlist the (boundary, marker) pairs by l + w·(l − l_own) of the
marker's first token; the shortlisted edits and the infilled text are then scored whole, per token,
by the same rule, so the right context counts too. Only candidates whose markers vote for the new
label (more of its markers than of any other label's: the model's own reading of a text's label,
`textae.markers`) can win, unless none does.
`weight` (w) is the knob: 0 picks the most fluent edit, higher picks the one the new label explains
best against the old.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .markers import MarkerTable

LABEL_WEIGHT = 3.0  # the default w, chosen on dev splits of training rows (benchmarks/label_weight_dev.py)
SHORTLIST = 24  # (boundary, marker) pairs per text scored whole
PER_FIRST_TOKEN = 3  # of them, at most this many at one boundary share a first token (so score the same)
SPAN_WORDS = 2  # an edit may put its marker in place of up to this many words
SCORE_TOKENS = 16_384  # padded candidate tokens scored in one decoder pass


@torch.no_grad()
def choose_edits(model, table: MarkerTable, texts: Sequence[Sequence[int]], infilled: Sequence[Sequence[int]],
                 markers: Sequence[Sequence[int]], label: int, code: torch.Tensor, own: torch.Tensor,
                 weight: float = LABEL_WEIGHT) -> list[list[int]]:
    """Each text (content ids, no EOS) rewritten toward `label`: the best of its marker edits and its infilled
    version (ids, no EOS, shorter than the model's positions). `markers`: the label's markers (token ids),
    most salient first; `code` / `own`: the texts' codes as the decoder reads them, told the new label /
    their own (B, K, D)."""
    if not texts:
        return []
    markers = whole_markers(markers)
    eos, limit = model.config.eos_token_id, model.config.max_positions
    first = sorted({m[0] for m in markers})
    column = {t: j for j, t in enumerate(first)}
    if first:
        wanted = _next_log_probs(model, code, texts, first)
        avoided = _next_log_probs(model, own, texts, first)
    candidates, owner = [], []
    for i, text in enumerate(texts):
        found = {tuple(infilled[i])}
        if first:
            starts = [s for s, t in enumerate(text) if t >= table.num_special and table.word_start[t]] + [len(text)]
            pre = wanted[i] + weight * (wanted[i] - avoided[i])  # (T + 1, F)
            for s, k in _shortlist(pre, starts, [column[m[0]] for m in markers]):
                later = [j for j in starts if j > s]
                for ends in [s, *later[:SPAN_WORDS]]:
                    found.add((*text[:s], *markers[k], *text[ends:]))
        kept = [list(c) for c in found if len(c) < limit]
        candidates += kept
        owner += [i] * len(kept)
    rows = np.asarray(owner)
    by_length = np.argsort([len(c) for c in candidates], kind="stable")  # little padding per pass
    told, plain = np.empty(len(candidates)), np.empty(len(candidates))
    for scores, c in ((told, code), (plain, own)):
        scores[by_length] = _log_likelihood(model, c, rows[by_length], [candidates[j] + [eos] for j in by_length])
    length = np.asarray([len(c) + 1 for c in candidates], dtype=np.float64)
    score = (told + weight * (told - plain)) / length
    votes = np.asarray([table.delete(c, -1)[1] for c in candidates])
    reads_as_label = votes[:, label] > np.delete(votes, label, axis=1).max(1)  # more of its markers than any other label's
    out = []
    for i in range(len(texts)):
        mine = np.flatnonzero(rows == i)
        pool = mine[reads_as_label[mine]] if reads_as_label[mine].any() else mine
        out.append(candidates[pool[np.argmax(score[pool])]])
    return out


def whole_markers(markers: Sequence[Sequence[int]]) -> list[Sequence[int]]:
    """The markers (token ids) that no longer one of them contains, in their order."""
    def inside(short: Sequence[int], long: Sequence[int]) -> bool:
        n = len(short)
        return n < len(long) and any(list(long[i : i + n]) == list(short) for i in range(len(long) - n + 1))

    return [m for m in markers if not any(inside(m, other) for other in markers)]


def _shortlist(pre: np.ndarray, starts: list[int], first_column: list[int]) -> list[tuple[int, int]]:
    """The SHORTLIST best (boundary, marker index) pairs by their first token's score `pre` (T + 1, F); markers
    that share a first token tie, so at most PER_FIRST_TOKEN of them a boundary, the most salient first."""
    ranked = sorted((-pre[s, f], s, k) for s in starts for k, f in enumerate(first_column))
    taken: dict[tuple[int, int], int] = {}
    out = []
    for _, s, k in ranked:
        key = (s, first_column[k])
        if taken.get(key, 0) < PER_FIRST_TOKEN:
            taken[key] = taken.get(key, 0) + 1
            out.append((s, k))
            if len(out) == SHORTLIST:
                break
    return out


def _next_log_probs(model, code: torch.Tensor, texts: Sequence[Sequence[int]], tokens: list[int]) -> np.ndarray:
    """(B, T + 1, len(tokens)): log p(token at position s | the text's first s tokens, code), EOS appended."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    labels = torch.full((len(texts), max(len(t) for t in texts) + 1), pad)
    for i, t in enumerate(texts):
        labels[i, : len(t) + 1] = torch.tensor([*t, eos])
    labels = labels.to(code.device)
    memory = model.decoder_memory(code)
    hidden, _ = model.decoder_states(model.shift_right(labels), 0, memory)
    logits = model.output_logits(hidden, memory).float()
    return torch.log_softmax(logits, -1)[..., tokens].cpu().numpy()


def _log_likelihood(model, code: torch.Tensor, owner: np.ndarray, rows: list[list[int]]) -> np.ndarray:
    """log p(row | its owner's code) of each row (ids ending in EOS; shortest first), in passes of at most
    SCORE_TOKENS padded tokens."""
    out, start = [], 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and (end + 1 - start) * len(rows[end]) <= SCORE_TOKENS:
            end += 1
        chunk = rows[start:end]
        labels = torch.full((len(chunk), len(chunk[-1])), -100)
        for i, r in enumerate(chunk):
            labels[i, : len(r)] = torch.tensor(r)
        which = torch.as_tensor(owner[start:end], device=code.device)
        out.append(model.sequence_log_likelihood(code[which], labels.to(code.device)).float().cpu().numpy())
        start = end
    return np.concatenate(out)
