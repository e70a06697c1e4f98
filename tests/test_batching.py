"""Batching: length buckets respect the token budget, cover every row once, and resume exactly."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from textae.errors import TextAEError
from textae.noise import NoiseConfig
from textae.training.batching import Collator, batch_stream, bucket_batches
from textae.training.schedules import warmup_cosine

_rng = random.Random(0)
LENGTHS = [_rng.randint(1, 60) for _ in range(1000)]


def test_buckets_cover_each_row_once_within_budget_and_cut_padding():
    batches = bucket_batches(LENGTHS, batch_tokens=512, max_batch_size=64, seed=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(LENGTHS)))
    for b in batches:
        assert len(b) <= 64
        assert len(b) == 1 or (max(LENGTHS[i] for i in b) + 1) * len(b) <= 512
    padded = sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)
    shuffled = list(range(len(LENGTHS)))
    random.Random(0).shuffle(shuffled)
    plain = sum(max(LENGTHS[i] for i in shuffled[j : j + 16]) * 16 for j in range(0, len(shuffled), 16))
    assert padded / sum(LENGTHS) < 1.1 < plain / sum(LENGTHS)


def _one_pool_at_a_time(lengths, batch_tokens, max_batch_size, seed):
    """The batches cut by a plain loop, batch after batch: what bucket_batches must reproduce."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    pool_size = max(1, 50 * batch_tokens // max(1, int(lengths.sum()) // len(lengths)))
    order = order[np.lexsort((lengths[order], np.arange(len(lengths)) // pool_size))]
    cost, batches = lengths[order] + 1, []
    for pool_start in range(0, len(lengths), pool_size):
        start, end = pool_start, min(len(lengths), pool_start + pool_size)
        while start < end:
            size = 1
            while size < max_batch_size and start + size < end and cost[start + size] * (size + 1) <= batch_tokens:
                size += 1
            batches.append(order[start : start + size].tolist())
            start += size
    return [batches[i] for i in rng.permutation(len(batches))]


@pytest.mark.parametrize(("batch_tokens", "max_batch_size", "seed"), [(512, 64, 0), (300, 8, 1), (64, 128, 2), (4096, 16, 3)])
def test_batches_are_those_of_the_plain_greedy_loop(batch_tokens, max_batch_size, seed):
    lengths = LENGTHS + [70, 90, 200]  # rows too long for the budget form batches of one
    got = [b.tolist() for b in bucket_batches(lengths, batch_tokens, max_batch_size, seed)]
    assert got == _one_pool_at_a_time(lengths, batch_tokens, max_batch_size, seed)


def test_stream_resumes_exactly_and_shards_disjointly():
    full = list(itertools.islice(batch_stream(LENGTHS, 512, 64, seed=3), 100))
    resumed = list(itertools.islice(batch_stream(LENGTHS, 512, 64, seed=3, skip=37), 63))
    assert resumed == full[37:]
    rank0 = list(itertools.islice(batch_stream(LENGTHS, 512, 64, seed=3, rank=0, world_size=2), 10))
    rank1 = list(itertools.islice(batch_stream(LENGTHS, 512, 64, seed=3, rank=1, world_size=2), 10))
    assert not {i for b in rank0 for i in b} & {i for b in rank1 for i in b}


def test_collator_builds_shifted_targets_and_seeded_noise():
    coll = Collator(pad_id=0, bos_id=2, eos_id=3, mask_id=4, unk_id=1, vocab_size=100,
                    noise=NoiseConfig(mask_rate=0.3, word_dropout=0.3))
    examples = [list(range(10, 30)), list(range(40, 45))]
    a, b = coll(examples, seed=7), coll(examples, seed=7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["labels"][1].tolist() == [40, 41, 42, 43, 44, 3] + [-100] * 15
    assert a["decoder_input_ids"][0, 0] == 2 and a["decoder_input_ids"][1, 6:].eq(0).all()
    assert a["input_ids"][0].tolist()[-1] == 3  # encoder input ends in EOS
    assert a["input_ids"][0].eq(4).any()  # masked somewhere
    assert a["decoder_input_ids"].eq(1).any()  # word dropout somewhere
    clean = Collator(0, 2, 3, 4, 1, 100, NoiseConfig())(examples)
    assert clean["input_ids"][0, :20].tolist() == examples[0]


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10) == 0.1
    assert warmup_cosine(9, 100, 10) == 1.0
    assert warmup_cosine(100, 100, 10, min_ratio=0.1) == 0.1
    values = [warmup_cosine(s, 100, 10) for s in range(10, 100)]
    assert values == sorted(values, reverse=True)


def test_too_few_batches_for_the_processes_is_a_clear_error():
    with pytest.raises(TextAEError, match="fewer than the 4 processes"):
        next(batch_stream([5, 5, 5], 2048, 64, seed=0, world_size=4))
