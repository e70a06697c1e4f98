"""The contract every bottleneck family follows.

A family turns the encoder's K summary vectors h (B, K, D) into the code the decoder reads,
(B, K, D) floats. What users store may differ: a plain code is that tensor, a VAE stores its
posterior mean z (B, Z), a VQ model stores integer indices (B, K·H). `encode` gives the stored
code and `to_decoder` turns a stored code back into what the decoder reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BottleneckOutput:
    """One forward pass through a bottleneck.

    code: what the decoder reads (B, K, D).
    losses: named terms added to the training loss; names listed in `per_sentence` are totals
        per sentence (like a VAE's KL) that the model divides by target tokens per sentence, so
        every term is on the reconstruction loss's per-token scale.
    stats: numbers worth logging that are not optimised (the current β, a batch perplexity).
    latent: what evaluation needs to judge the latent space (posterior parameters, indices).
    """

    code: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    per_sentence: tuple[str, ...] = ()
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    latent: dict[str, torch.Tensor] = field(default_factory=dict)


class Bottleneck(nn.Module):
    """Maps the encoder's K summary vectors (B, K, D) to the code the decoder reads.

    `slot_mask` (B, K) is True where a code slot covers at least one real token; slots past the
    end of a sentence carry no information and must not shape any statistics. `condition` (B,)
    holds label ids (-1 = unknown) for conditional families; the others ignore it.
    """

    def __init__(self, num_codes: int, dim: int):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.step = 0

    def forward(
        self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None
    ) -> BottleneckOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def set_step(self, step: int) -> None:
        """The trainer calls this before every step, for families whose losses follow a schedule."""
        self.step = step

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one stored code."""
        return (self.num_codes, self.dim)

    code_dtype = torch.float32
    paraphrase_scale = 0.25  # default perturbation for paraphrasing, in `perturb`'s units

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        """The deterministic code users store."""
        return self(h, slot_mask).code

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        """Stored codes (B, *code_shape) → what the decoder reads (B, K, D)."""
        return code

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n stored codes drawn from the family's prior; plain codes have none."""
        raise NotImplementedError("a plain autoencoder has no prior to sample from; train with --family vae or vq")

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stored codes moved a little (paraphrasing): Gaussian noise of `scale` × the code's spread."""
        noise = torch.randn(code.shape, generator=generator, device="cpu").to(code)
        return code + scale * code.std(dim=-1, keepdim=True) * noise

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Stored codes on the way from a to b (each of code_shape), one per weight in [0, 1]."""
        w = weights.to(a).view(-1, *([1] * a.ndim))
        return (1 - w) * a + w * b
