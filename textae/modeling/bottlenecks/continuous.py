"""Plain autoencoder bottleneck: the code is a deterministic vector per code slot."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Bottleneck, BottleneckOutput


@dataclass
class ContinuousConfig:
    normalize: bool = True  # parameter-free LayerNorm per code vector: keeps stored codes on one scale


class ContinuousBottleneck(Bottleneck, family="ae", options=ContinuousConfig):
    def __init__(self, num_codes: int, dim: int, cfg: ContinuousConfig):
        super().__init__(num_codes, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if cfg.normalize else nn.Identity()

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        return BottleneckOutput(code=self.norm(h))
