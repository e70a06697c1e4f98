import math
import random

import pytest
import torch

from textae.noise import NoiseConfig, add_noise, bert_mask, delete_tokens, span_infill, word_dropout
from textae.tokenizer import NUM_SPECIAL

MASK, UNK, VOCAB = 4, 1, 10_000
SEQ_LEN, NUM_SEQS = 100, 200  # 20k tokens per statistic


def sequences() -> list[list[int]]:
    """Distinct increasing ids per sequence, so outputs can be aligned with inputs exactly."""
    return [list(range(NUM_SPECIAL, NUM_SPECIAL + SEQ_LEN)) for _ in range(NUM_SEQS)]


def span_lengths(original: list[int], noised: list[int]) -> list[int]:
    """Length of the run of original tokens each mask replaced (0 for an inserted mask)."""
    lengths = []
    for j, token in enumerate(noised):
        if token == MASK:
            before = noised[j - 1] if j > 0 else original[0] - 1
            after = noised[j + 1] if j + 1 < len(noised) else original[-1] + 1
            lengths.append(after - before - 1)
    return lengths


def test_bert_mask_statistics():
    rng = random.Random(0)
    masked = randomised = total = 0
    for ids in sequences():
        out = bert_mask(ids, 0.15, MASK, VOCAB, rng)
        assert len(out) == len(ids)
        for a, b in zip(ids, out):
            total += 1
            if b == MASK:
                masked += 1
            elif b != a:
                randomised += 1
                assert NUM_SPECIAL <= b < VOCAB
    # 15 % selected: 80 % of them masked (12 %), 10 % random (1.5 %), 10 % kept unchanged.
    assert masked / total == pytest.approx(0.12, abs=0.008)
    assert randomised / total == pytest.approx(0.015, abs=0.004)


def test_bert_mask_never_selects_special_tokens():
    ids = [UNK, MASK, 2, 3] * 500
    assert bert_mask(ids, 0.5, MASK, VOCAB, random.Random(0)) == ids


def test_span_infill_statistics():
    rng = random.Random(0)
    lengths, removed, total = [], 0, 0
    for ids in sequences():
        out = span_infill(ids, 0.3, 3.0, MASK, rng)
        kept = [t for t in out if t != MASK]
        assert kept == sorted(kept) and set(kept) <= set(ids)  # order preserved, nothing invented
        assert all(not (a == MASK and b == MASK) for a, b in zip(out, out[1:]))  # one mask per span
        spans = span_lengths(ids, out)
        assert sum(spans) == len(ids) - len(kept)  # every removed token is inside a masked span
        lengths += spans
        removed += len(ids) - len(kept)
        total += len(ids)
    assert removed / total == pytest.approx(0.3, abs=0.02)
    assert sum(lengths) / len(lengths) == pytest.approx(3.0, abs=0.25)
    # Poisson(3) gives empty spans (a bare inserted mask) with probability e^-3 ≈ 5 %.
    assert lengths.count(0) / len(lengths) == pytest.approx(math.exp(-3), abs=0.025)


def test_span_infill_mean_length_is_unbiased_on_short_inputs():
    rng = random.Random(1)
    ids = list(range(NUM_SPECIAL, NUM_SPECIAL + 20))
    lengths = [n for _ in range(1000) for n in span_lengths(ids, span_infill(ids, 0.15, 3.0, MASK, rng))]
    assert sum(lengths) / len(lengths) == pytest.approx(3.0, abs=0.25)


def test_delete_tokens_statistics_and_order():
    rng = random.Random(0)
    removed = total = 0
    for ids in sequences():
        out = delete_tokens(ids, 0.2, rng)
        assert out == sorted(out) and set(out) <= set(ids)
        removed += len(ids) - len(out)
        total += len(ids)
    assert removed / total == pytest.approx(0.2, abs=0.015)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_heavy_noise_never_empties_a_sequence(length):
    ids = list(range(NUM_SPECIAL, NUM_SPECIAL + length))
    cfg = NoiseConfig(delete_rate=0.95, span_rate=0.95, mask_rate=0.95, mask_prob=1.0, random_prob=0.0)
    rng = random.Random(0)
    for _ in range(300):
        assert delete_tokens(ids, 0.95, rng)
        assert any(t != MASK for t in span_infill(ids, 0.95, 3.0, MASK, rng))  # an original token survives
        assert add_noise(ids, cfg, rng, mask_id=MASK, vocab_size=VOCAB)


def test_zero_rates_return_an_equal_copy_without_using_the_rng():
    ids = list(range(NUM_SPECIAL, 50))
    rng = random.Random(0)
    state = rng.getstate()
    out = add_noise(ids, NoiseConfig(), rng, mask_id=MASK, vocab_size=VOCAB)
    assert out == ids and out is not ids
    assert rng.getstate() == state


def test_add_noise_applies_deletion_then_spans_then_masking():
    ids = list(range(NUM_SPECIAL, 200))
    cfg = NoiseConfig(delete_rate=0.1, span_rate=0.3, mask_rate=0.15)
    expected_rng = random.Random(7)
    expected = delete_tokens(ids, 0.1, expected_rng)
    expected = span_infill(expected, 0.3, 3.0, MASK, expected_rng)
    expected = bert_mask(expected, 0.15, MASK, VOCAB, expected_rng)
    assert add_noise(ids, cfg, random.Random(7), mask_id=MASK, vocab_size=VOCAB) == expected


def test_noise_is_deterministic_given_the_seed():
    ids = list(range(NUM_SPECIAL, 200))
    cfg = NoiseConfig(delete_rate=0.1, span_rate=0.3, mask_rate=0.15)

    def noised(seed: int) -> list[int]:
        return add_noise(ids, cfg, random.Random(seed), mask_id=MASK, vocab_size=VOCAB)

    assert noised(3) == noised(3)
    assert noised(3) != noised(4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mask_rate": 1.0},
        {"span_rate": -0.1},
        {"delete_rate": 1.5},
        {"word_dropout": 1.0},
        {"mask_prob": 0.95, "random_prob": 0.1},
        {"random_prob": -0.1},
        {"span_lambda": 0.0},
    ],
)
def test_noise_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        NoiseConfig(**kwargs)


def test_functions_reject_bad_rates():
    with pytest.raises(ValueError, match="rate"):
        bert_mask([5, 6], 1.0, MASK, VOCAB, random.Random(0))
    with pytest.raises(ValueError, match="mean"):
        span_infill([5, 6], 0.3, 0.0, MASK, random.Random(0))


def test_word_dropout_statistics_and_kept_positions():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(NUM_SPECIAL, VOCAB, (64, 320), generator=generator)  # 20k positions
    keep = torch.rand(input_ids.shape, generator=generator) < 0.3
    keep[:, 0] = True  # e.g. <s>
    original = input_ids.clone()
    out = word_dropout(input_ids, 0.25, UNK, keep=keep, generator=generator)
    assert torch.equal(input_ids, original)  # input untouched: a new tensor is returned
    assert torch.equal(out[keep], input_ids[keep])
    dropped = out != input_ids
    assert torch.all(out[dropped] == UNK)
    assert dropped[~keep].float().mean().item() == pytest.approx(0.25, abs=0.015)


def test_word_dropout_without_keep_and_determinism():
    input_ids = torch.full((64, 320), 7)
    a = word_dropout(input_ids, 0.4, UNK, generator=torch.Generator().manual_seed(1))
    b = word_dropout(input_ids, 0.4, UNK, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a == UNK).float().mean().item() == pytest.approx(0.4, abs=0.015)


def test_word_dropout_zero_rate_is_a_copy_and_bad_rate_fails():
    input_ids = torch.arange(10).reshape(2, 5)
    out = word_dropout(input_ids, 0.0, UNK)
    assert torch.equal(out, input_ids) and out.data_ptr() != input_ids.data_ptr()
    with pytest.raises(ValueError, match="rate"):
        word_dropout(input_ids, 1.0, UNK)
