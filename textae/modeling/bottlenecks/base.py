"""The contract every bottleneck family follows.

A family turns the encoder's K summary vectors h (B, K, D) into the code the decoder reads,
(B, K, D) floats. What users store may differ: a plain code is that tensor, a VAE stores its
posterior mean z (B, Z), a VQ model stores integer indices (B, K·H). `encode` gives the stored
code and `to_decoder` turns a stored code back into what the decoder reads.

A new family is one module: a subclass declared with its name and options dataclass,
`class ToyBottleneck(Bottleneck, family="toy", options=ToyConfig)`, registers itself
(registry.py); its constructor takes (num_codes, dim, options). The class attributes and
methods below say everything the trainer, the evaluator and the user verbs need to know about it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..registry import register_family

if TYPE_CHECKING:
    from ..model import TextAEModel


@dataclass
class BottleneckOutput:
    """One forward pass through a bottleneck.

    code: what the decoder reads (B, K, D).
    losses: named terms added to the training loss; names listed in `per_sentence` are totals
        per sentence (like a VAE's KL) that the model divides by target tokens per sentence, so
        every term is on the reconstruction loss's per-token scale.
    stats: numbers worth logging that are not optimised (the current β, a batch perplexity).
    latent: what evaluation needs to judge the latent space (posterior parameters, indices).
    """

    code: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    per_sentence: tuple[str, ...] = ()
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    latent: dict[str, torch.Tensor] = field(default_factory=dict)


class Bottleneck(nn.Module):
    """Maps the encoder's K summary vectors (B, K, D) to the code the decoder reads.

    `slot_mask` (B, K) is True where a code slot covers at least one real token; slots past the
    end of a sentence carry no information and must not shape any statistics. `condition` (B,)
    holds label ids (-1 = unknown) for conditional families; the others ignore it.
    """

    conditional: ClassVar[bool] = False  # reads a label column of the training data (options.label_column)
    find_unused_parameters: ClassVar[bool] = False  # some weights get no gradient in some steps (DDP)
    mixture_prior: ClassVar[bool] = False  # its prior is a mixture: `responsibilities` gives each code's cluster
    standard_normal_prior: ClassVar[bool] = False  # KL(q(z|x) || N(0, I)) is its KL term: the ELBO scorer applies
    infills: ClassVar[bool] = False  # transfer copies the content its encoder read and decodes only what it hid (cae)
    code_dtype: ClassVar[torch.dtype] = torch.float32
    paraphrase_scale: ClassVar[float] = 0.25  # default perturbation for paraphrasing, in `perturb`'s units
    interpolation_level: float = 0.0  # the noise level `told` gives the decoder for an interpolation's midpoint
    placed_by: ClassVar[dict[str, str]] = {}  # a flag buffer: the tensor whose placement (PCA, k-means) it records

    def __init_subclass__(cls, family: str | None = None, options: type | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if family is not None:
            if options is None:
                raise TypeError(f"{cls.__name__}: a family needs its options dataclass (options=...)")
            register_family(family, options, bottleneck=cls)

    def __init__(self, num_codes: int, dim: int):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.step = 0

    def forward(
        self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None
    ) -> BottleneckOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """A placement flag counts only with what it placed: `--init-from` a model of other sizes copies the flag
        but not the tensor, which training must then place again."""
        for flag, tensor in self.placed_by.items():
            if prefix + tensor not in state_dict:
                state_dict.pop(prefix + flag, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def content_input(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the encoder reads of a batch (ids, mask): all of it, except for families that hide some words (cae)."""
        return input_ids, attention_mask

    def read_targets(self, labels: torch.Tensor) -> None:
        """In training, the clean ids the batch about to pass must rebuild (B, T; -100 = padding), for families
        that learn from the text itself (nothing, by default)."""

    def set_vocabulary(self, tokenizer) -> None:
        """Learn what the family needs from the tokenizer beyond its ids (nothing, by default)."""

    def set_step(self, step: int) -> None:
        """The trainer calls this before every step, for families whose losses follow a schedule."""
        self.step = step

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one stored code."""
        return (self.num_codes, self.dim)

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        """The deterministic code users store."""
        return self(h, slot_mask).code

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        """Stored codes (B, *code_shape) → what the decoder reads (B, K, D)."""
        return code

    def sample_level_at(self, temperature: float) -> float:
        """The noise level `told` gives the decoder for prior samples drawn at `temperature` (a rae's kde
        scales its noise with it); 0 for a decoder trained without levels."""
        return 0.0

    @classmethod
    def saved_options(cls, options: dict, weights: set[str]) -> dict:
        """The options of a model saved by an older textae (config.json, weight names), completed with
        what was then a default: a changed default must not change what a saved model means."""
        return options

    def told(self, level: float) -> contextlib.AbstractContextManager:
        """Decode inside this block as from codes `level` standard deviations off a sentence's code,
        for a decoder trained to be told that (a rae with noise_max > 0); the others ignore it."""
        return contextlib.nullcontext()

    def check_code(self, code: torch.Tensor) -> None:
        """Raise ValueError for stored codes of the right shape and dtype whose values this family cannot read."""

    def prior_kl(self, h: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per sentence (B,) from the summaries h; zeros for families without a posterior."""
        return h.new_zeros(h.shape[0], dtype=torch.float32)

    def latent_metrics(
        self, model: TextAEModel, batches: Sequence[dict[str, torch.Tensor]], nll_samples: int = 16
    ) -> dict[str, float]:
        """Held-out numbers that reveal a collapsed latent or a dead codebook; none for plain codes."""
        return {}

    def responsibilities(self, code: torch.Tensor) -> torch.Tensor:
        """q(cluster | x) (B, C) for stored codes, for families whose prior is a mixture."""
        raise NotImplementedError("this model's prior has no clusters; train one with --family gmvae")

    @property
    def prior_sentences(self) -> int:
        """Training sentences whose codes `fit_prior` wants once training ends; 0 for families whose
        prior is not fitted after training."""
        return 0

    def fit_prior(self, codes: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Fit the ex-post prior on stored codes of training sentences; returns figures to log."""
        raise NotImplementedError(f"{type(self).__name__} has no ex-post prior")

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n stored codes drawn from the family's prior (`temperature` scales its spread); plain codes have none."""
        raise NotImplementedError("a plain autoencoder has no prior to sample from; "
                                  "train one with --family rae (configs/rae.yaml), which the README recommends for sampling")

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stored codes moved a little (paraphrasing): Gaussian noise of `scale` × the code's spread."""
        noise = torch.randn(code.shape, generator=generator, device="cpu").to(code)
        return code + scale * code.std(dim=-1, keepdim=True) * noise

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Stored codes on the way from a to b (each of code_shape), one per weight in [0, 1]."""
        w = weights.to(a).view(-1, *([1] * a.ndim))
        return (1 - w) * a + w * b
