"""Vector-quantised bottleneck: every code slot becomes `heads` integers from one shared codebook.

Each slot's vector (D) is split into `heads` parts of D / heads and each part is replaced by its
nearest codebook entry, so a sentence is stored as K·heads integers (B, K·heads). Gradients pass
the lookup straight through; the codebook itself is not trained by gradients but follows its
assignments as exponential moving averages (van den Oord et al. 2017, EMA variant), which is
stable on text. The tricks that keep the codebook alive:
- k-means initialisation on the first training batch's encodings;
- dead-code restart: entries whose EMA count falls below `dead_code_threshold` are moved onto
  random encodings of the current batch;
- a commitment loss keeps the encoder close to the codes it picks;
- slots past the end of a sentence (padding) never touch the codebook statistics.
Written here rather than taken from vector-quantize-pytorch: its 1.32 release fails with
multi-head codebooks and a padding mask together, the case textae needs.

With several processes, EMA statistics are summed over them; the rest is rank 0's, which DDP
broadcasts with the buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .base import Bottleneck, BottleneckOutput

if TYPE_CHECKING:
    from ..model import TextAEModel

PERTURB_NEIGHBOURS = 8  # paraphrasing swaps a code for one of this many nearest codebook entries


@dataclass
class VQConfig:
    codebook_size: int = 512
    heads: int = 4  # parts per code slot, each quantised separately: K·heads integers per sentence
    decay: float = 0.99  # EMA decay of codebook statistics
    commitment: float = 0.25  # weight of ||h - sg(q)||^2
    kmeans_iters: int = 10
    dead_code_threshold: float = 1.0  # EMA assignments per step below which a code is restarted
    normalize: bool = True  # parameter-free LayerNorm before quantising, as the plain family's code
    eps: float = 1e-5


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids (k, d), counts (k,)) of Lloyd's k-means, started from random points of x (N, d)."""
    start = torch.randint(len(x), (k,), generator=generator) if len(x) < k else torch.randperm(len(x), generator=generator)[:k]
    centroids = x[start.to(x.device)].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(-1)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0  # empty clusters keep their point
        centroids[filled] = sums[filled] / counts[filled, None]
    counts = torch.bincount(torch.cdist(x, centroids).argmin(-1), minlength=k).float()
    return centroids, counts


def code_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a code histogram: the codebook size when every code is used equally."""
    probs = counts / counts.sum().clamp(min=1)
    return torch.exp(-(probs * probs.clamp(min=1e-12).log()).sum())


class VQBottleneck(Bottleneck, family="vq", options=VQConfig):
    placed_by = {"initialised": "codebook"}
    def __init__(self, num_codes: int, dim: int, cfg: VQConfig):
        super().__init__(num_codes, dim)
        if dim % cfg.heads:
            raise ValueError(f"code_dim={dim} must be a multiple of heads={cfg.heads}")
        self.cfg = cfg
        self.part = dim // cfg.heads
        self.slots = num_codes * cfg.heads
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if cfg.normalize else nn.Identity()
        self.register_buffer("codebook", torch.randn(cfg.codebook_size, self.part))
        self.register_buffer("ema_count", torch.zeros(cfg.codebook_size))
        self.register_buffer("ema_sum", torch.zeros(cfg.codebook_size, self.part))
        self.register_buffer("initialised", torch.tensor(False))
        # How often each slot picked each code (EMA), padding slots included: the empirical
        # distribution `sample_prior` draws from.
        self.register_buffer("slot_counts", torch.zeros(self.slots, cfg.codebook_size))

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.slots,)

    code_dtype = torch.int64
    paraphrase_scale = 0.1  # chance to swap each integer

    def _parts(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h).reshape(h.shape[0], self.slots, self.part)  # (B, K·H, D/H)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Indices (B, S) of the codebook entries nearest to x (B, S, D/H)."""
        return torch.cdist(x.float().flatten(0, 1), self.codebook).argmin(-1).view(x.shape[:2])

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        x = self._parts(h)
        mask = slot_mask.repeat_interleave(self.cfg.heads, dim=1)  # (B, K·H)
        valid = x[mask].detach().float()  # (N, D/H): the only vectors statistics may see
        if self.training and not bool(self.initialised) and len(valid):
            self._initialise(valid)
        indices = self.nearest(x)
        q = F.embedding(indices, self.codebook).to(x.dtype)
        commitment = F.mse_loss(x[mask], q[mask]) if mask.any() else x.sum() * 0.0
        if self.training:
            self._update(valid, indices[mask], indices)
        perplexity = code_perplexity(torch.bincount(indices[mask], minlength=self.cfg.codebook_size).float())
        q = x + (q - x).detach()  # straight-through: the decoder's gradient reaches the encoder
        return BottleneckOutput(
            code=q.reshape(h.shape),
            losses={"commitment": self.cfg.commitment * commitment},
            stats={"code_perplexity": perplexity},
            latent={"indices": indices, "mask": mask},
        )

    @torch.no_grad()
    def _initialise(self, valid: torch.Tensor) -> None:
        centroids, counts = kmeans(valid, self.cfg.codebook_size, self.cfg.kmeans_iters)
        self.codebook.copy_(centroids)
        self.ema_count.copy_(counts)
        self.ema_sum.copy_(centroids * counts[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, valid: torch.Tensor, picked: torch.Tensor, all_indices: torch.Tensor) -> None:
        """EMA codebook step on the valid vectors, then restart the codes nobody picks."""
        c, decay = self.cfg.codebook_size, self.cfg.decay
        counts = torch.bincount(picked, minlength=c).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, picked, valid)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.cfg.eps) / (total + c * self.cfg.eps) * total  # no division by 0
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < self.cfg.dead_code_threshold
        if dead.any() and len(valid):
            fresh = valid[torch.randint(len(valid), (int(dead.sum()),), device=valid.device)]
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh * self.cfg.dead_code_threshold
            self.ema_count[dead] = self.cfg.dead_code_threshold
        self.slot_counts.mul_(decay).scatter_add_(
            1, all_indices.T, torch.full(all_indices.T.shape, 1 - decay, device=all_indices.device)
        )

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        return self.nearest(self._parts(h))

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        if code.dtype.is_floating_point or code.min() < 0 or code.max() >= self.cfg.codebook_size:
            raise ValueError(f"VQ codes are integers in [0, {self.cfg.codebook_size}); got {code.dtype} values")
        return F.embedding(code, self.codebook).reshape(code.shape[0], self.num_codes, self.dim)

    def check_code(self, code: torch.Tensor) -> None:
        size = self.cfg.codebook_size
        if code.numel() and (code.min() < 0 or code.max() >= size):
            raise ValueError(f"VQ codes must lie in [0, {size}); got values from {int(code.min())} to {int(code.max())}")

    @torch.no_grad()
    def latent_metrics(
        self, model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16
    ) -> dict[str, float]:
        """Usage: fraction of the codebook that held-out sentences use; perplexity: exp(entropy) of
        their code distribution (= codebook size when every code is equally used). Padding slots excluded."""
        counts = torch.zeros(self.cfg.codebook_size)
        for batch in batches:
            out = self(*model.chunk_summaries(batch["input_ids"], batch["attention_mask"]))
            counts += torch.bincount(out.latent["indices"][out.latent["mask"]].cpu(), minlength=len(counts)).float()
        return {"codebook_usage": float((counts > 0).float().mean()), "code_perplexity": float(code_perplexity(counts))}

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Each slot's code drawn independently from how often that slot used each code in training
        (counts raised to 1 / `temperature`)."""
        weights = torch.softmax((self.slot_counts.float().cpu() + 1e-6).log() / max(temperature, 1e-3), dim=-1)  # untrained: uniform
        return torch.multinomial(weights, n, replacement=True, generator=generator).T.to(self.codebook.device)

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Each integer, with probability `scale`, swapped for one of its nearest codebook neighbours."""
        nearest = torch.cdist(self.codebook, self.codebook).topk(PERTURB_NEIGHBOURS + 1, largest=False).indices
        neighbours = nearest[:, 1:]  # (C, PERTURB_NEIGHBOURS): the first is the code itself
        swap = torch.rand(code.shape, generator=generator).to(code.device) < scale
        pick = torch.randint(neighbours.shape[1], code.shape, generator=generator).to(code.device)
        return torch.where(swap, neighbours[code, pick], code)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Blend the two sentences' codebook vectors and snap each blend to its nearest code."""
        va, vb = self.codebook[a], self.codebook[b]  # (S, D/H)
        w = weights.to(va).view(-1, 1, 1)
        return self.nearest((1 - w) * va + w * vb)
