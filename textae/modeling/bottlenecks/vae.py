"""Variational bottleneck: a Gaussian sentence latent z, sampled with the reparameterisation trick.

The K summary vectors (B, K, D) are flattened into one posterior q(z|x) = N(mu, diag(sigma^2))
over a single Z-dimensional z per sentence, so z is a whole-sentence latent that sampling and
interpolation can move through. The decoder reads K code vectors built from z by a linear map.

Text VAEs collapse (the decoder learns a language model and the posterior falls back to the
prior) unless helped; every trick is a config switch here or in the run config:
- β schedule: KL weight rising from 0 (linear warm-up) or in cycles (Fu et al. 2019);
- free bits: KL below `free_bits` nats per dimension (batch mean) is not penalised;
- word dropout on decoder inputs (`noise.word_dropout`) and initialising from a trained plain
  autoencoder (`train.init_from`), both in the run config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from .base import Bottleneck, BottleneckOutput

if TYPE_CHECKING:
    from ..model import TextAEModel

SCHEDULES = ("constant", "linear", "cyclical")
# Posteriors start narrow (sigma = e^-2 = 0.14 around means of spread ~1), so the decoder can read z
# from the first step instead of learning to ignore noise; added to the layer's output because
# Hugging Face initialisation zeroes every bias.
INITIAL_LOGVAR = -4.0


@dataclass
class VAEConfig:
    latent_dim: int = 32
    beta: float = 1.0  # KL weight at the top of the schedule
    beta_schedule: str = "cyclical"  # "constant", "linear" warm-up or "cyclical"
    beta_steps: int = 1000  # linear: warm-up length; cyclical: length of one cycle
    cycle_ramp: float = 0.5  # cyclical: fraction of each cycle spent rising from 0 to beta
    free_bits: float = 2.0  # KL floor per latent dimension, nats (0 = off)
    normalize: bool = True  # parameter-free LayerNorm on the decoder's code vectors, as the plain family

    def __post_init__(self):
        if self.beta_schedule not in SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {SCHEDULES}, got {self.beta_schedule!r}")


def beta_at(step: int, cfg: VAEConfig) -> float:
    """The KL weight at an optimiser step."""
    if cfg.beta_schedule == "constant":
        return cfg.beta
    if cfg.beta_schedule == "linear":
        return cfg.beta * min(1.0, step / max(1, cfg.beta_steps))
    phase = (step % max(1, cfg.beta_steps)) / max(1, cfg.beta_steps)
    return cfg.beta * min(1.0, phase / cfg.cycle_ramp)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, nats (same shape as mu)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl: torch.Tensor, floor: float) -> torch.Tensor:
    """Sum over dimensions of max(floor, batch-mean KL of that dimension) (Kingma et al. 2016)."""
    per_dim = kl.mean(0)
    return per_dim.clamp(min=floor).sum() if floor > 0 else per_dim.sum()


@torch.no_grad()
def pca_initialise(encode: nn.Linear, decode: nn.Linear, x: torch.Tensor, q: int) -> bool:
    """Set `encode`'s first q outputs to the top q principal components of the rows of x, scaled to unit
    variance, and `decode` to rebuild x from them (its PCA reconstruction); False, changing nothing,
    when x has too few rows. Computed in full precision whatever the run's mixed precision."""
    x = x.float()
    q = min(q, x.shape[0] - 1, x.shape[1])
    if q < 1:
        return False
    with torch.autocast(x.device.type, enabled=False):
        mean = x.mean(0)
        _, s, v = torch.pca_lowrank(x - mean, q=q, center=False)  # v: (D, q)
    scale = (s / max(1, x.shape[0] - 1) ** 0.5).clamp(min=1e-4)  # spread along each component
    encode.weight[:q] = (v / scale).T
    encode.bias[:q] = -(mean @ v) / scale
    decode.weight[:, :q] = v * scale
    decode.bias.copy_(mean)
    return True


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


class VAEBottleneck(Bottleneck, family="vae", options=VAEConfig):
    standard_normal_prior = True
    placed_by = {"initialised": "to_posterior.weight"}
    def __init__(self, num_codes: int, dim: int, cfg: VAEConfig):
        super().__init__(num_codes, dim)
        self.cfg = cfg
        self.to_posterior = nn.Linear(num_codes * dim, 2 * cfg.latent_dim)  # → (mu, logvar)
        self.from_latent = nn.Linear(cfg.latent_dim, num_codes * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if cfg.normalize else nn.Identity()
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _initialise(self, h: torch.Tensor) -> None:
        """PCA of the first training batch: mu starts as the top principal components of the summary
        vectors, scaled to unit variance like the prior, and the decoder's code as their PCA
        reconstruction. Initialised from a trained autoencoder, the decoder then reads a close
        approximation of the code it was trained on instead of a random projection of noise."""
        if not pca_initialise(self.to_posterior, self.from_latent, h.flatten(1), self.cfg.latent_dim):
            return
        self.initialised.fill_(True)
        if dist.is_available() and dist.is_initialized():  # every process starts from rank 0's batch
            for p in (*self.to_posterior.parameters(), *self.from_latent.parameters()):
                dist.broadcast(p.data, src=0)

    paraphrase_scale = 0.5  # prior standard deviations

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.cfg.latent_dim,)

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, Z)."""
        mu, logvar = self.to_posterior(h.flatten(1)).chunk(2, dim=-1)
        return mu, (logvar + INITIAL_LOGVAR).clamp(-12.0, 8.0)  # clamp: exp(logvar) stays finite in bf16

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        if self.training and not bool(self.initialised):
            self._initialise(h.detach())
        mu, logvar = self.posterior(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation: gradients reach mu and sigma
        beta = beta_at(self.step, self.cfg)
        losses, stats = self.kl_terms(mu, logvar, z, beta)
        return BottleneckOutput(
            code=self.to_decoder(self.stored_code(z, h, condition)),
            losses=losses,
            per_sentence=tuple(losses),
            stats={"beta": torch.tensor(beta), **stats},
            latent={"mu": mu, "logvar": logvar},
        )

    def kl_terms(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, beta: float
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(losses per sentence, stats): β·KL to the standard normal prior, with free bits."""
        kl = gaussian_kl(mu.float(), logvar.float())  # (B, Z)
        return {"kl": beta * free_bits_kl(kl, self.cfg.free_bits)}, {"kl_nats": kl.sum(-1).mean().detach()}

    def stored_code(self, z: torch.Tensor, h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """A latent draw in the form users store (conditional families append the label)."""
        return z

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        return self.posterior(h)[0]  # the posterior mean

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        return self.norm(self.from_latent(code).view(code.shape[0], self.num_codes, self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        return temperature * torch.randn(n, self.cfg.latent_dim, generator=generator)

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """z + scale·ε: the prior has unit scale, so `scale` reads in prior standard deviations."""
        return code + scale * torch.randn(code.shape, generator=generator).to(code)

    def prior_kl(self, h: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.posterior(h)
        return gaussian_kl(mu.float(), logvar.float()).sum(-1)

    def latent_metrics(
        self, model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16
    ) -> dict[str, float]:
        """Active units, I(x; z), `prior_metrics`, and an importance-sampled NLL bound (which assumes
        the standard normal prior, so only families with that prior report it)."""
        return posterior_metrics(model, batches, nll_samples if self.standard_normal_prior else 0)

    def prior_metrics(self, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, float]:
        """How the held-out posteriors sit against the prior: their mean KL, nats per sentence."""
        return {"kl": float(gaussian_kl(mu, logvar).sum(-1).mean())}


def mutual_information(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None, samples: int = 8
) -> float:
    """Minibatch estimate of I(x; z) = E[log q(z|x)] - E[log q(z)], nats (He et al. 2019), with the
    aggregate posterior q(z) approximated by the mixture of all N posteriors given, so it is at
    most log N; `samples` draws of z per x keep the Monte-Carlo noise small."""
    n, dim = mu.shape
    neg_entropy = (-0.5 * dim * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    noise = torch.randn((samples, *mu.shape), generator=generator).to(mu)
    z = (mu + noise * (0.5 * logvar).exp()).flatten(0, 1)  # (samples·N, Z)
    # log q(z_i | x_j) for every draw i and posterior j, in slices that keep memory small
    log_density = torch.cat([gaussian_log_density(zi[:, None], mu[None], logvar[None]) for zi in z.split(512)])
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(n)  # log q(z) per draw
    return float(neg_entropy - log_qz.mean())


def importance_nll(
    model: TextAEModel, mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-log p(x) per sentence (B,) bounded with `samples` importance samples from q(z|x):
    log p(x) >= log mean_s p(x|z_s) p(z_s) / q(z_s|x) (Burda et al. 2016)."""
    log_w = []
    for _ in range(samples):
        z = mu + torch.randn(mu.shape, generator=generator).to(mu) * (0.5 * logvar).exp()
        log_px_z = model.sequence_log_likelihood(model.bottleneck.to_decoder(z), labels)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_w.append(log_px_z + log_pz - gaussian_log_density(z, mu, logvar))
    return -(torch.logsumexp(torch.stack(log_w), dim=0) - math.log(samples))


@torch.no_grad()
def posterior_metrics(model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16) -> dict[str, float]:
    """Active units (dimensions whose posterior mean varies, Var > 0.01), I(x; z), the bottleneck's
    `prior_metrics`, and with `nll_samples` the importance-sampled NLL and its perplexity (He et al. 2019)."""
    bottleneck = model.bottleneck
    gen = torch.Generator().manual_seed(0)
    mus, logvars, nll, tokens = [], [], 0.0, 0
    for batch in batches:
        h, _ = model.chunk_summaries(batch["input_ids"], batch["attention_mask"])
        mu, logvar = (t.float() for t in bottleneck.posterior(h))
        mus.append(mu)
        logvars.append(logvar)
        if nll_samples:
            nll += float(importance_nll(model, mu, logvar, batch["labels"], nll_samples, gen).sum())
            tokens += int(batch["labels"].ne(-100).sum())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    out = {
        "active_units": int((mu.var(0, correction=0) > 0.01).sum()),
        "mi": mutual_information(mu, logvar, gen),
        **bottleneck.prior_metrics(mu, logvar),
    }
    if nll_samples:
        out.update(nll=nll / len(mu), ppl=math.exp(nll / max(1, tokens)))
    return out
