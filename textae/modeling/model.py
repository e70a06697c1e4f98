"""The textae encoder → bottleneck → decoder model.

Data flow for a batch of B sentences of T ≤ P tokens (P = max_positions, S = P / K):
  tokens (B, T) → Transformer encoder (B, T, d) → padded to P and cut into K chunks of S
  positions (B, K, S·d) → each chunk projected to one code vector (B, K, D) → bottleneck family
  → code (B, K, D) → projected back (B, K, d) = the decoder's memory → causal Transformer
  decoder → logits (B, T, V).
The decoder cross-attends only to the K code vectors, and position t also adds code t // S to
its input; it never sees per-token encoder states, so the code must carry the whole sentence.

Why chunks rather than K learned queries attending over the sentence: the projection keeps
word order inside a chunk for free, and the decoder finds each word's code from its position,
so nothing has to discover the routing first (the measurements: README, "Why chunks").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .bottlenecks import build_bottleneck
from .config import TextAEConfig
from .generation import DecoderMemory, linear_argmax
from .layers import EncoderLayer
from .linear import Linear
from .loss import linear_cross_entropy
from .pretrained import TextAEPreTrainedModel


@dataclass
class TextAEOutput(ModelOutput):
    """`loss` is the sum of the named terms in `losses`; `code` is what the decoder read; `stats` and
    `latent` are the bottleneck's numbers to log and its latent variables (see BottleneckOutput).
    `adversary_loss` (the sum of `adversary_losses`) trains only the weights of
    `adversary_parameter_groups()`, by their own optimiser; it is logged apart from `loss`."""

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    code: torch.Tensor | None = None
    stats: dict[str, torch.Tensor] | None = None
    latent: dict[str, torch.Tensor] | None = None
    adversary_loss: torch.Tensor | None = None
    adversary_losses: dict[str, torch.Tensor] | None = None


class TextAEModel(TextAEPreTrainedModel):
    """The encoder → bottleneck → decoder model every bottleneck family shares (see the module docstring)."""

    def __init__(self, config: TextAEConfig):
        super().__init__(config)
        d = config.d_model
        self._build_embeddings(config)
        self.encoder = nn.ModuleList(
            EncoderLayer(d, config.n_heads, config.ffn_dim, config.dropout) for _ in range(config.encoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(d)
        self.to_code = Linear(d * config.chunk_size, config.code_dim)  # the compression step
        self.bottleneck = build_bottleneck(config.family, config.num_codes, config.code_dim, config.bottleneck)
        self.from_code = Linear(config.code_dim, d)
        self.memory_norm = nn.LayerNorm(d)
        self.code_to_input = Linear(d, d)
        self._build_decoder(config)
        self.post_init()

    @property
    def find_unused_parameters(self) -> bool:  # type: ignore[override]
        return self.bottleneck.find_unused_parameters

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        return self.bottleneck.conditional

    def set_vocabulary(self, tokenizer) -> None:  # type: ignore[override]
        self.bottleneck.set_vocabulary(tokenizer)

    # ----- encoder side -------------------------------------------------------------------
    def chunk_summaries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) → K summary vectors projected to the code size (B, K, D), and the slot
        mask (B, K): True where the slot's chunk holds at least one real token."""
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"input has {input_ids.shape[1]} tokens; this model takes at most {self.config.max_positions}")
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        input_ids, attention_mask = self.bottleneck.content_input(input_ids, attention_mask)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.embed_tokens(input_ids) + self.embed_positions(pos))
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = attend
        for layer in self.encoder:
            x = layer(x, mask)
        x = self.encoder_norm(x).masked_fill(~attention_mask.bool()[..., None], 0.0)
        b, t, d = x.shape
        x = F.pad(x, (0, 0, 0, self.config.max_positions - t))  # (B, P, d)
        starts = torch.arange(self.config.num_codes, device=x.device) * self.config.chunk_size
        slot_mask = starts[None, :] < attention_mask.sum(1, keepdim=True)  # (B, K)
        return self.to_code(x.reshape(b, self.config.num_codes, self.config.chunk_size * d)), slot_mask

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic codes to store or decode later: (B, K, D) floats for the plain family, the
        posterior mean (B, Z) for a VAE, integers (B, K·heads) for VQ."""
        return self.bottleneck.encode(*self.chunk_summaries(input_ids, attention_mask))

    def set_training_step(self, step: int) -> None:
        """Tell schedule-driven losses (a VAE's β) which optimiser step comes next."""
        super().set_training_step(step)
        self.bottleneck.set_step(step)

    def latent_metrics(self, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16) -> dict[str, float]:
        """The bottleneck family's latent-space metrics ({} for plain codes)."""
        return self.bottleneck.latent_metrics(self, batches, nll_samples)

    @property
    def prior_sentences(self) -> int:
        return self.bottleneck.prior_sentences

    def fit_prior(self, codes: torch.Tensor, seed: int = 0) -> dict[str, float]:
        return self.bottleneck.fit_prior(codes, seed)

    # ----- decoder side -------------------------------------------------------------------
    def decoder_code(self, code: torch.Tensor) -> torch.Tensor:
        """Stored codes → the code vectors the decoder reads (B, K, D)."""
        return self.bottleneck.to_decoder(code)

    def decoder_memory(self, code: torch.Tensor) -> DecoderMemory:
        """Code (B, K, D) → per-layer cross-attention keys/values, and what every decoder position
        adds to its token embedding (B, P, d): its position embedding plus the code of its own
        chunk, t // S, read directly. Both are computed once per batch and reused every step."""
        memory = self.memory_norm(self.from_code(code))  # (B, K, d)
        kvs = [layer.cross_attn.memory_kv(memory) for layer in self.decoder]
        chunk_bias = self.code_to_input(memory).repeat_interleave(self.config.chunk_size, dim=1)  # (B, P, d)
        return DecoderMemory(kvs, chunk_bias + self.embed_positions.weight)

    def output_logits(self, hidden: torch.Tensor, memory: DecoderMemory | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) from decoder states (the generation contract; see generation.py)."""
        return self.lm_head(hidden)

    def greedy_tokens(self, hidden: torch.Tensor, memory: DecoderMemory | None = None) -> torch.Tensor:
        """argmax of `output_logits` for decoder states (B, d), without building (B, V) logits."""
        return linear_argmax(hidden, self.lm_head.weight)

    def sequence_log_likelihood(self, code: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log p(labels | code) summed per sentence (B,), for a code as the decoder reads it (B, K, D)."""
        hidden, _ = self.decoder_states(self.shift_right(labels), 0, self.decoder_memory(code))
        scored = labels.ne(-100)  # padding gets no logits: the (N, V) projection is most of the cost
        nll = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
        nll[scored] = F.cross_entropy(self.lm_head(hidden[scored]).float(), labels[scored], reduction="none")
        return -nll.sum(1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
        return_logits: bool | None = None,
    ) -> TextAEOutput:
        """Reconstruct `labels` (B, T; -100 = ignore) from the code of `input_ids` (possibly noised).

        `decoder_input_ids` defaults to `labels` shifted right; pass them to apply word dropout.
        `condition` (B,) gives conditional families each row's label id (-1 = unknown).
        `return_logits` defaults to False when training with labels and gradients on: the loss is
        then fused with the output projection (loss.py, which computes its gradients in the forward
        pass) and the (B, T, V) logits are never built; True elsewhere.
        """
        if labels is not None and self.training:
            self.bottleneck.read_targets(labels)
        bottleneck = self.bottleneck(*self.chunk_summaries(input_ids, attention_mask), condition)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass labels or decoder_input_ids")
            decoder_input_ids = self.shift_right(labels)
        hidden, _ = self.decoder_states(decoder_input_ids, 0, self.decoder_memory(bottleneck.code))
        if return_logits is None:
            return_logits = labels is None or not (self.training and torch.is_grad_enabled())
        logits = self.lm_head(hidden) if return_logits else None
        losses = dict(bottleneck.losses)
        loss = None
        if labels is not None:
            # Per-sentence terms (a VAE's KL) go on the per-token scale of the reconstruction loss:
            # the sum is then the negative ELBO per target token.
            tokens_per_sentence = labels.ne(-100).sum().clamp(min=1) / labels.shape[0]
            for name in bottleneck.per_sentence:
                losses[name] = losses[name] / tokens_per_sentence
            if logits is None:
                reconstruction = linear_cross_entropy(hidden.flatten(0, 1), self.lm_head.weight, labels.flatten())
            else:
                reconstruction = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
            losses = {"reconstruction": reconstruction, **losses}
            loss = sum(losses.values())
        return TextAEOutput(
            loss=loss, losses=losses, logits=logits, code=bottleneck.code, stats=bottleneck.stats, latent=bottleneck.latent
        )
