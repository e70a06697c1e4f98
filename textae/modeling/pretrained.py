"""What every textae model shares: token and position embeddings, the causal decoder, and generation.

A model family with a model class of its own (the text family) subclasses `TextAEPreTrainedModel`
like `TextAEModel` does, and provides the decoding contract of `generation.Decodable`:
`decoder_memory(code)`, `output_logits(hidden, memory)`, `greedy_tokens(hidden, memory)`.
The hooks below (`set_vocabulary`, `adversary_parameter_groups`, `latent_metrics`, ...) are what the
trainer and the evaluator call on every model, so they never ask which family they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import TextAEConfig
from .generation import DecoderMemory, beam_search, greedy_or_sample, inference
from .layers import DecoderLayer, KVCache


class TextAEPreTrainedModel(PreTrainedModel):
    config_class = TextAEConfig
    base_model_prefix = "textae"
    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}
    find_unused_parameters: ClassVar[bool] = False  # some weights get no gradient in some steps (DDP)
    conditional: ClassVar[bool] = False  # reads a label column of the training data
    infills: ClassVar[bool] = False  # deletes its labels' markers from its input (a cae bottleneck)
    init_aliases: ClassVar[dict[str, str]] = {}  # --init-from: weight prefixes filled from another prefix

    def _build_embeddings(self, config: TextAEConfig) -> None:
        d = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_positions, d)
        self.drop = nn.Dropout(config.dropout)

    def _build_decoder(self, config: TextAEConfig) -> None:
        d = config.d_model
        self.decoder = nn.ModuleList(
            DecoderLayer(d, config.n_heads, config.ffn_dim, config.dropout) for _ in range(config.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # ----- hooks the trainer and evaluator call on every model ----------------------------
    def set_vocabulary(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Learn what the model needs from the tokenizer beyond its ids (nothing, by default)."""

    def set_training_step(self, step: int) -> None:
        """Tell schedule-driven losses which optimiser step comes next."""
        self.step = step

    def adversary_parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (with their own lr / betas) of weights trained by a second
        optimiser on the output's `adversary_loss` only, e.g. a discriminator; none by default."""
        return []

    def latent_metrics(self, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16) -> dict[str, float]:
        """Held-out numbers about the code space (active units, codebook usage, ...); none by default."""
        return {}

    @property
    def prior_sentences(self) -> int:
        """How many training sentences' codes `fit_prior` wants once training ends (0: no ex-post prior)."""
        return 0

    def fit_prior(self, codes: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Fit the ex-post prior on stored codes (what `encode` returns) of training sentences."""
        raise NotImplementedError(f"{type(self).__name__} has no ex-post prior")

    # ----- decoder side -------------------------------------------------------------------
    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs: BOS followed by the labels, ignored positions turned into padding."""
        start = labels.new_full((labels.shape[0], 1), self.config.bos_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted.eq(-100), self.config.pad_token_id)

    def decoder_states(
        self, tokens: torch.Tensor, start: int, memory: DecoderMemory, caches: list[KVCache] | None = None
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """Decoder hidden states (B, T, d) for `tokens` (B, T) placed at positions start..start+T-1."""
        x = self.drop(self.embed_tokens(tokens) + memory.position_inputs[:, start : start + tokens.shape[1]])
        new_caches = []
        for i, layer in enumerate(self.decoder):
            x, c = layer(x, memory.kvs[i], None if caches is None else caches[i])
            new_caches.append(c)
        return self.decoder_norm(x), new_caches

    def decoder_code(self, code: torch.Tensor) -> torch.Tensor:
        """A stored code (what `encode` returns) → what `decoder_memory` reads; the same by default."""
        return code

    def decoder_memory(self, code: torch.Tensor) -> DecoderMemory:  # pragma: no cover - interface
        raise NotImplementedError

    @inference
    def generate(
        self,
        code: torch.Tensor,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        length_penalty: float = 1.0,
        generator: torch.Generator | None = None,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Decode stored codes (what `encode` returns) into token ids (B, T) ending in EOS, padded with PAD.

        Greedy by default; `num_beams > 1` runs beam search, `do_sample` samples with
        temperature / top-k / top-p; `repetition_penalty` > 1 discourages tokens already produced.
        Every step reuses the self-attention key/value cache.
        """
        max_new_tokens = min(max_new_tokens or self.config.max_positions, self.config.max_positions)
        code = self.decoder_code(code)
        if num_beams > 1:
            if do_sample:
                raise ValueError("beam search with sampling is not supported; pick num_beams=1 or do_sample=False")
            return beam_search(self, code, max_new_tokens, num_beams, length_penalty, repetition_penalty)
        return greedy_or_sample(self, code, max_new_tokens, do_sample, temperature, top_k, top_p, generator, repetition_penalty)
