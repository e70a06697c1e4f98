"""Conditional VAE: a content latent z that carries no label, plus a label the decoder reads.

The stored code is [z ; p] with p a distribution over the labels: one-hot when the label is
known, the model's own guess q(y|x) otherwise. Swapping p for another label's one-hot and
decoding is style transfer (`textae transfer`).

Three terms keep the two parts apart:
- `label`: a classifier on the encoder's summary vectors learns q(y|x) from labelled rows, so
  unlabelled text still gets a label to decode with;
- `adversary`: a small network learns to predict the label from z (its input detached, so this
  term trains only the adversary);
- `leak`: the encoder is pushed to make that adversary's guess uniform (its parameters frozen
  for this term), i.e. log C − entropy of the guess, 0 when z tells nothing about the label
  (the entropy form of John et al. 2019, steadier than a reversed gradient).
Without the adversary the decoder learns to ignore p, since z already says everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .base import BottleneckOutput
from .vae import VAEBottleneck, VAEConfig

UNKNOWN = -1  # condition id of a row without a label


@dataclass
class CVAEConfig(VAEConfig):
    label_column: str = "label"  # the training data's column of labels
    labels: list[str] = field(default_factory=list)  # the label vocabulary; training fills it from the data
    classifier_weight: float = 1.0  # weight of `label`, the q(y|x) classifier's cross-entropy
    adversary_weight: float = 1.0  # weight of `leak`, the penalty on label information in z
    adversary_hidden: int = 128


def label_ids(values: list, labels: list[str]) -> list[int]:
    """Each value's index in `labels` (compared as strings); UNKNOWN for missing or unseen values."""
    index = {label: i for i, label in enumerate(labels)}
    return [UNKNOWN if v is None else index.get(str(v), UNKNOWN) for v in values]


class LabelledCode:
    """Stored codes that end in a distribution over the labels `self.cfg.labels` (cvae, cae): what
    transfer reads and sets."""

    @property
    def num_labels(self) -> int:
        return len(self.cfg.labels)

    def split(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored codes → (content, p (B, C))."""
        return code[..., : -self.num_labels], code[..., -self.num_labels :]

    def with_label(self, code: torch.Tensor, label: int) -> torch.Tensor:
        """The same content codes with every label part set to one label."""
        content, p = self.split(code)
        return torch.cat([content, F.one_hot(torch.full(p.shape[:-1], label, device=p.device), self.num_labels).to(p)], dim=-1)


class CVAEBottleneck(LabelledCode, VAEBottleneck, family="cvae", options=CVAEConfig):
    conditional = True
    find_unused_parameters = True  # a batch without labels leaves the classifier untouched
    standard_normal_prior = False  # its decoder also reads the label, which the ELBO bound and scorer leave out
    def __init__(self, num_codes: int, dim: int, cfg: CVAEConfig):
        super().__init__(num_codes, dim, cfg)
        if len(cfg.labels) < 2:
            raise ValueError(
                f"a cvae needs at least two labels, got {cfg.labels}; train it on data whose "
                f"'{cfg.label_column}' column holds them"
            )
        n = len(cfg.labels)
        self.label_to_code = nn.Linear(n, num_codes * dim, bias=False)  # p → an offset of every code vector
        self.classifier = nn.Linear(num_codes * dim, n)
        self.adversary = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.adversary_hidden), nn.ReLU(), nn.Linear(cfg.adversary_hidden, n)
        )

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.cfg.latent_dim + self.num_labels,)

    def label_probs(self, h: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """p (B, C): one-hot where `condition` names a label, the classifier's q(y|x) elsewhere."""
        probs = self.classifier(h.flatten(1)).float().softmax(-1)
        if condition is None:
            return probs
        known = condition.ge(0)
        return torch.where(known[:, None], F.one_hot(condition.clamp(min=0), self.num_labels).to(probs), probs)

    def stored_code(self, z: torch.Tensor, h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([z, self.label_probs(h, condition).to(z)], dim=-1)

    def forward(self, h: torch.Tensor, slot_mask: torch.Tensor, condition: torch.Tensor | None = None) -> BottleneckOutput:
        out = super().forward(h, slot_mask, condition)
        mu = out.latent["mu"].float()
        frozen = {k: v.detach() for k, v in self.adversary.named_parameters()}
        guess = functional_call(self.adversary, frozen, (mu,)).log_softmax(-1)  # gradients reach the encoder only
        entropy = -(guess.exp() * guess).sum(-1)
        out.losses["leak"] = self.cfg.adversary_weight * (math.log(self.num_labels) - entropy).mean()
        known = condition.ge(0) if condition is not None else torch.zeros(len(mu), dtype=torch.bool, device=mu.device)
        if known.any():
            y = condition[known]
            adversary_logits = self.adversary(mu.detach()[known])
            out.losses["adversary"] = F.cross_entropy(adversary_logits, y)
            out.losses["label"] = self.cfg.classifier_weight * F.cross_entropy(self.classifier(h.flatten(1)[known]).float(), y)
            out.stats["adversary_accuracy"] = adversary_logits.argmax(-1).eq(y).float().mean().detach()
        else:  # keep the logged names stable; nothing to learn from unlabelled rows
            out.losses["adversary"] = out.losses["label"] = mu.new_zeros(())
        return out

    def encode(self, h: torch.Tensor, slot_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.posterior(h)[0], self.label_probs(h).to(h.dtype)], dim=-1)

    def to_decoder(self, code: torch.Tensor) -> torch.Tensor:
        z, p = self.split(code)
        x = self.from_latent(z) + self.label_to_code(p.to(z.dtype))
        return self.norm(x.view(code.shape[0], self.num_codes, self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        z = temperature * torch.randn(n, self.cfg.latent_dim, generator=generator)
        labels = torch.randint(self.num_labels, (n,), generator=generator)
        return torch.cat([z, F.one_hot(labels, self.num_labels).float()], dim=-1)

    def perturb(self, code: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Moves the content z only; the label stays."""
        z, p = self.split(code)
        return torch.cat([super().perturb(z, scale, generator), p], dim=-1)
