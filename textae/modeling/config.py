"""Hugging Face style configuration of a textae encoder–bottleneck–decoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PretrainedConfig

from ..tokenizer import DEFAULT_VOCAB_SIZE
from .bottlenecks import family_config


class TextAEConfig(PretrainedConfig):
    """Sizes of the encoder, the code (K vectors of size D) and the decoder, plus the bottleneck family.

    The decoder never sees the encoder's per-token states, only the K code vectors, so the
    model has to compress. Code k summarises positions k*S .. k*S+S-1 with S = max_positions / K:
    `num_codes=1` gives a single sentence vector; fewer codes mean harder compression.
    """

    model_type = "textae"

    def __init__(
        self,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        d_model: int = 128,
        n_heads: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        ffn_dim: int = 512,
        dropout: float = 0.0,
        max_positions: int = 64,
        num_codes: int = 16,
        code_dim: int = 128,
        family: str = "ae",
        bottleneck: dict[str, Any] | None = None,
        pad_token_id: int = 0,
        unk_token_id: int = 1,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        mask_token_id: int = 4,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ):
        _check_sizes(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, encoder_layers=encoder_layers,
                     decoder_layers=decoder_layers, ffn_dim=ffn_dim, max_positions=max_positions,
                     num_codes=num_codes, code_dim=code_dim, dropout=dropout)
        if bottleneck is not None and not isinstance(bottleneck, Mapping):
            raise ValueError(f"bottleneck must be a mapping of the family's options, got {bottleneck!r}; see configs/")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.max_positions = max_positions
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.family = family
        self.bottleneck = dict(bottleneck or {})
        self.unk_token_id = unk_token_id
        self.mask_token_id = mask_token_id
        family_config(family, self.bottleneck)
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def chunk_size(self) -> int:
        """S: the token positions each code vector summarises."""
        return self.max_positions // self.num_codes


def _check_sizes(dropout: float, **sizes: int) -> None:
    """Fail at construction with the option's name, not deep inside the model or after data preparation."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if sizes["d_model"] % sizes["n_heads"]:
        raise ValueError(f"d_model={sizes['d_model']} must be a multiple of n_heads={sizes['n_heads']}: "
                         "each head gets d_model / n_heads dims")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if sizes["max_positions"] % sizes["num_codes"]:
        raise ValueError(f"max_positions={sizes['max_positions']} must be a multiple of num_codes={sizes['num_codes']}: "
                         "each code summarises max_positions / num_codes positions")
