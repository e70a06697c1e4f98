"""Style transfer with a conditional VAE: keep a sentence's content code, decode it with another label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .autoencoder import AutoEncoder
from .errors import TextAEError


def require_cvae(ae: AutoEncoder, verb: str) -> None:
    if not ae.model.conditional:
        raise TextAEError(f"{verb} needs a conditional model; this one is '{ae.family}'. "
                          "Train one with --family cvae on data with a label column")


def labels(ae: AutoEncoder) -> list[str]:
    """The labels a conditional model knows, in id order."""
    require_cvae(ae, "labels")
    return list(ae.model.bottleneck.cfg.labels)


def label_index(ae: AutoEncoder, label: str) -> int:
    """The id of a label the model knows; an unknown one is a clear error."""
    known = labels(ae)
    if label not in known:
        raise TextAEError(f"unknown label {label!r}; this model knows {', '.join(known)}")
    return known.index(label)


def label_names(ae: AutoEncoder, codes: np.ndarray) -> list[str]:
    """The label each stored code carries: the model's own guess for encoded text (its q(y|x))."""
    _, probs = ae.model.bottleneck.split(torch.as_tensor(codes))
    return [labels(ae)[i] for i in probs.argmax(-1).tolist()]


def decode_as(ae: AutoEncoder, codes: np.ndarray, to: str, batch_size: int = 128, progress: bool = False,
              **generate: Any) -> list[str]:
    """Stored codes decoded with label `to` in place of their own, in input order."""
    moved = ae.model.bottleneck.with_label(ae.code_tensor(codes), label_index(ae, to))
    return ae.decode(moved, batch_size=batch_size, progress=progress, **generate)


def predict_labels(ae: AutoEncoder, texts: Sequence[str], batch_size: int = 128) -> list[str]:
    """The model's own guess of each text's label (its q(y|x) classifier)."""
    require_cvae(ae, "predict_labels")
    return label_names(ae, ae.encode(texts, batch_size=batch_size))


def transfer(
    ae: AutoEncoder, texts: Sequence[str], to: str, batch_size: int = 128, progress: bool = False, **generate: Any
) -> list[str]:
    """Each text rewritten toward label `to`: its content code decoded with that label, in input order."""
    label_index(ae, to)  # a bad label fails before any encoding
    codes = ae.encode(texts, batch_size=batch_size, progress=progress)
    return decode_as(ae, codes, to, batch_size, progress, **generate)
