"""Word salience from a frozen sentence encoder, and the compressor's loss for learning it.

A word's salience is how far the sentence's embedding (the mean of the encoder's token states,
all-MiniLM-L6-v2) moves when that word's own token states leave the mean: 1 − cosine between the
mean of the other tokens and the mean of all. This is leave-one-out to first order: the other
tokens keep the states they had in context. Why first order: one encoder pass measures every word
of a sentence, where exact leave-one-out (re-encoding the sentence without the word) costs a pass
per word, each a full MiniLM forward. It also ranks words no worse than exact leave-one-out on
news lead → title pairs (benchmarks/results/summarization.json, `teacher_sample`, and the README's
"Text family: unsupervised summarisation").

Why salience at all: rebuilding the sentence rewards the words a reconstructor cannot guess
(names, numbers, rare words from the tail of a long sentence) whatever their role, while the
encoder's drop ranks the words that carry the sentence's meaning. The compressor learns to
predict it, so no encoder runs when it summarises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def first_order_drops(states: torch.Tensor, word_of: torch.Tensor, n_words: int) -> torch.Tensor:
    """(n_words,) 1 − cos(mean of the tokens outside word i, mean of all tokens) for token states
    (T, D) whose token t belongs to word `word_of[t]` (-1: a token of no word, such as [CLS]);
    NaN for a word with no tokens (cut off by the encoder's length limit)."""
    if n_words == 0:
        return states.new_zeros(0)
    members = F.one_hot(word_of.clamp(min=0), n_words).T.to(states.dtype) * word_of.ge(0).to(states.dtype)  # (W, T)
    total, counts = states.sum(0), members.sum(1)
    rest = (total - members @ states) / (len(states) - counts).clamp(min=1)[:, None]  # (W, D)
    drops = 1 - F.cosine_similarity(rest, total[None], dim=-1)
    return drops.masked_fill(counts.eq(0), float("nan"))


@torch.no_grad()
def word_salience(input_ids: torch.Tensor, starts: torch.Tensor, owner: torch.Tensor, selectable: torch.Tensor,
                  decode: Callable[[list[list[int]]], list[str]], encoder) -> torch.Tensor:
    """(B, T) salience at the word starts of the sentences `input_ids` (B, T), NaN elsewhere.

    `owner` maps each token to its word's start, `decode` turns token-id lists into text, and
    `encoder.token_states(words)` gives each text (a list of words) its token states and each
    token's word index (see SentenceEncoder); one encoder pass per sentence."""
    positions = [row.nonzero().squeeze(1) for row in starts]
    words = [decode([ids[(own == p) & sel].tolist() for p in pos])
             for ids, own, sel, pos in zip(input_ids, owner, selectable, positions)]
    salience = torch.full(starts.shape, float("nan"), device=input_ids.device)
    for b, (states, word_of) in enumerate(encoder.token_states(words)):
        salience[b, positions[b]] = first_order_drops(states.float(), word_of, len(words[b])).to(salience.device)
    return salience


def salience_loss(logits: torch.Tensor, salience: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Pairwise ranking loss: within each sentence, every measured word should outscore each
    measured word whose salience is lower by more than `margin` times the sentence's largest
    (near-ties carry no signal). Scale-free, so the keep logits keep their meaning for sampling,
    and the compressor keeps its top k."""
    measured = ~salience.isnan()
    s = salience.nan_to_num(0.0)
    gap_needed = margin * s.amax(1, keepdim=True)[:, :, None]  # (B, 1, 1)
    pairs = measured[:, :, None] & measured[:, None, :] & (s[:, :, None] > s[:, None, :] + gap_needed)  # (B, i, j): i above j
    gap = logits[:, :, None] - logits[:, None, :]
    return F.softplus(-gap)[pairs].mean() if pairs.any() else logits.sum() * 0
