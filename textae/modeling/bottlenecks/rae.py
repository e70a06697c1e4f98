"""Regularised autoencoder with an ex-post density: the family that samples, interpolates and paraphrases.

Each of the K code slots keeps its place (slot k summarises chunk k of the sentence, which is what
lets the decoder learn fast) but is compressed to `latent_dim` floats, so a sentence is K ×
latent_dim floats (16 × 16 = 256 by default). Three things make that code generative:
- standardised codes with training noise: every code dimension is batch-normalised over the real
  slots (zero mean, unit variance across sentences, running statistics at inference, as BN-VAE,
  Zhu et al. 2020), and the decoder reads z + σε: a signal-to-noise ratio the encoder cannot escape
  by scaling its code up, so codes near a sentence's code decode to similar sentences (a Gaussian
  encoder: a VAE without the KL, Ghosh et al. 2020);
- a decoder told how noisy its code is: σ is drawn per sentence (noise_max · u², most of them small)
  and added to what the decoder reads, so one decoder learns to rebuild a sentence from its exact
  code (told 0) and to write fluent text from a code far from any sentence's, leaning on its
  language model (told up to noise_max, as paraphrases and interpolation midpoints are). Without the level
  the decoder must treat every code the same, and a code one standard deviation off a sentence's
  decodes to word salad;
- an ex-post prior, fitted on the codes of training sentences once the autoencoder is trained
  (Ghosh et al. 2020) and saved with the weights. By default a kernel density: a sample is a kept
  training code plus Gaussian noise of `prior_bandwidth` code SDs, and the decoder is told that
  level, so it reads exactly what it was trained on (a sentence's code plus told noise). A mixture
  or a denoiser smooths the codes into regions no sentence's code reaches, where the decoder writes
  word salad. `prior: gmm` is a Gaussian mixture with full covariances, told `sample_level`;
  `prior: diffusion` a small diffusion model over the slots (diffusion_prior.py), which also pulls
  paraphrases and interpolation midpoints toward sentences' codes.
Initialised from a trained plain autoencoder, the per-slot projections start as the PCA of its
codes on the first batch, so the decoder first reads the PCA reconstruction of what it knows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from .base import Bottleneck, BottleneckOutput
from .diffusion_prior import DiffusionPrior
from .vae import gaussian_log_density, mutual_information, pca_initialise

if TYPE_CHECKING:
    from ..model import TextAEModel

PRIORS = ("kde", "gmm", "diffusion")
ACTIVE_VARIANCE = 0.01  # a unit is active when its variance across sentences exceeds this (Burda et al. 2016)


@dataclass
class RAEConfig:
    latent_dim: int = 16  # floats per code slot: a sentence is num_codes × latent_dim floats
    noise_max: float = 1.5  # each sentence's training noise is noise_max · u², u ~ U(0, 1), in code SDs; the decoder is told it
    sample_level: float = 1.0  # ... the level told for gmm / diffusion samples (kde: its bandwidth; reconstructions: 0)
    midpoint_level: float = 0.5  # ... and for an interpolation's midpoint (sin-shaped along the path, 0 at the ends)
    noise: float = 0.3  # with noise_max 0: one training noise for every sentence, and the decoder is told nothing
    momentum: float = 0.01  # of the running mean and variance used at inference
    prior: str = "kde"  # the ex-post prior: "kde" (training codes plus kernel noise), "gmm" (a Gaussian mixture) or "diffusion"
    prior_sentences: int = 10000  # training sentences the prior is fitted on after training (0: none)
    prior_minutes: float = 8.0  # the diffusion prior's training budget, after the autoencoder's
    prior_max_steps: int = 20000  # ... and its step limit, whichever comes first
    prior_width: int = 128  # the denoiser Transformer's width
    prior_layers: int = 3  # ... and depth
    prior_components: int = 16  # Gaussians (full covariance) of the "gmm" prior
    prior_bandwidth: float = 0.3  # the "kde" prior's kernel SD, in code SDs: smaller keeps more of a training sentence
    interpolation_scale: float = 0.5  # midpoints are pulled toward the data by noise of this many code SDs (diffusion)
    normalize: bool = True  # parameter-free LayerNorm on the decoder's code vectors, as the plain family

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if min(self.latent_dim, self.prior_components, self.prior_width, self.prior_layers, self.prior_max_steps) < 1:
            raise ValueError("latent_dim, prior_components, prior_width, prior_layers and prior_max_steps must be at least 1")
        if self.prior_width % 4:
            raise ValueError(f"prior_width must be a multiple of 4 (the denoiser's heads), got {self.prior_width}")
        if self.prior_minutes <= 0 or self.prior_bandwidth <= 0 or self.interpolation_scale < 0:
            raise ValueError(f"prior_minutes and prior_bandwidth must be above 0 and interpolation_scale at least 0, got "
                             f"{self.prior_minutes}, {self.prior_bandwidth} and {self.interpolation_scale}")
        if self.prior_sentences == 1 or self.prior_sentences < 0:
            raise ValueError(f"prior_sentences must be 0 (no prior: the model cannot sample) or at least 2, "
                             f"got {self.prior_sentences}")
        if self.prior == "kde" and 0 < self.noise_max < self.prior_bandwidth:
            raise ValueError(f"prior_bandwidth ({self.prior_bandwidth}) must be at most noise_max ({self.noise_max}): "
                             "the decoder is told the kernel's noise, and was trained up to noise_max")
        if min(self.noise, self.noise_max, self.sample_level, self.midpoint_level) < 0:
            raise ValueError("noise, noise_max, sample_level and midpoint_level must be at least 0")


class RAEBottleneck(Bottleneck, family="rae", options=RAEConfig):
    placed_by = {"initialised": "down.weight"}
    paraphrase_scale = 0.15  # standard deviations of the standardised code: the first round's small move keeps the meaning

    def __init__(self, num_codes: int, dim: int, cfg: RAEConfig):
        super().__init__(num_codes, dim)
        self.cfg = cfg
        self.norm_in = nn.LayerNorm(dim, elementwise_affine=False)  # the plain family's code, which the PCA reads
        self.down = nn.Linear(dim, cfg.latent_dim)
        self.up = nn.Linear(cfg.latent_dim, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if cfg.normalize else nn.Identity()
        self.decode_level = 0.0  # the noise level the decoder is told (noise_max > 0), set by `told`
        if cfg.noise_max > 0:
            self.level = nn.Linear(1, dim)  # level → the vector added to every slot the decoder reads
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("running_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("running_var", torch.ones(cfg.latent_dim))
        self.register_buffer("prior_fitted", torch.tensor(False))
        if cfg.prior == "diffusion":
            self.diffusion = DiffusionPrior(num_codes, cfg.latent_dim, cfg.prior_width, cfg.prior_layers)
        elif cfg.prior == "kde":
            self.register_buffer("prior_bank", torch.zeros(cfg.prior_sentences, num_codes, cfg.latent_dim, dtype=torch.float16))
            self.register_buffer("prior_count", torch.tensor(0))
        else:
            size, c = num_codes * cfg.latent_dim, cfg.prior_components
            self.register_buffer("prior_weights", torch.full((c,), 1.0 / c))
            self.register_buffer("prior_means", torch.zeros(c, size))
            self.register_buffer("prior_scale_tril", torch.eye(size).repeat(c, 1, 1))

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.num_codes, self.cfg.latent_dim)

    @property
    def prior_sentences(self) -> int:
        return self.cfg.prior_sentences

    @torch.no_grad()
    def _initialise(self, h: torch.Tensor, slot_mask: torch.Tensor) -> None:
        """PCA of the first batch's real code slots: `down` whitens the top components, `up` rebuilds."""
        pca_initialise(self.down, self.up, self.norm_in(h.float())[slot_mask], self.cfg.latent_dim)
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.initialised.fill_(True)
        if dist.is_available() and dist.is_initialized():  # every process, even one whose batch was too small
            for p in (*self.down.parameters(), *self.up.parameters()):
                dist.broadcast(p.data, src=0)

    def latent(self, h: torch.Tensor, slot_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The stored code (B, K, latent_dim) of the summaries h: standardised with the statistics of
        this batch's real slots when training (updating the running ones), else the running ones."""
        x = self.down(self.norm_in(h))
        if self.training and slot_mask is not None and int(slot_mask.sum()) > 1:
            real = x[slot_mask].float()
            mean, var = real.mean(0), real.var(0, correction=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.cfg.momentum)
                self.running_var.lerp_(var.detach(), self.cfg.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / (var + 1e-5).sqrt()).to(x.dtype)

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        if self.training and not bool(self.initialised):
            self._initialise(h.detach(), slot_mask)
        if self.training and bool(self.prior_fitted):  # e.g. --init-from a fitted rae: the codes move, the prior is refitted
            self.prior_fitted.fill_(False)
        z = self.latent(h, slot_mask)
        if self.training and self.cfg.noise_max > 0:
            sigma = torch.rand(z.shape[0], 1, 1, device=z.device, dtype=z.dtype).square() * self.cfg.noise_max
            return BottleneckOutput(code=self.to_decoder(z + sigma * torch.randn_like(z), sigma), latent={"z": z})
        noisy = z + self.cfg.noise * torch.randn_like(z) if self.training and self.cfg.noise > 0 else z
        return BottleneckOutput(code=self.to_decoder(noisy), latent={"z": z})

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        return self.latent(h)

    def to_decoder(self, code: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        """What the decoder reads; with noise_max > 0 it is told `level` (B, 1, 1: training passes each
        sentence's noise), else the level `told` set."""
        out = self.norm(self.up(code))
        if self.cfg.noise_max > 0:
            out = out + self.level(out.new_full((1, 1, 1), self.decode_level) if level is None else level)
        return out

    def sample_level_at(self, temperature: float) -> float:
        """A kde sample is a training code plus the kernel's noise, what the decoder trained on: it is told that noise."""
        if self.cfg.noise_max == 0:
            return 0.0
        return temperature * self.cfg.prior_bandwidth if self.cfg.prior == "kde" else self.cfg.sample_level

    @classmethod
    def saved_options(cls, options: dict, weights: set[str]) -> dict:
        if "prior" not in options and "bottleneck.prior_weights" in weights:  # saved when the mixture was the default
            return {**options, "prior": "gmm"}
        return options

    @property
    def interpolation_level(self) -> float:
        return self.cfg.midpoint_level if self.cfg.noise_max > 0 else 0.0

    @contextlib.contextmanager
    def told(self, level: float) -> Iterator[None]:
        previous, self.decode_level = self.decode_level, float(level)
        try:
            yield
        finally:
            self.decode_level = previous

    # ----- the ex-post prior ------------------------------------------------------------------
    def fit_prior(self, codes: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Fit the prior on stored codes (N, K, latent_dim); returns fit figures."""
        if self.cfg.prior == "diffusion":
            result = self.diffusion.fit(codes, self.cfg.prior_minutes, self.cfg.prior_max_steps, seed=seed)
            self.prior_fitted.fill_(True)
            return result
        if self.cfg.prior == "kde":
            return self._fit_kde(codes)
        return self._fit_mixture(codes, seed)

    @torch.no_grad()
    def _fit_kde(self, codes: torch.Tensor) -> dict[str, float]:
        """Keep the codes (float16) as the kernels' centres, at the config's bandwidth (not the one under which
        held-out codes are most likely: that is near a code SD, where the decoder writes word salad, see the README)."""
        if not 1 <= len(codes) <= len(self.prior_bank):
            raise ValueError(f"the kde prior keeps 1 to prior_sentences={len(self.prior_bank)} codes, got {len(codes)}")
        self.prior_bank.zero_()  # a refit on fewer codes leaves none of the old ones behind
        self.prior_bank[: len(codes)] = codes.to(self.prior_bank)
        self.prior_count.fill_(len(codes))
        self.prior_fitted.fill_(True)
        return {"prior_sentences": len(codes), "prior_bandwidth": self.cfg.prior_bandwidth}

    @torch.no_grad()
    def _fit_mixture(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        from sklearn.mixture import GaussianMixture

        x = codes.flatten(1).double().cpu().numpy()
        components = min(self.cfg.prior_components, len(x))
        gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-3, max_iter=100, random_state=seed)
        gmm.fit(x)  # the code is standardised, so the covariance floor means the same for every model
        weights = torch.zeros(self.cfg.prior_components, dtype=torch.float64)
        weights[:components] = torch.from_numpy(gmm.weights_)
        self.prior_weights.copy_(weights)
        self.prior_means[:components] = torch.from_numpy(gmm.means_)
        self.prior_scale_tril[:components] = torch.linalg.cholesky(torch.from_numpy(gmm.covariances_))
        self.prior_fitted.fill_(True)
        return {"prior_components": components, "prior_log_likelihood": float(gmm.score(x)),
                "prior_converged": float(gmm.converged_)}

    def _require_prior(self) -> None:
        if not bool(self.prior_fitted):
            raise NotImplementedError("this rae model has no fitted prior (training was interrupted before the end); "
                                      "finish the run, or retrain it with --family rae")

    def _mixture(self) -> torch.distributions.MixtureSameFamily:
        self._require_prior()
        return torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=self.prior_weights.double()),
            torch.distributions.MultivariateNormal(self.prior_means.double(), scale_tril=self.prior_scale_tril.double()),
        )

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n codes from the prior; `temperature` scales the kde's bandwidth, the diffusion's starting
        noise, or each mixture component's spread."""
        self._require_prior()
        if self.cfg.prior == "diffusion":
            return self.diffusion.sample(n, self.code_shape, generator, temperature)
        if self.cfg.prior == "kde":
            rows = torch.randint(int(self.prior_count), (n,), generator=generator).to(self.prior_bank.device)
            noise = torch.randn(n, *self.code_shape, generator=generator).to(self.prior_bank.device)
            return self.prior_bank[rows].float() + temperature * self.cfg.prior_bandwidth * noise
        component = torch.multinomial(self.prior_weights.double().cpu(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.prior_means.shape[1], 1, generator=generator, dtype=torch.float64)
        tril = self.prior_scale_tril.double().cpu()[component]
        x = self.prior_means.double().cpu()[component] + temperature * (tril @ eps)[..., 0]
        return x.float().view(n, *self.code_shape).to(self.prior_means.device)

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """code + scale · ε (the code is standardised, so `scale` reads in its standard deviations);
        a diffusion prior then denoises it back to where codes of sentences live (SDEdit)."""
        noise = torch.randn(code.shape, generator=generator).to(code)
        if self._diffusion_ready():
            return self.diffusion.renoise(code, scale, noise)
        return code + scale * noise

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The great circle from a to b (slerp; White 2016): a straight line shrinks its midpoints'
        norm, which standardised codes of sentences do not have, and those decode to runs of digits.
        With a diffusion prior each point is then denoised from noise of interpolation_scale · sin(π·w)
        code SDs (one draw for the whole path, so it stays smooth). Both ends stay exactly a and b."""
        path = _slerp(a, b, weights)
        if not self._diffusion_ready():
            return path
        scale = self.cfg.interpolation_scale * torch.sin(math.pi * weights.float()).clamp(min=0)
        noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(0)).to(a).expand_as(path)
        return self.diffusion.renoise(path, scale, noise)

    def _prior_log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of flat codes (N, K·L) under the fitted mixture or kde."""
        if self.cfg.prior == "kde":
            bank = self.prior_bank[: int(self.prior_count)].flatten(1).float().to(x.device)
            return _kde_log_density(x, bank, self.cfg.prior_bandwidth)
        return self._mixture().log_prob(x.double())

    def _diffusion_ready(self) -> bool:
        return self.cfg.prior == "diffusion" and bool(self.prior_fitted)

    # ----- health -----------------------------------------------------------------------------
    @torch.no_grad()
    def latent_metrics(
        self, model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16
    ) -> dict[str, float]:
        """Active share: of the (slot, dimension) units whose slot holds words in at least 1 % of
        the sentences, those whose variance across sentences exceeds 0.01 (Burda et al.'s criterion;
        the code is standardised, as their prior). MI: I(x; z) of the Gaussian encoder the training
        noise defines, at most log N. KL: E[log q(z|x) - log p(z)] against the fitted kde or mixture
        (for a kde, mostly how far a code lies from its nearest kept code); for a diffusion prior, whose
        density has no closed form, against N(0, I), the standardised code's scale."""
        codes, masks = [], []
        for batch in batches:
            h, mask = model.chunk_summaries(batch["input_ids"], batch["attention_mask"])
            codes.append(self.latent(h).float())
            masks.append(mask)
        z, mask = torch.cat(codes), torch.cat(masks)  # (N, K, L), (N, K)
        content = mask.float().mean(0) >= 0.01  # (K,)
        variance = torch.stack([z[mask[:, k], k].var(0, correction=0) if mask[:, k].sum() > 1 else z.new_zeros(z.shape[-1])
                                for k in range(self.num_codes)])  # (K, L)
        active = (variance > ACTIVE_VARIANCE) & content[:, None]
        sigma = self.cfg.noise_max / 3 if self.cfg.noise_max > 0 else self.cfg.noise  # the mean training noise
        out = {"active_units": int(active.sum()), "active_share": float(active.sum() / max(1, int(content.sum()) * z.shape[-1]))}
        if sigma > 0:
            flat = z.flatten(1)
            logvar = torch.full_like(flat, 2 * math.log(sigma))
            out["mi"] = mutual_information(flat, logvar, torch.Generator().manual_seed(0))
            if self.cfg.prior == "diffusion":  # its density has no closed form: the standardised code's own Gaussian
                out["kl"] = float(0.5 * (flat.pow(2) + sigma**2 - 1 - 2 * math.log(sigma)).sum(1).mean())
            elif bool(self.prior_fitted):
                gen = torch.Generator().manual_seed(0)
                draw = flat + sigma * torch.randn(flat.shape, generator=gen).to(flat)
                log_q = gaussian_log_density(draw, flat, logvar)
                out["kl"] = float((log_q.double() - self._prior_log_density(draw)).mean())
        return out


def _kde_log_density(x: torch.Tensor, centres: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """log densities (N,) of the rows of x under an isotropic Gaussian kernel density on `centres`."""
    norm = math.log(len(centres)) + x.shape[1] * math.log(bandwidth * math.sqrt(2 * math.pi))
    return torch.cat([torch.logsumexp(-torch.cdist(chunk.double(), centres.double()).pow(2) / (2 * bandwidth**2), 1) - norm
                      for chunk in x.split(1024)])


def _slerp(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Points on the great circle from a to b (the straight line when they are parallel or opposite), ends exact."""
    w = weights.to(a).view(-1, *([1] * a.ndim))
    cos = (a.flatten() @ b.flatten() / (a.norm() * b.norm()).clamp(min=1e-12)).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if torch.sin(omega) < 1e-4:  # parallel or opposite: no single great circle
        path = (1 - w) * a + w * b
    else:
        path = (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)
    path[w.flatten() == 0] = a
    path[w.flatten() == 1] = b
    return path

