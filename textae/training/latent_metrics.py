"""How healthy a latent space is: the numbers that reveal a collapsed VAE or a dead codebook.

VAE (He et al. 2019; Burda et al. 2016): active units, mutual information I(x; z), KL, and an
importance-sampled bound on the negative log-likelihood. VQ: codebook usage and code perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..modeling import TextAEModel
from ..modeling.bottlenecks.vae import gaussian_kl, gaussian_log_density
from ..modeling.bottlenecks.vq import code_perplexity


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
    log p(x) >= log mean_s p(x|z_s) p(z_s) / q(z_s|x)."""
    log_w = []
    for _ in range(samples):
        z = mu + torch.randn(mu.shape, generator=generator).to(mu) * (0.5 * logvar).exp()
        log_px_z = model.sequence_log_likelihood(model.bottleneck.to_decoder(z), labels)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_w.append(log_px_z + log_pz - gaussian_log_density(z, mu, logvar))
    return -(torch.logsumexp(torch.stack(log_w), dim=0) - math.log(samples))


@torch.no_grad()
def vae_metrics(model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    mus, logvars, nll, tokens = [], [], 0.0, 0
    for batch in batches:
        h, _ = model._summarise(batch["input_ids"], batch["attention_mask"])
        mu, logvar = (t.float() for t in model.bottleneck.posterior(h))
        mus.append(mu)
        logvars.append(logvar)
        if nll_samples:
            nll += float(importance_nll(model, mu, logvar, batch["labels"], nll_samples, gen).sum())
            tokens += int(batch["labels"].ne(-100).sum())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    out = {
        "active_units": int((mu.var(0, correction=0) > 0.01).sum()),
        "mi": mutual_information(mu, logvar, gen),
    }
    if model.config.family == "gmvae":  # the prior is the mixture: how evenly held-out sentences spread over it
        out["cluster_perplexity"] = float(code_perplexity(model.bottleneck.responsibilities(mu).sum(0)))
    else:
        out["kl"] = float(gaussian_kl(mu, logvar).sum(-1).mean())
    if nll_samples:
        out.update(nll=nll / len(mu), ppl=math.exp(nll / max(1, tokens)))
    return out


@torch.no_grad()
def vq_metrics(model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Usage: fraction of the codebook that held-out sentences use; perplexity: exp(entropy) of
    their code distribution (= codebook size when every code is equally used). Padding slots excluded."""
    size = model.bottleneck.cfg.codebook_size
    counts = torch.zeros(size)
    for batch in batches:
        out = model.bottleneck(*model._summarise(batch["input_ids"], batch["attention_mask"]))
        counts += torch.bincount(out.latent["indices"][out.latent["mask"]].cpu(), minlength=size).float()
    return {"codebook_usage": float((counts > 0).float().mean()), "code_perplexity": float(code_perplexity(counts))}


def latent_metrics(model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16) -> dict[str, float]:
    """The family's latent-space metrics ({} for the plain family)."""
    if model.config.family == "vae":
        return vae_metrics(model, batches, nll_samples)
    if model.config.family in ("cvae", "gmvae"):  # the importance bound above assumes the standard normal prior
        return vae_metrics(model, batches, nll_samples=0)
    if model.config.family == "vq":
        return vq_metrics(model, batches)
    return {}
