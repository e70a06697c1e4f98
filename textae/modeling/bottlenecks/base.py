"""The contract every bottleneck family follows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BottleneckOutput:
    """`code` is what the decoder sees (B, K, D); `losses` are named terms added to the training loss."""

    code: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


class Bottleneck(nn.Module):
    """Maps the encoder's K summary vectors (B, K, D) to the code the decoder reads."""

    def forward(self, h: torch.Tensor) -> BottleneckOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """The deterministic code users store (e.g. a VAE's posterior mean)."""
        return self(h).code
