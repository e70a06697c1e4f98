"""Hugging Face style configuration of a textae encoder–bottleneck–decoder."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .bottlenecks import family_config


class TextAEConfig(PretrainedConfig):
    """Sizes of the encoder, the code (K vectors of size D) and the decoder, plus the bottleneck family.

    The decoder never sees the encoder's per-token states, only the K code vectors, so the
    model has to compress: `num_codes=1` gives a single sentence vector.
    """

    model_type = "textae"

    def __init__(
        self,
        vocab_size: int = 8000,
        d_model: int = 256,
        n_heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        max_positions: int = 128,
        num_codes: int = 8,
        code_dim: int = 256,
        family: str = "ae",
        bottleneck: dict[str, Any] | None = None,
        code_to_inputs: bool = True,
        code_locality: float = 0.0,
        pad_token_id: int = 0,
        unk_token_id: int = 1,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        mask_token_id: int = 4,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ):
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
        self.code_to_inputs = code_to_inputs
        self.code_locality = code_locality
        self.unk_token_id = unk_token_id
        self.mask_token_id = mask_token_id
        family_config(family, self.bottleneck)  # fail at construction, not deep inside the model
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
