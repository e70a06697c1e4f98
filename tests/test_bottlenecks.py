"""The VAE and VQ bottlenecks alone: their maths and invariants on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from textae.modeling.bottlenecks import build_bottleneck, family_config
from textae.modeling.bottlenecks.vae import VAEConfig, beta_at, free_bits_kl, gaussian_kl
from textae.modeling.bottlenecks.vq import VQBottleneck, VQConfig, kmeans
from textae.modeling.bottlenecks.vae import mutual_information

K, D = 4, 16


def test_vae_reparameterisation_lets_gradients_reach_mean_and_variance():
    torch.manual_seed(0)
    vae = build_bottleneck("vae", K, D, {"latent_dim": 6})
    h = torch.randn(5, K, D)
    out = vae(h, torch.ones(5, K, dtype=torch.bool))
    (out.code.pow(2).sum() + out.losses["kl"]).backward()
    grad = vae.to_posterior.weight.grad  # rows 0..5 produce mu, rows 6..11 log-variance
    assert grad[:6].abs().sum() > 0 and grad[6:].abs().sum() > 0
    assert out.code.shape == (5, K, D) and out.per_sentence == ("kl",)


def test_vae_samples_differ_but_encode_is_the_posterior_mean():
    torch.manual_seed(0)
    vae = build_bottleneck("vae", K, D, {"latent_dim": 6})
    h, mask = torch.randn(2, K, D), torch.ones(2, K, dtype=torch.bool)
    assert not torch.allclose(vae(h, mask).code, vae(h, mask).code)
    assert torch.equal(vae.encode(h, mask), vae.encode(h, mask))
    assert torch.allclose(vae.encode(h, mask), vae.posterior(h)[0])


def test_kl_of_a_known_gaussian_matches_the_closed_form():
    mu, sigma = torch.tensor([1.0, -0.5, 0.0]), torch.tensor([2.0, 0.3, 1.0])
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(gaussian_kl(mu, 2 * sigma.log()), expected, atol=1e-6)
    assert gaussian_kl(torch.zeros(3), torch.zeros(3)).abs().max() == 0  # the prior itself costs nothing


def test_free_bits_floors_the_kl_and_stops_its_gradient_below_the_floor():
    mu = torch.tensor([[0.1, 3.0], [0.1, 3.0]], requires_grad=True)  # dim 0 tiny KL, dim 1 large
    kl = gaussian_kl(mu, torch.zeros_like(mu))
    floored = free_bits_kl(kl, 0.5)
    assert floored.item() == pytest.approx(0.5 + 4.5)
    floored.backward()
    assert mu.grad[:, 0].abs().max() == 0 and mu.grad[:, 1].abs().min() > 0
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(kl.mean(0).sum().item())


def test_beta_schedules():
    linear = VAEConfig(beta_schedule="linear", beta_steps=100, beta=0.5)
    assert [beta_at(s, linear) for s in (0, 50, 100, 500)] == [0.0, 0.25, 0.5, 0.5]
    cyc = VAEConfig(beta_schedule="cyclical", beta_steps=100, cycle_ramp=0.5)
    assert [beta_at(s, cyc) for s in (0, 25, 50, 99, 100, 125)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert beta_at(7, VAEConfig(beta_schedule="constant")) == 1.0
    with pytest.raises(ValueError, match="beta_schedule"):
        family_config("vae", {"beta_schedule": "sometimes"})


def test_mutual_information_estimate_is_zero_without_information_and_log_n_with_all():
    n = 256
    same = mutual_information(torch.zeros(n, 4), torch.zeros(n, 4), torch.Generator().manual_seed(0))
    apart = mutual_information(torch.arange(n, dtype=torch.float)[:, None].repeat(1, 4) * 10, torch.full((n, 4), -4.0),
                               torch.Generator().manual_seed(0))
    assert abs(same) < 0.3  # a Monte-Carlo estimate: zero up to sampling noise
    assert apart == pytest.approx(math.log(n), abs=0.3)  # every z is recognised: I(x; z) reaches log N


def vq(**kw) -> VQBottleneck:
    torch.manual_seed(0)
    return build_bottleneck("vq", K, D, {"codebook_size": 8, "heads": 2, **kw})


def test_vq_round_trip_code_to_vector_to_same_code():
    model = vq().train()
    h = torch.randn(16, K, D)
    model(h, torch.ones(16, K, dtype=torch.bool))  # k-means initialises the codebook from these
    model.eval()
    codes = model.encode(h, torch.ones(16, K, dtype=torch.bool))
    assert codes.shape == (16, K * 2) and codes.dtype == torch.int64
    vectors = model.to_decoder(codes)  # (B, K, D)
    assert torch.equal(model.nearest(vectors.reshape(16, K * 2, D // 2)), codes)
    # the decoder reads exactly what the forward pass quantised
    assert torch.allclose(model(h, torch.ones(16, K, dtype=torch.bool)).code, vectors, atol=1e-5)


def test_vq_rejects_codes_outside_the_codebook():
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq().to_decoder(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 99]]))


def test_kmeans_finds_well_separated_clusters():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=torch.Generator().manual_seed(0))).reshape(-1, 2)
    found, counts = kmeans(x, 3, 10, torch.Generator().manual_seed(1))
    assert sorted(counts.tolist()) == [50, 50, 50]
    assert torch.cdist(centres, found).min(1).values.max() < 0.2


def test_dead_codes_are_restarted_onto_batch_encodings():
    model = vq(dead_code_threshold=1.0, normalize=False).train()
    mask = torch.ones(32, K, dtype=torch.bool)
    model(torch.randn(32, K, D), mask)  # initialise
    model.codebook[:4] = 1e3  # four codes no encoding will ever pick
    model.ema_count[:4] = 0.5
    model(torch.randn(32, K, D), mask)
    assert model.codebook[:4].abs().max() < 100  # moved onto real encodings
    assert (model.ema_count >= 1.0 - 1e-6).all()


def test_padding_slots_never_touch_codebook_statistics():
    h = torch.randn(8, K, D)
    mask = torch.ones(8, K, dtype=torch.bool)
    mask[:, 2:] = False
    padded = h.clone()
    padded[:, 2:] = 1e4  # wild values in padding slots
    a, b = vq(normalize=False).train(), vq(normalize=False).train()
    torch.manual_seed(1)  # k-means and restarts draw the same random numbers in both
    out = a(h, mask)
    torch.manual_seed(1)
    b(padded, mask)
    for name in ("codebook", "ema_count", "ema_sum"):
        assert torch.allclose(getattr(a, name), getattr(b, name)), name
    assert out.losses["commitment"] > 0


def test_vq_codes_must_divide_into_heads():
    with pytest.raises(ValueError, match="multiple of heads"):
        build_bottleneck("vq", K, 10, {"heads": 4})


def test_vq_prior_samples_follow_each_slots_usage():
    model = vq()
    model.slot_counts.zero_()
    model.slot_counts[:, 5] = 1.0  # every slot always used code 5
    assert (model.sample_prior(6, torch.Generator().manual_seed(0)) == 5).all()


def test_vae_starts_from_the_pca_of_its_first_batch():
    """Summary vectors of rank <= Z come back exactly through mu, with mu on the prior's unit scale."""
    torch.manual_seed(0)
    vae = build_bottleneck("vae", K, D, {"latent_dim": 6}).train()
    h = (torch.randn(40, 6) @ torch.randn(6, K * D) + torch.randn(K * D)).view(40, K, D)
    vae(h, torch.ones(40, K, dtype=torch.bool))
    mu, _ = vae.posterior(h)
    assert torch.allclose(vae.from_latent(mu), h.flatten(1), atol=1e-3)
    assert torch.allclose(mu.std(0), torch.ones(6), atol=1e-3)
    before = vae.to_posterior.weight.clone()
    vae(torch.randn(40, K, D), torch.ones(40, K, dtype=torch.bool))
    assert torch.equal(vae.to_posterior.weight, before)  # only the first batch initialises
