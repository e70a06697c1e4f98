"""Bottleneck families: one small module each, registered by the model config's `family` name."""

from __future__ import annotations

from typing import Any

from ..registry import family_config, get_family
from .base import Bottleneck, BottleneckOutput
# Imported in the order `--help` lists them: each module registers its family.
from .continuous import ContinuousBottleneck, ContinuousConfig  # isort: skip
from .rae import RAEBottleneck, RAEConfig  # isort: skip
from .vae import VAEBottleneck, VAEConfig  # isort: skip
from .vq import VQBottleneck, VQConfig  # isort: skip
from .cvae import CVAEBottleneck, CVAEConfig  # isort: skip
from .cae import CAEBottleneck, CAEConfig  # isort: skip
from .gmvae import GMVAEBottleneck, GMVAEConfig  # isort: skip


def build_bottleneck(family: str, num_codes: int, dim: int, options: dict[str, Any] | None = None) -> Bottleneck:
    """The family's bottleneck module for K = `num_codes` code vectors of size `dim`."""
    spec = get_family(family)
    if spec.bottleneck is None:
        raise ValueError(f"family {family!r} has a model of its own, not a bottleneck")
    return spec.bottleneck(num_codes, dim, spec.make_options(options))


__all__ = [
    "Bottleneck", "BottleneckOutput", "CAEBottleneck", "CAEConfig", "ContinuousBottleneck", "ContinuousConfig", "CVAEBottleneck", "CVAEConfig",
    "GMVAEBottleneck", "GMVAEConfig", "RAEBottleneck", "RAEConfig", "VAEBottleneck", "VAEConfig", "VQBottleneck", "VQConfig", "build_bottleneck",
    "family_config",
]
