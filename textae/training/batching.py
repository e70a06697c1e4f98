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
    Index arithmetic runs in numpy and the loop is per batch, not per row, so an epoch of ten
    million sentences is cut in seconds and held as one array of indices.
    """
    lengths = np.asarray(lengths, dtype=np.int32)  # 4 bytes a row: ten million rows are 40 MB per array
    n = len(lengths)
    index = np.int32 if n < 2**31 else np.int64
    rng = np.random.default_rng(seed)
    order = (rng.permutation(n) if shuffle else np.arange(n)).astype(index)
    pool_size = max(1, 50 * batch_tokens // max(1, int(lengths.sum(dtype=np.int64)) // max(1, n)))
    # Within each pool of `pool_size` shuffled rows, ascending length (lexsort is stable).
    order = order[np.lexsort((lengths[order], np.arange(n, dtype=index) // pool_size))]
    cost = lengths[order] + 1  # +1: EOS / BOS
    batches: list[np.ndarray] = []
    for pool_start in range(0, n, pool_size):
        start, end = pool_start, min(n, pool_start + pool_size)
        while start < end:
            # Sorted by length, so the batch's longest row is its last: (cost × rows) only grows with more rows.
            window = cost[start : min(end, start + max_batch_size)]
            fits = window * np.arange(1, len(window) + 1) <= batch_tokens
            size = len(window) if fits.all() else max(1, int(fits.argmin()))
            batches.append(order[start : start + size])
            start += size
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


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
