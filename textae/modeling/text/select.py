"""Word selection for the text family: pure tensor functions, testable alone.

The compressor scores every word of a sentence; the middle text is k of those words in their
original order. Tensors are token-level (B, T): a word is scored at its first token, and a kept
word keeps all of its tokens, so the middle text never holds half a word.
"""

from __future__ import annotations

import math

import torch

NEG = -1e9  # a logit no word can have: positions that are not selectable


def word_starts(ids: torch.Tensor, starts_vocab: torch.Tensor, selectable: torch.Tensor) -> torch.Tensor:
    """(B, T) True at the first token of each selectable word; the first selectable token always starts one."""
    starts = starts_vocab[ids] & selectable
    first = selectable & (selectable.long().cumsum(1) == 1)
    return starts | first


def start_of_token(starts: torch.Tensor) -> torch.Tensor:
    """(B, T) index of the word start each token belongs to (0 before the first start)."""
    pos = torch.arange(starts.shape[1], device=starts.device).expand_as(starts)
    return torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values


def budgets(n_words: torch.Tensor, max_words: int, ratio: float) -> torch.Tensor:
    """Words to keep per sentence: at most `max_words` and `ratio` of its words, at least one."""
    by_ratio = torch.ceil(n_words.float() * ratio).long()
    return by_ratio.clamp(max=max_words).clamp(min=1).minimum(n_words.clamp(min=1))


def top_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, T) True at each row's k[b] highest scores (scores at NEG are never chosen)."""
    k_max = int(k.max())
    idx = scores.topk(k_max, dim=1).indices  # (B, k_max), best first
    take = torch.arange(k_max, device=scores.device)[None, :] < k[:, None]
    return torch.zeros_like(scores, dtype=torch.bool).scatter(1, idx, take)


def gumbel_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(x.shape, device=x.device, generator=generator).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


def sample_without_replacement(
    logits: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw k[b] words without replacement (Gumbel-top-k) and the sample's log-probability.

    The log-probability is the Plackett–Luce probability of drawing the words in the order the
    perturbed scores rank them; its gradient is an unbiased REINFORCE estimator for the set.
    Returns the mask (B, T) and log p (B,).
    """
    perturbed = torch.where(logits > NEG / 2, logits + gumbel_like(logits, generator), logits)
    k_max = int(k.max())
    order = perturbed.topk(k_max, dim=1).indices  # (B, k_max) in drawing order
    picked = logits.gather(1, order)
    remaining = logits.clone()
    logp = logits.new_zeros(logits.shape[0])
    for j in range(k_max):
        step = picked[:, j] - torch.logsumexp(remaining, dim=1)
        logp = logp + torch.where(j < k, step, torch.zeros_like(step))
        remaining = remaining.scatter(1, order[:, j : j + 1], NEG)
    take = torch.arange(k_max, device=logits.device)[None, :] < k[:, None]
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter(1, order, take)
    return mask, logp


def relaxed_top_k(
    logits: torch.Tensor, k: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-softmax straight-through for a k-subset (Xie & Ermon 2019's relaxed top-k).

    Returns the hard mask (B, T) and gates (B, T) that equal the mask in the forward pass and
    carry the gradient of the relaxed k-hot vector, which reaches every word's logit.
    """
    valid = logits > NEG / 2
    perturbed = torch.where(valid, logits + gumbel_like(logits, generator), logits)
    hard = top_k_mask(perturbed, k)
    scores = perturbed / temperature
    khot = torch.zeros_like(logits)
    onehot = torch.zeros_like(logits)
    for j in range(int(k.max())):
        scores = scores + torch.log((1 - onehot).clamp(min=1e-20))
        onehot = scores.masked_fill(~valid, -math.inf).softmax(1)
        khot = khot + onehot * (j < k).float()[:, None]
    return hard, hard.float() + khot - khot.detach()


def window_mask(starts: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T) word starts of a random run of k[b] consecutive words: real text of the same length."""
    n_words = starts.sum(1)
    offset = (torch.rand(n_words.shape, device=starts.device, generator=generator) * (n_words - k + 1).float()).long()
    word = starts.long().cumsum(1) - 1  # word number at each start
    return starts & (word >= offset[:, None]) & (word < (offset + k)[:, None])


def compact(ids: torch.Tensor, keep: torch.Tensor, pad_id: int, gates: torch.Tensor | None = None):
    """Kept tokens moved to the front in their order: ids (B, M), mask (B, M) and gates (B, M) if given."""
    t = ids.shape[1]
    pos = torch.arange(t, device=ids.device).expand_as(ids)
    order = torch.where(keep, pos, pos + t).argsort(1)
    m = max(1, int(keep.sum(1).max()))
    order = order[:, :m]
    mask = keep.gather(1, order)
    out = ids.gather(1, order).masked_fill(~mask, pad_id)
    return out, mask, None if gates is None else gates.gather(1, order) * mask


def best_subsequence(unary: torch.Tensor, start: torch.Tensor, pair: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of the k[b] word starts, kept in order, that maximise the sum of their `unary`
    scores (B, T; NEG where no word starts) plus `start[b, j]` (B, T) for the first kept word j and
    `pair[b, i, j]` (B, T, T) for each kept word j that follows kept word i.

    Exact (Viterbi over subsequences, O(k T²)): the summary's fluency at its junctions is weighed
    against the words' own scores. With zero `start` and `pair` it is the top-k of `unary`.
    """
    t = unary.shape[1]
    valid = unary > NEG / 2
    after = torch.ones(t, t, dtype=torch.bool, device=unary.device).triu(1)  # i < j
    trans = pair.masked_fill(~(valid[:, :, None] & valid[:, None, :] & after), NEG)
    score = torch.where(valid, unary + start, NEG)  # best total of a 1-word subsequence ending at j
    scores, back = [score], []
    for _ in range(int(k.max()) - 1):
        best, prev = (score[:, :, None] + trans).max(1)  # over the previous word i
        score = torch.where(valid, best + unary, NEG).clamp(min=NEG)
        scores.append(score)
        back.append(prev)
    rows = torch.arange(len(unary), device=unary.device)
    cur = torch.stack(scores)[k - 1, rows].argmax(1)  # (B,) last kept word
    mask = torch.zeros_like(valid)
    mask[rows, cur] = True
    for m in range(len(back), 0, -1):  # the (m+1)-th kept word's predecessor, for rows that keep more than m words
        going = k > m
        cur = torch.where(going, back[m - 1][rows, cur], cur)
        mask[rows[going], cur[going]] = True
    return mask & valid
