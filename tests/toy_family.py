"""A whole code family in one module: the encoder's summaries scaled by a constant. Importing it registers it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from textae.modeling.bottlenecks.base import Bottleneck, BottleneckOutput


@dataclass
class ToyConfig:
    scale: float = 2.0


class ToyBottleneck(Bottleneck, family="toy", options=ToyConfig):
    def __init__(self, num_codes: int, dim: int, cfg: ToyConfig):
        super().__init__(num_codes, dim)
        self.cfg = cfg

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        return BottleneckOutput(code=h * self.cfg.scale)
