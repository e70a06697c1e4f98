"""Tokenised sentences → length-bucketed batches → noised tensors.

The batch order is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen, and noise is seeded by the step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from ..errors import TextAEError
from ..noise import NoiseConfig, add_noise, word_dropout


def tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> list[list[int]]:
    """Content ids per text, truncated to leave room for EOS within `max_tokens` positions."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [x[: max_tokens - 1] for x in ids]


def tokenize_dataset(ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> datasets.Dataset:
    return ds.map(
        lambda b: {"input_ids": tokenize(b["text"], tokenizer, max_tokens)},
        batched=True,
        batch_size=2000,
        desc="tokenizing",
    )


def bucket_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch_size: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Index batches of similar length whose padded size stays within `batch_tokens`.

    Shuffled indices are cut into pools of about 50 batches, each pool sorted by length and
    split greedily; the batch order is then shuffled. Padding stays small and order random.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    mean_len = max(1, sum(lengths) // max(1, len(lengths)))
    pool_size = max(1, 50 * batch_tokens // mean_len)
    batches: list[list[int]] = []
    for start in range(0, len(order), pool_size):
        pool = sorted(order[start : start + pool_size], key=lambda i: lengths[i])
        batch: list[int] = []
        for i in pool:
            longest = max(lengths[i], lengths[batch[-1]] if batch else 0) + 1  # +1: EOS / BOS
            if batch and (longest * (len(batch) + 1) > batch_tokens or len(batch) >= max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def batch_stream(
    lengths: Sequence[int],
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
            yield from mine[skip:]
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
