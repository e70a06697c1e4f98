"""Input noise for denoising autoencoders: pure functions of token ids and a seeded rng.

Sequences are content ids without ``<s>``/``</s>`` (the collator adds those), and ids below
``num_special`` are special tokens (by default ``textae.tokenizer.NUM_SPECIAL``). All list-level
functions take a caller-seeded ``random.Random``, so noise is reproducible from one seed, never
modify their input, and never turn a non-empty sequence into an empty one. ``word_dropout``
works on padded batch tensors because it is applied to decoder inputs inside the model step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .tokenizer import NUM_SPECIAL


@dataclass
class NoiseConfig:
    """Noise rates; ``add_noise`` applies deletion, span infilling, then BERT masking."""

    mask_rate: float = 0.0  # BERT masking: fraction of tokens selected
    mask_prob: float = 0.8  # of selected: replaced by <mask>
    random_prob: float = 0.1  # of selected: replaced by a random non-special token; the rest kept
    span_rate: float = 0.0  # BART span infilling: fraction of tokens covered by spans
    span_lambda: float = 3.0  # Poisson mean span length; each span -> one <mask> (length-0 spans insert one)
    delete_rate: float = 0.0  # token deletion
    word_dropout: float = 0.0  # decoder-input word dropout, applied by the model step via `word_dropout`

    def __post_init__(self) -> None:
        for name in ("mask_rate", "span_rate", "delete_rate", "word_dropout"):
            _check_rate(name, getattr(self, name))
        for name in ("mask_prob", "random_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.mask_prob + self.random_prob > 1.0:
            raise ValueError(f"mask_prob + random_prob must be <= 1, got {self.mask_prob} + {self.random_prob}")
        # Spans are sampled by Knuth's method, whose cost grows with the mean.
        if not 0.0 < self.span_lambda <= 100.0:
            raise ValueError(f"span_lambda must be in (0, 100], got {self.span_lambda}")


def _check_rate(name: str, rate: float) -> None:
    # 1 is excluded: it would destroy every input, leaving nothing to reconstruct from.
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")


def bert_mask(
    ids: Sequence[int],
    rate: float,
    mask_id: int,
    vocab_size: int,
    rng: random.Random,
    *,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    num_special: int = NUM_SPECIAL,
) -> list[int]:
    """BERT corruption: select each non-special token with probability `rate`; of those, replace
    `mask_prob` by `mask_id`, `random_prob` by a uniform non-special id, and keep the rest."""
    _check_rate("mask rate", rate)
    if rate == 0.0:
        return list(ids)
    out = list(ids)
    for i, token in enumerate(out):
        if token < num_special or rng.random() >= rate:
            continue
        u = rng.random()
        if u < mask_prob:
            out[i] = mask_id
        elif u < mask_prob + random_prob:
            out[i] = rng.randrange(num_special, vocab_size)
    return out


def _poisson(lam: float, rng: random.Random) -> int:
    """Knuth's method: exact, and cheap for the small means span lengths use."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def span_infill(ids: Sequence[int], rate: float, lam: float, mask_id: int, rng: random.Random) -> list[int]:
    """BART text infilling: replace spans of Poisson(`lam`) length, covering `rate` of the tokens
    on average, by one `mask_id` each; a length-0 span inserts a `mask_id`.

    The span count is ``rate * len(ids) / lam`` rounded at random, so both the covered fraction
    and the mean span length are unbiased even on short inputs (cutting the last span to hit an
    exact budget, as fairseq does, shortens spans: mean 2.0 instead of 3 on 20-token inputs).
    Spans are trimmed from the end so one original token survives, and never touch each other,
    so every run of removed tokens becomes exactly one mask.
    """
    _check_rate("span rate", rate)
    if lam <= 0.0:
        raise ValueError(f"span length mean must be > 0, got {lam}")
    n = len(ids)
    if rate == 0.0 or n < 2:
        return list(ids)
    lengths = [_poisson(lam, rng) for _ in range(int(rate * n / lam + rng.random()))]
    while sum(lengths) > n - 1:
        excess = sum(lengths) - (n - 1)
        if lengths[-1] <= excess:
            lengths.pop()
        else:
            lengths[-1] -= excess
    if not lengths:
        return list(ids)
    # Each span sits in its own gap between surviving tokens; when there are more spans than
    # gaps, drop empty spans first, then merge the last two (the covered count is unchanged).
    gaps = n - sum(lengths) + 1
    while len(lengths) > gaps:
        if 0 in lengths:
            lengths.remove(0)
        else:
            lengths[-2:] = [lengths[-2] + lengths[-1]]
    span_at = dict(zip(sorted(rng.sample(range(gaps), len(lengths))), lengths))
    out: list[int] = []
    pos = 0
    for gap in range(gaps):
        if gap in span_at:
            out.append(mask_id)
            pos += span_at[gap]
        if pos < n:
            out.append(ids[pos])
            pos += 1
    return out


def delete_tokens(ids: Sequence[int], rate: float, rng: random.Random) -> list[int]:
    """Drop each token with probability `rate`, keeping order; one random token survives if all would go."""
    _check_rate("delete rate", rate)
    if rate == 0.0 or not ids:
        return list(ids)
    out = [token for token in ids if rng.random() >= rate]
    return out or [ids[rng.randrange(len(ids))]]


def add_noise(
    ids: Sequence[int],
    cfg: NoiseConfig,
    rng: random.Random,
    *,
    mask_id: int,
    vocab_size: int,
    num_special: int = NUM_SPECIAL,
) -> list[int]:
    """Encoder-input noise from `cfg`: deletion, then span infilling, then BERT masking.

    Masks inserted by span infilling are special ids, so BERT masking never re-selects them.
    ``cfg.word_dropout`` is not applied here: it acts on decoder inputs (see ``word_dropout``).
    """
    out = delete_tokens(ids, cfg.delete_rate, rng)
    out = span_infill(out, cfg.span_rate, cfg.span_lambda, mask_id, rng)
    return bert_mask(
        out,
        cfg.mask_rate,
        mask_id,
        vocab_size,
        rng,
        mask_prob=cfg.mask_prob,
        random_prob=cfg.random_prob,
        num_special=num_special,
    )


def word_dropout(
    input_ids: torch.Tensor,
    rate: float,
    unk_id: int,
    *,
    keep: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace each position of a (B, T) batch with `unk_id` with probability `rate`, except where
    `keep` is True (padding, ``<s>``); weakens the decoder's language model so it must read the code."""
    _check_rate("word dropout rate", rate)
    if rate == 0.0:
        return input_ids.clone()
    drop = torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < rate  # (B, T)
    if keep is not None:
        drop &= ~keep
    return input_ids.masked_fill(drop, unk_id)
