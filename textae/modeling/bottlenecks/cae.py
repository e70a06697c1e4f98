"""Conditional autoencoder on content: a label's markers are deleted from the input, the decoder is told the label.

The encoder never reads the words that mark a label (`textae.markers`: n-grams many times more
frequent in one label's rows than in the others', found on the training split when training
starts); each run of them becomes one <mask>. What it reads is the sentence's content, and its code
is the plain per-slot code (num_codes × code_dim floats), so the content is kept as well as a plain
autoencoder keeps it. The decoder reads that code plus an offset learned per label, so it must write
the label's markers back itself: decoded with another label it writes that label's markers around
the same content (style transfer, `textae transfer`; "Delete, Retrieve, Generate", Li et al. 2018).
Where the cvae family hides the label from a small latent with an adversary, here it is simply not
in the input. Between keeping content and changing label, `marker_ratio` (at training: how much is
deleted) and transfer's label weight (`textae.edits`) are the knobs.

The stored code is [the flattened content code ; p], p a distribution over labels: one-hot when the
label is known, else the vote of the markers the input held (uniform when it held none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...markers import MarkerTable
from ...tokenizer import SPECIAL_TOKENS, word_starts
from .base import Bottleneck, BottleneckOutput
from .cvae import LabelledCode

VOTE_PRIOR = 0.1  # added to each label's marker count before normalising: no marker → uniform
MASK_ID = list(SPECIAL_TOKENS).index("mask_token")  # every textae tokenizer has the same special ids
PAD_ID = list(SPECIAL_TOKENS).index("pad_token")


@dataclass
class CAEConfig:
    label_column: str = "label"  # the training data's column of labels
    labels: list[str] = field(default_factory=list)  # the label vocabulary; training fills it from the data
    marker_ratio: float = 5.0  # an n-gram marks a label when its share of that label's rows is this many times its share elsewhere
    marker_min_count: int = 3  # ... and it occurs in at least this many of that label's rows
    marker_max_words: int = 3  # the longest marker, in words
    markers: list[list[int]] = field(default_factory=list)  # [label id, token ids...]; training fills them
    vocab_size: int = 0  # training fills it: the size of the word-boundary table the markers are matched with
    exemplars_per_label: int = 512  # sentences kept per label a whole message carries (typical lead >= textae.exemplars.INSERT_LEAD)
    exemplars: list[list[int]] = field(default_factory=list)  # [label id, token ids...]; training fills them
    typical_leads: list[float] = field(default_factory=list)  # per label, the median lead of its rows; training fills them
    normalize: bool = True  # parameter-free LayerNorm per code vector, as the plain family

    def __post_init__(self):
        if self.marker_ratio <= 1 or self.marker_min_count < 1 or self.marker_max_words < 1:
            raise ValueError("marker_ratio must be above 1, marker_min_count and marker_max_words at least 1")
        if self.exemplars_per_label < 0:
            raise ValueError(f"exemplars_per_label must be 0 or more, got {self.exemplars_per_label}")


class CAEBottleneck(LabelledCode, Bottleneck, family="cae", options=CAEConfig):
    conditional = True
    infills = True
    paraphrase_scale = 0.25

    def __init__(self, num_codes: int, dim: int, cfg: CAEConfig):
        super().__init__(num_codes, dim)
        if len(cfg.labels) < 2:
            raise ValueError(f"a cae needs at least two labels, got {cfg.labels}; train it on data whose "
                             f"'{cfg.label_column}' column holds them")
        self.cfg = cfg
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if cfg.normalize else nn.Identity()
        self.label_to_code = nn.Linear(len(cfg.labels), num_codes * dim, bias=False)
        nn.init.zeros_(self.label_to_code.weight)  # from a trained autoencoder, the decoder first reads the code it knows
        self.label_to_code._is_hf_initialized = True  # post_init keeps those zeros
        self.register_buffer("word_start", torch.zeros(cfg.vocab_size, dtype=torch.bool))
        self.mask_id = MASK_ID
        self._table: MarkerTable | None = None
        self._votes: torch.Tensor | None = None  # the last input's marker votes (B, C), read by encode

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.num_codes * self.dim + self.num_labels,)

    def set_vocabulary(self, tokenizer) -> None:
        self.word_start.copy_(torch.tensor(word_starts(tokenizer)[: self.cfg.vocab_size]))
        self._table = None

    @property
    def table(self) -> MarkerTable:
        if self._table is None:
            self._table = MarkerTable(self.cfg.markers, self.num_labels, self.word_start.tolist())
        return self._table

    def content_input(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input with every label's markers deleted (each run → one <mask>); keeps the votes for `encode`."""
        rows, votes = [], []
        for ids, keep in zip(input_ids.tolist(), attention_mask.bool().tolist()):
            content, vote = self.table.delete([t for t, k in zip(ids, keep) if k], self.mask_id)
            rows.append(content)
            votes.append(vote)
        out = input_ids.new_full((len(rows), max(map(len, rows))), PAD_ID)
        mask = torch.zeros_like(out, dtype=attention_mask.dtype)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=out.dtype)
            mask[i, : len(r)] = 1
        v = torch.tensor(votes, dtype=torch.float32, device=input_ids.device) + VOTE_PRIOR
        self._votes = v / v.sum(-1, keepdim=True)
        return out, mask

    def _label_probs(self, n: int, condition: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        votes = self._votes if self._votes is not None and len(self._votes) == n else torch.full(
            (n, self.num_labels), 1.0 / self.num_labels, device=device)
        if condition is None:
            return votes
        known = condition.ge(0)
        return torch.where(known[:, None], F.one_hot(condition.clamp(min=0), self.num_labels).to(votes), votes)

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        content = self.norm(h)
        p = self._label_probs(len(h), condition, h.device)
        return BottleneckOutput(code=self._read(content, p))

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        p = self._label_probs(len(h), None, h.device)
        return torch.cat([self.norm(h).flatten(1), p.to(h.dtype)], dim=-1)

    def _read(self, content: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        offset = self.label_to_code(p.to(content.dtype)).view(len(content), self.num_codes, self.dim)
        return self.norm(content + offset)

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        content, p = self.split(code)
        return self._read(content.view(len(code), self.num_codes, self.dim), p)

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Moves the content only; the label stays."""
        content, p = self.split(code)
        noise = torch.randn(content.shape, generator=generator, device="cpu").to(content)
        return torch.cat([content + scale * noise, p], dim=-1)
