"""The rae family's generative parts: standardised noisy codes, the ex-post mixture prior, and the verbs on it."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.modeling.bottlenecks import RAEBottleneck, RAEConfig

from .conftest import SENTENCES


def _bottleneck(**options) -> RAEBottleneck:
    return RAEBottleneck(num_codes=4, dim=8, cfg=RAEConfig(**{"latent_dim": 3, **options}))


def test_prior_samples_have_the_code_shape_and_the_codes_statistics():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-3.0] * 12, [3.0] * 12])
    codes = (centres[torch.arange(4000) % 2] + 0.5 * torch.randn(4000, 12, generator=gen)).view(4000, 4, 3)
    rae = _bottleneck(prior_components=2)
    rae.fit_prior(codes)
    drawn = rae.sample_prior(4000, generator=torch.Generator().manual_seed(1))
    assert drawn.shape == (4000, 4, 3)
    flat = drawn.flatten(1)
    assert torch.allclose(flat.mean(0), codes.flatten(1).mean(0), atol=0.25)
    assert torch.allclose(flat.std(0), codes.flatten(1).std(0), rtol=0.1)
    assert 0.4 < (flat[:, 0] > 0).float().mean() < 0.6  # both modes, in their proportions
    cold = rae.sample_prior(4000, generator=torch.Generator().manual_seed(1), temperature=0.1).flatten(1)
    assert (cold.abs() - 3).abs().max() < 0.5  # near the modes


def test_codes_are_standardised_and_noised_only_in_training():
    torch.manual_seed(0)
    rae = _bottleneck(noise=0.5, momentum=1.0).train()  # momentum 1: the running statistics are the last batch's
    h = 5 + 3 * torch.randn(64, 4, 8)
    h[:, 3] = 100 * torch.randn(64, 8)  # slots past the end, unlike the rest: they must not shape the statistics
    mask = torch.ones(64, 4, dtype=torch.bool)
    mask[:, 3] = False
    rae(h, mask)  # the first batch initialises the projections and the running statistics
    first, second = rae(h, mask).code, rae(h, mask).code
    assert not torch.equal(first, second)  # training reads noisy codes
    rae.eval()
    z = rae.encode(h, mask)  # inference: the running statistics
    real = z[mask]
    assert torch.allclose(real.mean(0), torch.zeros(3), atol=1e-3) and torch.allclose(real.std(0, correction=0), torch.ones(3), atol=1e-2)
    assert torch.equal(rae(h, mask).code, rae(h, mask).code) and torch.equal(z, rae.encode(h, mask))


def test_a_prior_with_more_components_than_codes_still_samples():
    rae = _bottleneck(prior_components=16)
    codes = torch.randn(5, 4, 3)
    assert rae.fit_prior(codes)["prior_components"] == 5
    assert rae.prior_weights[5:].sum() == 0
    drawn = rae.sample_prior(200, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (200, 4, 3) and torch.isfinite(drawn).all()


def test_without_a_fitted_prior_sample_refuses_and_says_why():
    with pytest.raises(NotImplementedError, match="no fitted prior"):
        _bottleneck().sample_prior(2)


def test_trained_rae_saves_its_prior_and_samples_the_same_after_reloading(trained_model, tmp_path):
    final = trained_model("rae", 250, {"latent_dim": 8, "prior_components": 2})
    ae = textae.load(final)
    assert bool(ae.model.bottleneck.prior_fitted)
    assert ae.code_shape == (16, 8)
    codes = torch.from_numpy(ae.encode(SENTENCES)).flatten(1)
    drawn = ae.model.bottleneck.sample_prior(2000, generator=torch.Generator().manual_seed(0)).flatten(1)
    assert (drawn.mean(0) - codes.mean(0)).abs().mean() < 0.25 * codes.std(0).mean()  # fitted on these codes
    ae.save_pretrained(tmp_path / "copy")
    again = textae.load(tmp_path / "copy")
    assert torch.equal(again.model.bottleneck.prior_scale_tril, ae.model.bottleneck.prior_scale_tril)
    from textae.latent import sample

    assert sample(ae, 5, seed=3, do_sample=True) == sample(again, 5, seed=3, do_sample=True)
    assert sample(ae, 5, seed=3) != sample(ae, 5, seed=4)


def test_paraphrase_moves_codes_along_the_prior_and_never_returns_the_input(trained_model):
    final = trained_model("rae", 250, {"latent_dim": 8, "prior_components": 2})
    ae = textae.load(final)
    codes = ae.code_tensor(ae.encode(SENTENCES))
    moved = ae.model.bottleneck.perturb(codes, 0.5, generator=torch.Generator().manual_seed(0))
    assert moved.shape == codes.shape and not torch.equal(moved, codes)
    from textae.latent import paraphrase

    found, _ = paraphrase(ae, SENTENCES, n=2)
    assert found
    for p in found:
        assert " ".join(p.text.lower().split()) != " ".join(SENTENCES[p.index].lower().split())


def test_sample_cli_bad_requests_are_one_line(trained_model):
    final = str(trained_model("rae", 250, {"latent_dim": 8, "prior_components": 2}))
    runner = CliRunner()
    for args, message in [
        (["-n", "0"], "at least 1"),
        (["--prior-temperature", "0"], "above 0"),
        (["--num-beams", "2", "--temperature", "1"], "--temperature 0"),
    ]:
        res = runner.invoke(cli, ["sample", "--model", final, *args])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (args, res.output)
    res = runner.invoke(cli, ["interpolate", "--model", final, " ", "a dog ran in the park ."])
    assert res.exit_code == 2 and "empty" in res.output
    res = runner.invoke(cli, ["sample", "--model", final, "-n", "3", "--num-beams", "2"])
    assert res.exit_code == 0 and len(res.output.strip().splitlines()) == 3, res.output
