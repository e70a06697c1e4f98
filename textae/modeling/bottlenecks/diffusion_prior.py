"""A latent diffusion prior over a sentence's code slots (LD4LG, Lovelace et al. 2023, in miniature).

An opt-in rae prior (`prior: diffusion`; the default is the kde, the other option a mixture): a small Transformer over
the K slot vectors is trained, after the autoencoder, to denoise stored codes (v-prediction on a
cosine schedule, Salimans & Ho 2022), and sampling runs its deterministic DDIM reverse process
(Song et al. 2021). The same denoiser pulls any code back toward the codes it learnt (SDEdit, Meng
et al. 2022): noise it to a level, then denoise; paraphrases and interpolation midpoints use that.
Within a CPU budget it sampled worse than the mixture (benchmarks/results/generative.json).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque

import torch
from torch import nn

log = logging.getLogger(__name__)
LOG_EVERY_S = 60.0  # a line a minute while the prior trains


def _levels(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal and noise scales (alpha, sigma) at times t in [0, 1]: the cosine schedule, alpha² + sigma² = 1."""
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def level_of(scale: float | torch.Tensor) -> torch.Tensor:
    """The time at which noise of `scale` standard deviations sits on a unit signal (sigma / alpha = scale)."""
    return torch.atan(torch.as_tensor(scale, dtype=torch.float32)) * 2 / math.pi


class SlotDenoiser(nn.Module):
    """Predicts v = alpha·ε − sigma·x0 from a noised code (B, K, L) and its time (B,)."""

    def __init__(self, num_slots: int, latent_dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.inp = nn.Linear(latent_dim, width)
        self.slot = nn.Parameter(torch.randn(num_slots, width) * 0.02)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def _time_features(self, t: torch.Tensor) -> torch.Tensor:
        half = self.slot.shape[1] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.slot + self.time(self._time_features(t))[:, None]
        return self.out(self.body(h))


class DiffusionPrior(nn.Module):
    """The denoiser plus what to do with it: fit on codes, sample, and pull codes toward the data."""

    def __init__(self, num_slots: int, latent_dim: int, width: int = 128, layers: int = 3, heads: int = 4,
                 sample_steps: int = 50):
        super().__init__()
        self.net = SlotDenoiser(num_slots, latent_dim, width, layers, heads)
        self.sample_steps = sample_steps
        self.requires_grad_(False)  # trained by `fit` alone, after the autoencoder: never by its optimiser

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        t = torch.rand(x0.shape[0], generator=generator).to(x0)
        eps = torch.randn(x0.shape, generator=generator).to(x0)
        alpha, sigma = (s.view(-1, 1, 1) for s in _levels(t))
        v = alpha * eps - sigma * x0
        return (self.net(alpha * x0 + sigma * eps, t) - v).pow(2).mean()

    def fit(self, codes: torch.Tensor, minutes: float, max_steps: int, batch_size: int = 256, lr: float = 1e-3,
            seed: int = 0) -> dict[str, float]:
        """Train on stored codes (N, K, L) for at most `minutes` or `max_steps`; returns fit figures."""
        gen = torch.Generator().manual_seed(seed)
        data = codes.float().to(self.net.slot.device)
        self.requires_grad_(True)
        self.train()
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
        started, step, recent = time.perf_counter(), 0, deque(maxlen=100)  # the last 100 losses
        logged = started
        while step < max_steps and time.perf_counter() - started < minutes * 60:
            if time.perf_counter() - logged >= LOG_EVERY_S:
                logged = time.perf_counter()
                log.info("prior: step %d, %.1f of %.1f min, loss %.4f", step, (logged - started) / 60, minutes,
                         sum(recent) / max(1, len(recent)))
            rows = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen)
            loss = self.loss(data[rows.to(data.device)], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
            schedule.step()
            recent.append(loss.item())
            step += 1
        self.requires_grad_(False)
        self.eval()
        return {"prior_steps": step, "prior_minutes": (time.perf_counter() - started) / 60,
                "prior_loss": sum(recent) / max(1, len(recent))}

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, start: torch.Tensor | float, steps: int | None = None) -> torch.Tensor:
        """Deterministic DDIM from time `start` (a float, or one per row) down to 0: the code it reaches."""
        steps = steps or self.sample_steps
        start = torch.as_tensor(start, dtype=torch.float32, device=x.device).expand(x.shape[0])
        x = x.float()
        for i in range(steps, 0, -1):
            t, s = start * i / steps, start * (i - 1) / steps
            a_t, s_t = (v.view(-1, 1, 1) for v in _levels(t))
            a_s, s_s = (v.view(-1, 1, 1) for v in _levels(s))
            v = self.net(x, t)
            x0 = a_t * x - s_t * v
            eps = s_t * x + a_t * v
            x = a_s * x0 + s_s * eps
        return x

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n codes: Gaussian noise (its spread scaled by `temperature`) run down the reverse process."""
        noise = temperature * torch.randn(n, *shape, generator=generator).to(self.net.slot.device)
        return self.denoise(noise, 1.0)

    @torch.no_grad()
    def renoise(self, code: torch.Tensor, scale: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """SDEdit: noise each code to the level where the noise is `scale` standard deviations of the
        signal, then denoise; scale 0 returns the code unchanged. `scale`: a float or one per row."""
        t = level_of(scale).to(code.device).expand(code.shape[0])
        alpha, sigma = (v.view(-1, 1, 1) for v in _levels(t))
        steps = max(1, math.ceil(self.sample_steps * float(t.max())))
        return self.denoise(alpha * code.float() + sigma * noise.to(code.device).float(), t, steps).to(code.dtype)
