"""Gaussian-mixture VAE: the prior is C diagonal Gaussians, so training also clusters the data.

p(z) = Σ_c π_c N(z; m_c, diag(s²)) with uniform π and one spread s shared by the components. A
sentence's cluster is the component most responsible for its posterior mean,
q(c|x) ∝ N(mu; m_c, s²): one encoder pass, no separate clustering step (`textae cluster`).

The KL to a mixture has no closed form; the usual bound (VaDE, Jiang et al. 2017) is
    KL(q(z,c|x) || p(z,c)) = Σ_c r_c KL(q(z|x) || N_c) + KL(r || π),  r = q(c|x),
whose first part splits per dimension, so free bits apply as in the plain VAE. It trains the
encoder (`kl`). The mixture itself is not trained by gradients: like the VQ codebook it follows
the posterior means as exponential moving averages (online EM), which moves it as fast as the
encoder moves and cannot stall under the free-bits floor. What keeps every cluster alive:
- the components are placed by k-means (best of `place_restarts`) on the posterior means of the
  latest training sentences (up to `place_rows`), after `place_after` steps in which the prior is N(0, I) as
  in the plain VAE (VaDE's own recipe: pretrain, then fit the mixture). Codes placed on the first
  batch of a warm start group by wording, before the semantic term has shaped them, and the
  mixture's pull then keeps those groups;
- one spread shared by all components, so no component can widen until it swallows the rest
  (with a spread per component and gradient-fitted means, one component soon took every TREC
  question);
- a component whose EMA share falls below `dead_share` of the uniform share is moved onto a
  random posterior mean of the batch.

An autoencoder's codes group sentences by wording, not by kind. With `semantic_weight` > 0 the
posterior means also learn a sentence encoder's geometry (all-MiniLM-L6-v2, `textae.similarity`): a
linear head from mu predicts the embedding of the clean sentence (the reconstruction target, so noised
input learns the clean meaning), and the loss adds semantic_weight × (1 − cosine). The encoder is a
student that reads words, so the mixture clusters by meaning (benchmarks/cluster_ceiling.py measures
what such a student keeps of MiniLM's clusters). Each distinct sentence is embedded once (up to
TEACHER_CACHE of them are kept), so epochs after the first cost little more than a plain VAE's.
Only training reads MiniLM; encoding and clustering do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .base import BottleneckOutput
from .vae import VAEBottleneck, VAEConfig, free_bits_kl, gaussian_log_density
from .vq import code_perplexity, kmeans

SEMANTIC_DIM = 384  # all-MiniLM-L6-v2's embedding size (the pinned wheel of textae.similarity)
TEACHER_CACHE = 100_000  # sentences whose embeddings are kept (float16, about 80 MB)
SEMANTIC_ADVICE = "check the connection, or train without it: --set model.bottleneck.semantic_weight=0"


@dataclass
class GMVAEConfig(VAEConfig):
    components: int = 10  # C, the number of clusters
    free_bits: float = 0.5  # lower than the plain VAE's 2.0, so the encoder feels the mixture's pull
    decay: float = 0.99  # EMA decay of the mixture statistics
    kmeans_iters: int = 20
    dead_share: float = 0.05  # restart a component holding less than this fraction of 1/C of the data
    semantic_weight: float = 0.0  # > 0: mu also learns MiniLM's sentence geometry, so clusters follow meaning
    place_after: int = 300  # optimiser steps with the N(0, I) prior before the mixture is placed (0: first batch)
    place_rows: int = 4096  # the placing k-means reads at most this many of the latest posterior means
    place_restarts: int = 10  # k-means runs; the one with the least within-cluster spread places the mixture

    def __post_init__(self):
        super().__post_init__()
        if self.semantic_weight < 0:
            raise ValueError(f"semantic_weight must be >= 0, got {self.semantic_weight}")
        if self.place_after < 0 or self.place_rows < self.components or self.place_restarts < 1:
            raise ValueError("place_after must be >= 0, place_rows at least components, and place_restarts >= 1")


def gaussian_pair_kl(mu: torch.Tensor, logvar: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(m_c, e^logvar_c)) per sentence, component and dimension (B, C, Z)."""
    mu, logvar = mu[:, None], logvar[:, None]
    return 0.5 * (logvars - logvar + (logvar.exp() + (mu - means).pow(2)) / logvars.exp() - 1.0)


class GMVAEBottleneck(VAEBottleneck, family="gmvae", options=GMVAEConfig):
    standard_normal_prior = False
    mixture_prior = True
    placed_by = {**VAEBottleneck.placed_by, "mixture_initialised": "means"}
    def __init__(self, num_codes: int, dim: int, cfg: GMVAEConfig):
        super().__init__(num_codes, dim, cfg)
        if cfg.components < 2:
            raise ValueError(f"a gmvae needs at least 2 components, got {cfg.components}")
        c, z = cfg.components, cfg.latent_dim
        self.register_buffer("means", torch.randn(c, z))
        self.register_buffer("logvar_shared", torch.zeros(z))
        self.register_buffer("ema_count", torch.full((c,), 1.0 / c))  # shares of the data, summing to 1
        self.register_buffer("ema_sum", self.means / c)
        self.register_buffer("ema_spread", torch.ones(z))
        self.register_buffer("mixture_initialised", torch.tensor(False))
        self.semantic_head = nn.Linear(z, SEMANTIC_DIM) if cfg.semantic_weight > 0 else None
        # The semantic term reads text: the tokenizer comes from set_vocabulary, the encoder is loaded on first
        # use (anything with encode(texts) -> unit vectors; tests pass a small one), read_targets keeps the
        # batch's clean ids, and the embeddings of sentences seen before are looked up, not recomputed.
        self.tokenizer = None
        self.sentence_encoder = None
        self._read: torch.Tensor | None = None
        self._embedded: dict[tuple[int, ...], torch.Tensor] = {}
        self._recent: list[torch.Tensor] = []  # posterior means of the last training batches, for placing
        self._collected = 0  # training batches seen by this process before placing (not checkpointed)

    def set_vocabulary(self, tokenizer) -> None:
        """Keep the tokenizer the semantic term decodes with; the trainer calls this before the first step, so a
        sentence encoder that cannot be fetched fails the run here rather than after data and model are built."""
        self.tokenizer = tokenizer
        if self.semantic_head is not None and self.sentence_encoder is None:
            from ...similarity import minilm_dir

            minilm_dir(SEMANTIC_ADVICE)

    def read_targets(self, labels: torch.Tensor) -> None:
        """With the semantic term, keep the clean ids for the sentence encoder."""
        if self.semantic_head is not None:
            self._read = labels

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        """The VAE's pass with the mixture's KL; in training, the semantic term too."""
        out = super().forward(h, slot_mask, condition)
        if self.semantic_head is not None and self.training:
            read, self._read = self._read, None
            out.losses["semantic"] = self.cfg.semantic_weight * self._semantic_loss(out.latent["mu"], read)
        return out

    def _semantic_loss(self, mu: torch.Tensor, read: torch.Tensor | None) -> torch.Tensor:
        """1 − cosine between the head's prediction from mu and the sentence encoder's embedding of the clean
        sentences (`read`, their ids; -100 = padding), batch mean."""
        if self.tokenizer is None or read is None or len(read) != len(mu):
            raise RuntimeError("the semantic term reads text: call set_vocabulary(tokenizer), and run the batch "
                               "through the model (read_targets, then forward)")
        target = torch.stack(self._teacher([tuple(t for t in row if t >= 0) for row in read.tolist()]))
        target = target.to(mu.device, torch.float32)
        with torch.autocast(mu.device.type, enabled=False):  # a cosine of unit-scale vectors, in full precision
            predicted = self.semantic_head(mu.float())
        return (1 - torch.cosine_similarity(predicted, target, dim=-1)).mean()

    def _teacher(self, sentences: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """The sentence encoder's embedding of each sentence (ids), computed once per distinct sentence."""
        new = list(dict.fromkeys(s for s in sentences if s not in self._embedded))
        if new:
            if self.sentence_encoder is None:
                from ...similarity import shared_encoder

                self.sentence_encoder = shared_encoder(self.semantic_head.weight.device, advice=SEMANTIC_ADVICE)
            texts = self.tokenizer.batch_decode([list(s) for s in new], skip_special_tokens=True)
            vectors = torch.as_tensor(self.sentence_encoder.encode(texts)).half()
            found = dict(zip(new, vectors))
            room = TEACHER_CACHE - len(self._embedded)
            self._embedded.update(list(found.items())[: max(0, room)])
        return [self._embedded[s] if s in self._embedded else found[s] for s in sentences]

    @property
    def logvars(self) -> torch.Tensor:
        return self.logvar_shared.expand_as(self.means)

    def _ready_to_place(self) -> bool:
        """After place_after steps, once this process has seen place_after batches or every process holds
        place_rows codes: a run resumed late in the warm-up (the codes are not checkpointed) collects codes
        again rather than placing on a few batches."""
        if self.step < self.cfg.place_after:
            return False
        if self._collected >= self.cfg.place_after:  # the same count on every process
            return True
        held = torch.tensor(float(sum(len(m) for m in self._recent)), device=self.means.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(held, op=dist.ReduceOp.MIN)
        return bool(held >= self.cfg.place_rows)

    @property
    def prior_sentences(self) -> int:
        """A run that ended before `place_after` steps places its mixture on training codes afterwards."""
        return 0 if bool(self.mixture_initialised) else self.cfg.place_rows

    def fit_prior(self, codes: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Place the mixture on stored codes of training sentences (only the main process calls this)."""
        codes = codes.float().to(self.means.device)
        self._initialise_mixture(codes, broadcast=False)
        return {"mixture_placed_on": float(len(codes)),
                "placed_cluster_perplexity": float(code_perplexity(self.responsibilities(codes).sum(0)))}

    @torch.no_grad()
    def _initialise_mixture(self, mu: torch.Tensor, broadcast: bool = True) -> None:
        x = mu.float()
        runs = [kmeans(x, self.cfg.components, self.cfg.kmeans_iters, torch.Generator().manual_seed(seed))
                for seed in range(self.cfg.place_restarts)]
        centres, counts = min(runs, key=lambda run: torch.cdist(x, run[0]).min(-1).values.pow(2).sum())
        shares = counts / counts.sum()
        spread = (x - centres[torch.cdist(x, centres).argmin(-1)]).pow(2).mean(0).clamp(min=1e-3)
        self.means.copy_(centres)
        self.ema_count.copy_(shares)
        self.ema_sum.copy_(centres * shares[:, None])
        self.ema_spread.copy_(spread)
        self.logvar_shared.copy_(spread.log())
        self.mixture_initialised.fill_(True)
        if broadcast and dist.is_available() and dist.is_initialized():
            for b in (self.means, self.ema_count, self.ema_sum, self.ema_spread, self.logvar_shared):
                dist.broadcast(b, src=0)

    @torch.no_grad()
    def _update_mixture(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """One online EM step: the components follow the batch's posterior means, weighted by r."""
        x = mu.float()
        r = self.log_joint(x).softmax(-1)  # (B, C)
        n = torch.tensor(float(len(x)), device=x.device)
        counts, sums = r.sum(0), r.T @ x
        spread = (r[..., None] * (x[:, None] - self.means).pow(2)).sum((0, 1)) + logvar.float().exp().sum(0)
        if dist.is_available() and dist.is_initialized():
            for t in (n, counts, sums, spread):
                dist.all_reduce(t)
        d = self.cfg.decay
        self.ema_count.mul_(d).add_(counts / n, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums / n, alpha=1 - d)
        self.ema_spread.mul_(d).add_(spread / n, alpha=1 - d)
        self.means.copy_(self.ema_sum / self.ema_count.clamp(min=1e-6)[:, None])
        self.logvar_shared.copy_(self.ema_spread.clamp(min=1e-3).log())
        dead = self.ema_count < self.cfg.dead_share / self.cfg.components
        if dead.any():  # rank 0's choice reaches the others with DDP's buffer broadcast
            fresh = x[torch.randint(len(x), (int(dead.sum()),), device=x.device)]
            share = self.cfg.dead_share / self.cfg.components
            self.means[dead] = fresh
            self.ema_sum[dead] = fresh * share
            self.ema_count[dead] = share

    def _require_placed(self) -> None:
        if not bool(self.mixture_initialised):
            raise RuntimeError("the mixture is not placed yet: it is placed after place_after training steps, or on "
                               "training codes when a shorter run ends; use the run's final model")

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log π_c + log N(z; m_c, s²) per sentence and component (B, C); training's own steps call it once the
        mixture is placed, so it does not check (a check reads the flag from the device)."""
        return gaussian_log_density(z[:, None].float(), self.means, self.logvars) - math.log(self.cfg.components)

    def responsibilities(self, code: torch.Tensor) -> torch.Tensor:
        """q(c|x) (B, C) for stored codes (posterior means): each row sums to one."""
        self._require_placed()
        return self.log_joint(code).softmax(-1)

    def prior_metrics(self, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, float]:
        """How evenly held-out sentences spread over the mixture's components (before it is placed: the VAE's KL)."""
        if not bool(self.mixture_initialised):
            return super().prior_metrics(mu, logvar)
        return {"cluster_perplexity": float(code_perplexity(self.responsibilities(mu).sum(0)))}

    def kl_terms(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, beta: float
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(losses, stats): β × the VaDE bound for the encoder; one online EM step of the mixture first."""
        placed = bool(self.mixture_initialised)  # read once: on a GPU each read waits for the device
        if self.training and not placed:
            self._recent.append(mu.detach().float())
            self._collected += 1
            while sum(len(m) for m in self._recent[1:]) >= self.cfg.place_rows:
                self._recent.pop(0)
            if self._ready_to_place():
                self._initialise_mixture(torch.cat(self._recent)[-self.cfg.place_rows:])
                self._recent, placed = [], True
        if not placed:  # the warm-up, or evaluated before placing: the prior is still N(0, I)
            return super().kl_terms(mu, logvar, z, beta)
        if self.training:
            self._update_mixture(mu.detach(), logvar.detach())
        r = self.log_joint(z).softmax(-1)
        per_dim, kl_c = self._kl_bound(mu, logvar, r)
        return (
            {"kl": beta * (free_bits_kl(per_dim, self.cfg.free_bits) + kl_c.mean())},
            {"kl_nats": (per_dim.sum(-1) + kl_c).mean().detach(), "cluster_perplexity": code_perplexity(r.detach().sum(0))},
        )

    def _kl_bound(self, mu: torch.Tensor, logvar: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VaDE bound's parts at responsibilities r: per sentence and dimension (B, Z), and KL(r || π) per
        sentence (B,)."""
        per_dim = (r[..., None] * gaussian_pair_kl(mu.float(), logvar.float(), self.means, self.logvars)).sum(1)
        return per_dim, (r * (r.clamp(min=1e-12).log() + math.log(self.cfg.components))).sum(-1)

    def prior_kl(self, h: torch.Tensor) -> torch.Tensor:
        """The VaDE bound of KL(q(z,c|x) || p(z,c)) per sentence, responsibilities at the posterior mean."""
        if not bool(self.mixture_initialised):
            return super().prior_kl(h)
        mu, logvar = self.posterior(h)
        per_dim, kl_c = self._kl_bound(mu, logvar, self.responsibilities(mu))
        return per_dim.sum(-1) + kl_c

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """z + scale·s·ε, s the components' spread per dimension, so `scale` reads in a component's standard
        deviations: the same scale moves a sentence alike whatever the mixture's size."""
        noise = torch.randn(code.shape, generator=generator) * (0.5 * self.logvar_shared.cpu()).exp()
        return code + scale * noise.to(code)

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Pick a component uniformly, then draw from it (`temperature` scales its spread)."""
        self._require_placed()
        c = torch.randint(self.cfg.components, (n,), generator=generator)
        noise = torch.randn(n, self.cfg.latent_dim, generator=generator)
        return self.means.cpu()[c] + temperature * noise * (0.5 * self.logvar_shared.cpu()).exp()
