"""Bottleneck families: one small module each, looked up by the model config's `family`."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import Bottleneck, BottleneckOutput
from .continuous import ContinuousBottleneck, ContinuousConfig
from .cvae import CVAEBottleneck, CVAEConfig
from .gmvae import GMVAEBottleneck, GMVAEConfig
from .vae import VAEBottleneck, VAEConfig
from .vq import VQBottleneck, VQConfig
from ..text.config import TextConfig

FAMILIES: dict[str, tuple[type, type[Bottleneck]]] = {
    "ae": (ContinuousConfig, ContinuousBottleneck),
    "vae": (VAEConfig, VAEBottleneck),
    "vq": (VQConfig, VQBottleneck),
    "cvae": (CVAEConfig, CVAEBottleneck),
    "gmvae": (GMVAEConfig, GMVAEBottleneck),
}


# Families whose code is not a bottleneck module; their model class reads these options itself.
OTHER_FAMILIES: dict[str, type] = {"text": TextConfig}


def family_config(family: str, options: dict[str, Any] | None = None):
    """The family's config dataclass filled from `options`; unknown families or keys fail loudly."""
    configs = {name: cls for name, (cls, _) in FAMILIES.items()} | OTHER_FAMILIES
    if family not in configs:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(configs)}")
    cls = configs[family]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(options or {}) - names
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for family {family!r}; known: {sorted(names)}")
    return cls(**(options or {}))


def build_bottleneck(family: str, num_codes: int, dim: int, options: dict[str, Any] | None = None) -> Bottleneck:
    return FAMILIES[family][1](num_codes, dim, family_config(family, options))


__all__ = ["Bottleneck", "BottleneckOutput", "FAMILIES", "build_bottleneck", "family_config"]
