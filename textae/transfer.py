"""Style transfer with a conditional VAE: keep a sentence's content code, decode it with another label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .autoencoder import AutoEncoder
from .errors import TextAEError


def require_cvae(ae: AutoEncoder, verb: str) -> None:
    if ae.family != "cvae":
        raise TextAEError(f"{verb} needs a conditional model; this one is '{ae.family}'. "
                          "Train one with --family cvae on data with a label column")


def labels(ae: AutoEncoder) -> list[str]:
    """The labels a conditional model knows, in id order."""
    require_cvae(ae, "labels")
    return list(ae.model.bottleneck.cfg.labels)


def predict_labels(ae: AutoEncoder, texts: Sequence[str], batch_size: int = 128) -> list[str]:
    """The model's own guess of each text's label (its q(y|x) classifier)."""
    require_cvae(ae, "predict_labels")
    _, probs = ae.model.bottleneck.split(torch.as_tensor(ae.encode(texts, batch_size=batch_size)))
    return [labels(ae)[i] for i in probs.argmax(-1).tolist()]


def transfer(
    ae: AutoEncoder, texts: Sequence[str], to: str, batch_size: int = 128, progress: bool = False, **generate: Any
) -> list[str]:
    """Each text rewritten toward label `to`: its content code decoded with that label, in input order."""
    known = labels(ae)
    if to not in known:
        raise TextAEError(f"unknown label {to!r}; this model knows {', '.join(known)}")
    codes = ae.code_tensor(ae.encode(texts, batch_size=batch_size, progress=progress))
    moved = ae.model.bottleneck.with_label(codes, known.index(to))
    return ae.decode(moved, batch_size=batch_size, progress=progress, **generate)
