"""Tokenised sentences → length-bucketed batches → noised tensors.

The batch order is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen, and noise is seeded by the step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..errors import TextAEError
from ..noise import NoiseConfig, add_noise, word_dropout


def bucket_batches(
    lengths: Sequence[int] | np.ndarray, batch_tokens: int, max_batch_size: int, seed: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Index batches of similar length whose padded size stays within `batch_tokens`.

    Shuffled indices are cut into pools of about 50 batches, each pool sorted by length and
    split greedily; the batch order is then shuffled. Padding stays small and order random.
    Index arithmetic runs in numpy and the loop runs once per batch of a pool, all pools at a time,
    so an epoch of ten million sentences is cut in seconds and held as one array of indices.
    """
    lengths = np.asarray(lengths, dtype=np.int32)  # 4 bytes a row: ten million rows are 40 MB per array
    n = len(lengths)
    index = np.int32 if n < 2**31 else np.int64
    rng = np.random.default_rng(seed)
    order = (rng.permutation(n) if shuffle else np.arange(n)).astype(index)
    pool_size = max(1, 50 * batch_tokens // max(1, int(lengths.sum(dtype=np.int64)) // max(1, n)))
    # Within each pool of `pool_size` shuffled rows, ascending length: one stable sort on (pool, length).
    key = np.arange(n, dtype=np.int64) // pool_size * (int(lengths.max(initial=0)) + 1) + lengths[order]
    order = order[np.argsort(key, kind="stable")]
    del key
    cost = lengths[order].astype(np.int64) + 1  # +1: EOS / BOS
    batches = [order[start : start + size] for start, size in _greedy_cuts(cost, pool_size, batch_tokens, max_batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _greedy_cuts(cost: np.ndarray, pool_size: int, batch_tokens: int, max_batch_size: int) -> list[tuple[int, int]]:
    """(start, size) of each batch, pool after pool: from a pool's next row, as many rows as fit
    (`max_batch_size` at most, one at least). Rows are sorted by length within a pool, so a batch's
    padded cost is its last row's cost times its size. Every pool takes its next batch in the same
    step, so the loop runs once per batch of the largest pool, not once per batch of the corpus."""
    n = len(cost)
    pool_start = np.arange(0, n, pool_size)
    pool_end = np.minimum(pool_start + pool_size, n)
    position = pool_start.copy()
    rows = np.arange(1, max_batch_size + 1)
    starts, sizes = [], []  # one array each per step
    while True:
        pools = np.flatnonzero(position < pool_end)
        if not len(pools):
            break
        start = position[pools]
        window = start[:, None] + rows - 1  # (pools, max_batch_size) row positions
        inside = window < pool_end[pools, None]
        fits = inside & (cost[np.minimum(window, n - 1)] * rows <= batch_tokens)
        size = np.maximum(1, np.where(fits.all(1), max_batch_size, fits.argmin(1)))
        starts.append(start)
        sizes.append(size)
        position[pools] = start + size
    if not starts:
        return []
    start, size = np.concatenate(starts), np.concatenate(sizes)
    keep = np.argsort(start)  # pools hold consecutive rows: in start order is pool after pool, batch after batch
    return list(zip(start[keep].tolist(), size[keep].tolist()))


def batch_stream(
    lengths: Sequence[int] | np.ndarray,
    batch_tokens: int,
    max_batch_size: int,
    seed: int,
    skip: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[list[int]]:
    """Endless batches over epochs (epoch e shuffled with seed + e), skipping the first `skip` of this rank."""
    epoch = 0
    while True:
        batches = bucket_batches(lengths, batch_tokens, max_batch_size, seed + epoch)
        usable = len(batches) - len(batches) % world_size  # every rank takes the same number per epoch
        if usable == 0:
            raise TextAEError(
                f"the training data makes {len(batches)} batch(es) per epoch, fewer than the {world_size} processes; "
                "use more data, a smaller train.batch_tokens, or fewer processes"
            )
        mine = batches[rank:usable:world_size]
        if skip >= len(mine):
            skip -= len(mine)
        else:
            yield from (batch.tolist() for batch in mine[skip:])
            skip = 0
        epoch += 1


@dataclass
class Collator:
    """Builds model inputs: noised encoder ids + EOS, clean labels + EOS, BOS-shifted decoder ids with word dropout."""

    pad_id: int
    bos_id: int
    eos_id: int
    mask_id: int
    unk_id: int
    vocab_size: int
    noise: NoiseConfig

    @classmethod
    def for_tokenizer(cls, tokenizer: PreTrainedTokenizerBase, noise: NoiseConfig) -> Collator:
        return cls(
            pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
            mask_id=tokenizer.mask_token_id, unk_id=tokenizer.unk_token_id, vocab_size=len(tokenizer), noise=noise,
        )

    def __call__(
        self, examples: Sequence[Sequence[int]], seed: int | None = None, conditions: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """`conditions`: each example's label id (-1 = unknown), for conditional families."""
        rng = random.Random(seed)
        # Encoder inputs end in EOS like at inference, so even an empty sentence has one token.
        sources = [
            [*add_noise(list(x), self.noise, rng, mask_id=self.mask_id, vocab_size=self.vocab_size), self.eos_id]
            for x in examples
        ]
        b = len(examples)
        src_len = max(len(s) for s in sources)
        tgt_len = max(len(x) for x in examples) + 1
        input_ids = torch.full((b, src_len), self.pad_id, dtype=torch.long)
        labels = torch.full((b, tgt_len), -100, dtype=torch.long)
        decoder_input_ids = torch.full((b, tgt_len), self.pad_id, dtype=torch.long)
        for i, (src, tgt) in enumerate(zip(sources, examples)):
            input_ids[i, : len(src)] = torch.tensor(src, dtype=torch.long)
            labels[i, : len(tgt) + 1] = torch.tensor([*tgt, self.eos_id], dtype=torch.long)
            decoder_input_ids[i, : len(tgt) + 1] = torch.tensor([self.bos_id, *tgt], dtype=torch.long)
        if self.noise.word_dropout > 0:
            keep = decoder_input_ids.eq(self.pad_id) | decoder_input_ids.eq(self.bos_id)
            gen = torch.Generator().manual_seed(rng.getrandbits(63))
            decoder_input_ids = word_dropout(decoder_input_ids, self.noise.word_dropout, self.unk_id, keep=keep, generator=gen)
        batch = {
            "input_ids": input_ids,
            "attention_mask": input_ids.ne(self.pad_id).long(),
            "labels": labels,
            "decoder_input_ids": decoder_input_ids,
        }
        if conditions is not None:
            batch["condition"] = torch.tensor(list(conditions), dtype=torch.long)
        return batch
