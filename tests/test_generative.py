"""The rae family's generative parts: standardised noisy codes, the ex-post priors (diffusion and
mixture), and the verbs on them."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.modeling.bottlenecks import RAEBottleneck, RAEConfig

from .conftest import SENTENCES, TINY_DIFFUSION_RAE, TINY_GMM_RAE, TINY_LEVEL_RAE, TINY_RAE


def _bottleneck(**options) -> RAEBottleneck:
    return RAEBottleneck(num_codes=4, dim=8, cfg=RAEConfig(**{"latent_dim": 3, **options}))


def _two_modes(n: int = 4000) -> torch.Tensor:
    """Codes (n, 4, 3) in two tight clusters at ±3, half each."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-3.0] * 12, [3.0] * 12])
    return (centres[torch.arange(n) % 2] + 0.5 * torch.randn(n, 12, generator=gen)).view(n, 4, 3)


def _diffusion_fitted(**options) -> RAEBottleneck:
    torch.manual_seed(0)
    rae = _bottleneck(prior="diffusion", prior_width=32, prior_layers=1, prior_max_steps=300, **options)
    assert rae.fit_prior(_two_modes())["prior_steps"] == 300
    return rae


def test_diffusion_samples_have_the_code_shape_and_land_on_the_codes_modes():
    rae, codes = _diffusion_fitted(), _two_modes()
    drawn = rae.sample_prior(2000, generator=torch.Generator().manual_seed(1))
    assert drawn.shape == (2000, 4, 3)
    flat = drawn.flatten(1)
    side = flat.mean(1, keepdim=True).sign()
    assert 0.4 < (side > 0).float().mean() < 0.6  # both modes, in their proportions
    assert ((flat - 3 * side).abs() < 2.0).float().mean() > 0.95  # on a mode, not between them
    assert torch.allclose(flat.std(0).mean(), codes.flatten(1).std(0).mean(), rtol=0.1)


def test_diffusion_pulls_moved_codes_back_and_leaves_interpolation_ends_alone():
    rae = _diffusion_fitted(interpolation_scale=2.0)
    a, b = torch.full((4, 3), -3.0), torch.full((4, 3), 3.0)
    path = rae.interpolate(a, b, torch.linspace(0, 1, 5))
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert path[2].mean().abs() > 2.0, path[2]  # the straight midpoint, 0, lies between the modes: it lands on one
    assert torch.equal(rae.perturb(a[None], 0.0), a[None])  # no noise, no move
    moved = rae.perturb(a.expand(200, 4, 3), 0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(moved[0], moved[1])
    assert ((moved - a).abs().mean((1, 2)) < 1.0).all()  # a small move stays in a's mode


def test_interpolation_keeps_the_codes_norm_along_the_path_and_its_ends_exact():
    rae = _bottleneck()
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    b = b - (b.flatten() @ a.flatten()) / a.norm() ** 2 * a  # orthogonal to a
    b = b / b.norm() * a.norm()
    path = rae.interpolate(a, b, torch.linspace(0, 1, 5))
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.allclose(path.flatten(1).norm(dim=1), a.norm().expand(5), rtol=1e-5)  # a straight line: 0.71 at w=0.5
    assert torch.allclose(rae.interpolate(a, a, torch.tensor([0.5]))[0], a)  # same point: no circle, no NaN


def test_mixture_samples_have_the_code_shape_and_the_codes_statistics():
    codes = _two_modes()
    rae = _bottleneck(prior="gmm", prior_components=2)
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


def test_noise_levels_vary_by_sentence_in_training_and_the_decoder_reads_the_level_it_is_told():
    h, mask = torch.randn(512, 16, 64), torch.ones(512, 16, dtype=torch.bool)

    def noise_spread(rae: RAEBottleneck) -> float:
        """Spread across sentences of how far training moved each one's code (the level's own term left out)."""
        torch.manual_seed(0)
        rae.train()
        rae(h, mask)  # initialises
        moved = rae(h, mask).code - (rae.level(torch.zeros(1, 1, 1)) if rae.cfg.noise_max else 0)
        rae.eval()
        shift = (moved - rae.to_decoder(rae.encode(h, mask))).detach().norm(dim=(1, 2))
        return float(shift.std() / shift.mean())

    def rae(**options) -> RAEBottleneck:
        return RAEBottleneck(num_codes=16, dim=64, cfg=RAEConfig(latent_dim=16, momentum=1.0, prior="gmm", **options))

    fixed, levels = rae(noise_max=0, noise=0.5), rae(noise_max=1.5)
    assert noise_spread(levels) > 5 * noise_spread(fixed)  # U(0,1)² · noise_max per sentence, not one level for all
    torch.nn.init.normal_(levels.level.weight)  # trained weights: the level moves the code
    code = levels.encode(h, mask)
    plain = levels.to_decoder(code)
    with levels.told(1.0):
        assert not torch.allclose(levels.to_decoder(code), plain)
        with pytest.raises(RuntimeError), levels.told(0.5):
            raise RuntimeError
        assert levels.decode_level == 1.0  # an inner block gives the level back, even when it fails
    assert torch.equal(levels.to_decoder(code), plain) and levels.sample_level_at(1.0) == 1.0
    untold = fixed.to_decoder(code)
    with fixed.told(1.0):  # a decoder trained without levels reads the same code at every level
        assert torch.equal(fixed.to_decoder(code), untold) and fixed.sample_level_at(1.0) == 0.0
    with pytest.raises(ValueError, match="noise_max"):
        RAEConfig(noise_max=-1)


def test_verbs_tell_the_decoder_how_far_their_codes_are_from_sentences(trained_model, monkeypatch):
    from textae.latent import interpolate, paraphrase, sample

    ae = textae.load(trained_model("rae", 250, TINY_LEVEL_RAE))
    told, decode = [], ae.decode

    def spy(codes, *args, **kwargs):
        told.append(round(ae.model.bottleneck.decode_level, 6))
        return decode(codes, *args, **kwargs)

    monkeypatch.setattr(ae, "decode", spy)
    sample(ae, 3)
    assert told == [0.4]  # kde prior samples: the kernel's bandwidth
    told.clear()
    sample(ae, 3, prior_temperature=0.5)
    assert told == [0.2]  # ... scaled with the prior's temperature, as the noise is
    told.clear()
    path = interpolate(ae, SENTENCES[0], SENTENCES[1], steps=3)
    assert told == [0.0, 0.5, 0.0]  # the ends are the sentences' own codes, the middle is told midpoint_level
    assert [path[0], path[-1]] == decode(ae.code_tensor(ae.encode(SENTENCES[:2])))
    told.clear()
    paraphrase(ae, SENTENCES[:2], n=50, candidates=2, scale=0.25, rounds=2)
    assert told == [0.0, 0.25, 0.5]  # the reconstructions, then each round's perturbation
    assert ae.model.bottleneck.decode_level == 0.0


def test_kde_samples_are_training_codes_plus_the_kernel_noise_the_decoder_is_told():
    codes = _two_modes()  # each mode's spread is 0.5 per dimension
    rae = _bottleneck(prior="kde", prior_sentences=5000, prior_bandwidth=0.4, noise_max=1.5)
    assert rae.fit_prior(codes) == {"prior_sentences": 4000, "prior_bandwidth": 0.4}
    assert rae.sample_level_at(1.0) == pytest.approx(0.4)  # the decoder is told the kernel's noise
    assert torch.equal(rae.prior_bank[:4000].float(), codes.half().float()) and not rae.prior_bank[4000:].any()
    drawn = rae.sample_prior(4000, generator=torch.Generator().manual_seed(1))
    assert drawn.shape == (4000, 4, 3)
    flat = drawn.flatten(1)
    assert 0.4 < (flat[:, 0] > 0).float().mean() < 0.6  # both modes, in their proportions
    assert ((flat.abs() - 3).std(0) / (0.5**2 + 0.4**2) ** 0.5 - 1).abs().max() < 0.1  # a mode's spread plus the kernel's
    nearest = torch.cdist(flat, codes.flatten(1)).min(1).values
    assert nearest.mean() < 0.4 * 12**0.5  # each sample lies about a kernel's width from a training code
    cold = rae.sample_prior(500, generator=torch.Generator().manual_seed(1), temperature=0.01).flatten(1)
    assert torch.cdist(cold, codes.flatten(1)).min(1).values.max() < 0.05
    # the density in the health figures is the mixture of one Gaussian per kept code
    dist = torch.distributions
    reference = dist.MixtureSameFamily(dist.Categorical(torch.ones(4000, dtype=torch.float64)),
                                       dist.Independent(dist.Normal(codes.flatten(1).half().double(), 0.4), 1))
    probe = torch.cat([codes[:3].flatten(1), torch.zeros(1, 12)])
    assert torch.allclose(rae._prior_log_density(probe), reference.log_prob(probe.double()))
    assert _bottleneck(prior="kde", noise_max=0.0).sample_level_at(1.0) == 0.0  # a decoder trained without levels is told none


def test_a_prior_with_more_components_than_codes_still_samples():
    rae = _bottleneck(prior="gmm", prior_components=16)
    codes = torch.randn(5, 4, 3)
    assert rae.fit_prior(codes)["prior_components"] == 5
    assert rae.prior_weights[5:].sum() == 0
    drawn = rae.sample_prior(200, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (200, 4, 3) and torch.isfinite(drawn).all()


def test_without_a_fitted_prior_sample_refuses_and_says_why():
    with pytest.raises(NotImplementedError, match="no fitted prior"):
        _bottleneck().sample_prior(2)


@pytest.mark.parametrize("options", [TINY_RAE, TINY_GMM_RAE, TINY_DIFFUSION_RAE], ids=["kde", "gmm", "diffusion"])
def test_trained_rae_saves_its_prior_and_samples_the_same_after_reloading(trained_model, tmp_path, options):
    final = trained_model("rae", 250, options)
    ae = textae.load(final)
    assert bool(ae.model.bottleneck.prior_fitted)
    assert ae.code_shape == (16, 8)
    codes = torch.from_numpy(ae.encode(SENTENCES)).flatten(1)
    drawn = ae.model.bottleneck.sample_prior(2000, generator=torch.Generator().manual_seed(0)).flatten(1)
    assert (drawn.mean(0) - codes.mean(0)).abs().mean() < 0.5 * codes.std(0).mean()  # fitted on these codes
    ae.save_pretrained(tmp_path / "copy")
    again = textae.load(tmp_path / "copy")
    for name, tensor in ae.model.bottleneck.state_dict().items():  # the mixture's buffers, the denoiser's weights or the bank
        assert torch.equal(again.model.bottleneck.state_dict()[name], tensor), name
    from textae.latent import sample

    assert sample(ae, 5, seed=3, do_sample=True) == sample(again, 5, seed=3, do_sample=True)
    assert sample(ae, 5, seed=3) != sample(ae, 5, seed=4)


def test_a_model_saved_when_the_mixture_was_the_default_loads_as_a_mixture(trained_model, tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained_model("rae", 250, TINY_GMM_RAE), old)
    config = json.loads((old / "config.json").read_text())
    del config["bottleneck"]["prior"]  # `--family rae` saved only the options it was given
    (old / "config.json").write_text(json.dumps(config))
    ae = textae.load(old)
    assert ae.model.bottleneck.cfg.prior == "gmm" and bool(ae.model.bottleneck.prior_fitted)
    from textae.latent import sample

    assert len(sample(ae, 2)) == 2


def test_paraphrase_moves_codes_along_the_prior_and_never_returns_the_input(trained_model):
    final = trained_model("rae", 250, TINY_RAE)
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
    final = str(trained_model("rae", 250, TINY_RAE))
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
    sampled = runner.invoke(cli, ["sample", "--model", final, "-n", "3"])
    greedy = runner.invoke(cli, ["sample", "--model", final, "-n", "3", "--temperature", "0"])
    assert greedy.exit_code == 0 and greedy.output != sampled.output  # the same codes: tokens are sampled by default


class _FixedMeaning:
    """A stand-in sentence encoder: similarity is looked up per paraphrase."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    def similarity(self, a, b):
        import numpy as np

        return np.array([self.table[t] for t in b])


def test_paraphrases_that_change_the_wording_rank_first_then_by_meaning(trained_model):
    from textae.latent import _overlap, _rank

    ae = textae.load(trained_model("rae", 250, TINY_RAE))
    source = "the cat sat on the mat in the sun ."
    near = "the cat sat on the mat in the rain ."  # keeps most of the wording
    far_close = "a kitten was sitting on the rug ."
    far_off = "stocks fell sharply on monday ."
    found = [{t: _overlap(t, source) for t in (near, far_off, far_close)}]
    codes = ae.code_tensor(ae.encode([source]))
    encoder = _FixedMeaning({near: 0.95, far_close: 0.8, far_off: 0.1})
    ranked = _rank(ae, [source], codes, found, 3, 8, encoder, max_overlap=0.5)
    assert [p.text for p in ranked] == [far_close, far_off, near]
    assert ranked[2].overlap > 0.5 > ranked[0].overlap and ranked[0].similarity == 0.8
    everything = _rank(ae, [source], codes, found, 2, 8, encoder, max_overlap=1.0)  # no cap: meaning alone
    assert [p.text for p in everything] == [near, far_close]


def test_paraphrase_moves_further_while_every_candidate_keeps_the_wording(trained_model, monkeypatch):
    from textae.latent import paraphrase

    ae = textae.load(trained_model("rae", 250, TINY_RAE))
    source = "the cat sat on the mat in the sun ."
    near = ["the cat sat on the mat in the rain .", "the cat sat on the mat in the snow ."]
    reworded = "a kitten was sitting on the rug ."
    levels = []

    def decode(codes, **_):
        levels.append(ae.model.bottleneck.decode_level)
        if len(levels) == 1:
            return [source] * len(codes)  # the plain reconstruction
        return [near[i % 2] for i in range(len(codes))] if len(levels) == 2 else [reworded] * len(codes)

    monkeypatch.setattr(ae, "decode", decode)
    found, _ = paraphrase(ae, [source], n=1, candidates=2, scale=0.2, rounds=3)
    assert levels == [0.0, 0.2, 0.4]  # round 1 only kept the wording, so round 2 moved twice as far; then done
    assert [p.text for p in found] == [reworded]


def test_prior_options_are_checked_and_zero_sentences_means_no_prior():
    assert _bottleneck(prior_sentences=0).prior_sentences == 0  # the trainer then fits none: rate–distortion runs
    for bad, message in [({"prior": "flow"}, "prior must be one of"), ({"prior_sentences": 1}, "prior_sentences"),
                         ({"prior_width": 30}, "multiple of 4"), ({"prior_minutes": 0}, "prior_minutes"),
                         ({"prior_bandwidth": 0}, "prior_bandwidth"), ({"prior_bandwidth": 2.0}, "at most noise_max")]:
        with pytest.raises(ValueError, match=message):
            RAEConfig(**bad)
