"""The fast paths give the plain path's outputs: cached decoding, bf16 autocast, length-sorted encoding,
the loss fused with the output projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from textae.autoencoder import AutoEncoder
from textae.modeling import TextAEConfig, TextAEModel
from textae.modeling.generation import linear_argmax
from textae.modeling.linear import Linear
from textae.modeling.loss import linear_cross_entropy
from textae.tokenizer import train_tokenizer

from .conftest import SENTENCES


def tiny(**kw) -> TextAEModel:
    cfg = dict(vocab_size=60, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2, ffn_dim=64,
               num_codes=4, code_dim=16, max_positions=32, dropout=0.0)
    torch.manual_seed(0)
    return TextAEModel(TextAEConfig(**{**cfg, **kw})).eval()


def uncached_greedy(model: TextAEModel, code: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding the slow way: re-run the whole decoder over the growing prefix at every step."""
    memory = model.decoder_memory(code)
    prefix = torch.full((code.shape[0], 1), model.config.bos_token_id)
    for _ in range(steps):
        hidden, _ = model.decoder_states(prefix, 0, memory)
        prefix = torch.cat([prefix, model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)], dim=1)
    return prefix[:, 1:]


@pytest.mark.parametrize("batch_size", [1, 5])
@torch.no_grad()
def test_cached_greedy_equals_uncached_token_for_token(batch_size):
    model = tiny()
    model.config.eos_token_id = model.config.vocab_size  # never emitted: every row runs the full length
    x = torch.randint(5, 60, (batch_size, 11), generator=torch.Generator().manual_seed(1))
    code = model.encode(x)
    cached = model.generate(code, max_new_tokens=20)
    assert cached.shape == (batch_size, 20)
    assert torch.equal(cached, uncached_greedy(model, code, 20))
    # The logits too, so a cache that is ignored cannot pass just because argmax hides it.
    memory = model.decoder_memory(code)
    inputs = torch.cat([torch.full((batch_size, 1), model.config.bos_token_id), cached[:, :-1]], dim=1)
    full = model.lm_head(model.decoder_states(inputs, 0, memory)[0])  # (B, 20, V), no cache
    caches = None
    for step in range(20):
        hidden, caches = model.decoder_states(inputs[:, step : step + 1], step, memory, caches)
        torch.testing.assert_close(model.lm_head(hidden[:, 0]), full[:, step], atol=1e-4, rtol=1e-4)


def test_generated_ids_can_feed_training():
    """generate runs under inference mode; what it returns must still be an ordinary tensor that a
    training step can embed and save for backward (an inference tensor raises there)."""
    model = tiny()
    x = torch.randint(5, 60, (3, 9), generator=torch.Generator().manual_seed(2))
    out = model.generate(model.encode(x).detach(), max_new_tokens=9)
    assert not out.is_inference()
    labels = out.masked_fill(out.eq(model.config.pad_token_id), -100)
    model.train()(input_ids=out, labels=labels).loss.backward()
    assert model.embed_tokens.weight.grad is not None


@pytest.mark.parametrize("vocab_size", [7, 64, 100, 4000])
def test_linear_argmax_is_the_argmax_of_the_logits(vocab_size):
    g = torch.Generator().manual_seed(vocab_size)
    hidden, weight = torch.randn(40, 16, generator=g), torch.randn(vocab_size, 16, generator=g)  # 32+ rows: the block path
    expected = F.linear(hidden, weight).argmax(-1)
    assert torch.equal(linear_argmax(hidden, weight), expected)
    assert torch.equal(linear_argmax(hidden[:5], weight), expected[:5])  # few rows: the plain path
    # Ties go to the lowest id, as torch.argmax: a repeated best row, in another block and in the tail.
    for copy_to in {vocab_size - 1, vocab_size // 2, 33 % vocab_size}:
        tied = weight.clone()
        tied[copy_to] = weight[expected[0]]
        assert linear_argmax(hidden, tied)[0] == min(copy_to, expected[0])
    # The winner in the tail (ids past the last full block of 32) and inside a block.
    for winner in {vocab_size - 1, vocab_size // 3}:
        boosted = weight.clone()
        boosted[winner] = hidden[0] * 100
        assert linear_argmax(hidden, boosted)[0] == winner


def test_bf16_autocast_loss_matches_fp32_on_a_trained_model():
    """Trained first, so the loss (about 0.1) depends on what the model computes, not just on ln V."""
    model = tiny().train()
    g = torch.Generator().manual_seed(2)
    x = torch.randint(5, 60, (8, 12), generator=g)
    labels = torch.cat([x, torch.full((8, 1), 3)], dim=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        model(x, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        fp32 = model(x, labels=labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x, labels=labels)
    assert fp32.loss < 0.5, "the model should have fitted the batch"
    assert bf16.logits.dtype == torch.bfloat16  # autocast really ran the matmuls in bf16
    torch.testing.assert_close(bf16.loss, fp32.loss, rtol=2e-2, atol=0.0)  # measured: 0.0875 vs 0.0876
    agree = (bf16.logits.argmax(-1) == fp32.logits.argmax(-1)).float().mean()
    assert agree > 0.98


@pytest.mark.parametrize("chunk_rows", [7, 64, 4096])  # uneven chunks, one chunk per call, a single chunk
def test_fused_loss_matches_linear_then_cross_entropy(chunk_rows):
    g = torch.Generator().manual_seed(3)
    hidden, weight = torch.randn(150, 16, generator=g), torch.randn(40, 16, generator=g)
    labels = torch.randint(0, 40, (150,), generator=g)
    labels[::6] = -100
    grads = []
    for fn in (lambda h, w: F.cross_entropy(F.linear(h, w), labels), lambda h, w: linear_cross_entropy(h, w, labels, chunk_rows)):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = fn(h, w)
        (3 * loss).backward()  # a non-unit upstream gradient must scale the stored ones
        grads.append((loss.detach(), h.grad, w.grad))
    for plain, fused in zip(*grads):
        torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-5)


def test_fused_loss_is_zero_when_every_label_is_ignored():
    hidden = torch.randn(5, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, torch.randn(10, 8), torch.full((5,), -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(hidden.grad, torch.zeros(5, 8))


def test_training_forward_fuses_the_loss_and_keeps_the_gradients():
    """In training the model skips the logits; its loss and every parameter's gradient stay the same."""
    model = tiny().train()
    g = torch.Generator().manual_seed(4)
    x = torch.randint(5, 60, (6, 9), generator=g)
    labels = torch.cat([x, torch.full((6, 1), 3)], dim=1)
    labels[0, 5:] = -100
    results = []
    for return_logits in (None, True):
        model.zero_grad()
        out = model(x, labels=labels, return_logits=return_logits)
        out.loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fused, fused_grads), (plain, plain_grads) = results
    assert fused.logits is None and plain.logits.shape == (6, 10, 60)
    torch.testing.assert_close(fused.loss, plain.loss)
    assert fused_grads.keys() == plain_grads.keys() and "embed_tokens.weight" in fused_grads  # tied to lm_head
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], atol=1e-6, rtol=1e-4, msg=name)
    with torch.no_grad():  # no gradients wanted: the plain path, which does not compute them
        assert model(x, labels=labels).logits is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 matmuls, as nn.Linear's would be
        bf16 = model(x, labels=labels).loss
    torch.testing.assert_close(bf16, plain.loss, rtol=2e-2, atol=0.0)


def test_cpu_bf16_linear_gives_nn_linears_outputs_and_gradients():
    """The bf16 backward in the fast GEMM layout computes what nn.Linear's autocast backward does."""
    torch.manual_seed(5)
    ours, plain = Linear(48, 24), torch.nn.Linear(48, 24)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(3, 10, 48)
    results = []
    for layer in (ours, plain):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(xi)
        (y.float() ** 2).sum().backward()
        results.append((y, xi.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*results):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), plain(x), rtol=0, atol=0)  # fp32: nn.Linear itself


@pytest.fixture(scope="module")
def autoencoder() -> AutoEncoder:
    texts = SENTENCES * 4 + [f"{s} and then {t}" for s, t in zip(SENTENCES, SENTENCES[1:])]
    tok = train_tokenizer(texts, vocab_size=300)
    cfg = TextAEConfig(vocab_size=len(tok), d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64,
                       num_codes=4, code_dim=16, max_positions=64, dropout=0.0,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       unk_token_id=tok.unk_token_id)
    torch.manual_seed(0)
    return AutoEncoder(TextAEModel(cfg), tok, device="cpu")


def test_length_sorted_batches_return_codes_in_input_order(autoencoder):
    texts = [
        "the team won its third game and then rain .",
        "rain .",
        "she reads a book every night .",
        "a dog ran in the park and then birds sing in the early morning .",
        "our train leaves at noon .",
        "he paid 3.5 dollars for 2 apples .",
        "the cat sat .",
    ]
    lengths = [len(x) for x in autoencoder.token_ids(texts)]
    # The sorted batches really reorder and pad, and nothing is truncated.
    assert lengths != sorted(lengths) and len(set(lengths)) > 3 and max(lengths) < 64
    batched = autoencoder.encode(texts, batch_size=3)
    alone = np.concatenate([autoencoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)  # different texts, different codes
