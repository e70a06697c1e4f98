"""Open a model as the front end it needs: texts ↔ codes for vector codes, summaries for text codes."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from .autoencoder import AutoEncoder, load_model
from .modeling import TextAEPreTrainedModel, TextCodeModel
from .textcodec import TextCodec
from .tokenizer import load_tokenizer


def wrap(model: TextAEPreTrainedModel, tokenizer: PreTrainedTokenizerBase,
         device: str | torch.device | None = None) -> AutoEncoder:
    """TextCodec for a model whose codes are texts, AutoEncoder for every other."""
    front_end = TextCodec if isinstance(model, TextCodeModel) else AutoEncoder
    return front_end(model, tokenizer, device)


def load(path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
    """Load a trained model directory (safetensors weights only) in one call."""
    front = wrap(load_model(path), load_tokenizer(path), device)
    front.path = Path(path)
    return front
