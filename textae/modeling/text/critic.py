"""What keeps the middle text readable: a WGAN-GP critic and an optional language-model prior.

Both read token embeddings rather than ids, so the Gumbel estimator can pass gradients through
gated embeddings and the gradient penalty can interpolate between real and generated text.
Both train on the corpus's own sentences only, with the family's second optimiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..layers import EncoderLayer


class _Embedded(nn.Module):
    """Token + position embeddings followed by Transformer layers, with its own small width."""

    def __init__(self, vocab_size: int, max_positions: int, d: int, n_layers: int, n_heads: int = 4):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, d)
        self.embed_positions = nn.Embedding(max_positions, d)
        self.layers = nn.ModuleList(EncoderLayer(d, n_heads, 4 * d, 0.0) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)

    def embed(self, ids: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M) ids → (B, M, d); gated tokens are scaled by their gate (1 forward, a gradient back)."""
        x = self.embed_tokens(ids)
        return x if gates is None else x * gates[..., None]

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, M, d) embeddings + (B, M) or (B, 1, M, M) mask → (B, M, d)."""
        x = x + self.embed_positions(torch.arange(x.shape[1], device=x.device))
        attn = mask[:, None, None, :] if mask.dim() == 2 else mask
        for layer in self.layers:
            x = layer(x, attn)
        return self.norm(x)


class Critic(_Embedded):
    """Wasserstein critic: a higher score means more like a run of real words from the corpus."""

    def __init__(self, vocab_size: int, max_positions: int, d: int, n_layers: int):
        super().__init__(vocab_size, max_positions, d, n_layers)
        self.score = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, M, d) embeddings → (B,) scores (mean over real positions)."""
        h = self.hidden(x, mask) * mask[..., None]
        return self.score(h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)).squeeze(-1)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean (‖∇ D(x̂)‖ − 1)² at random points x̂ between real and
    fake embeddings (B, M, d); create_graph so the penalty trains the critic."""
    alpha = torch.rand(real.shape[0], 1, 1, device=real.device, generator=generator)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no second derivative
        (grad,) = torch.autograd.grad(critic(mixed, mask).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class PriorLM(_Embedded):
    """A small causal language model of the corpus; the prior term is its NLL of the middle text."""

    def __init__(self, vocab_size: int, max_positions: int, d: int, n_layers: int, bos_id: int):
        super().__init__(vocab_size, max_positions, d, n_layers)
        self.bos_id = bos_id
        self.head = nn.Linear(d, vocab_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per real token of each sequence (B,), reading BOS + ids[:-1] (gated if given)."""
        bos = torch.full_like(ids[:, :1], self.bos_id)
        x = self.embed(torch.cat([bos, ids[:, :-1]], 1))
        if gates is not None:
            x = x * torch.cat([torch.ones_like(gates[:, :1]), gates[:, :-1]], 1)[..., None]
        m = ids.shape[1]
        causal = torch.ones(m, m, dtype=torch.bool, device=ids.device).tril()
        logits = self.head(self.hidden(x, causal[None, None]))
        nll = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten(), reduction="none").view_as(ids)
        return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)

    def transitions(self, ids: torch.Tensor, needed: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, T) log p(ids[b, j] | BOS + ids[b, :t]) for every context length t < T and token j of
        sentences `ids` (B, T): how well each token would follow each prefix, from one causal pass.
        The vocabulary's normaliser is the costly part; with `needed` (B, T) it is computed only for
        those context lengths, and the other rows are left unnormalised (not log-probabilities)."""
        bos = torch.full_like(ids[:, :1], self.bos_id)
        m = ids.shape[1]
        causal = torch.ones(m, m, dtype=torch.bool, device=ids.device).tril()
        hidden = self.hidden(self.embed(torch.cat([bos, ids[:, :-1]], 1)), causal[None, None]).float()  # (B, T, d)
        chosen = hidden @ self.head.weight[ids].float().transpose(1, 2) + self.head.bias[ids].float()[:, None, :]
        if needed is None:
            needed = torch.ones_like(ids, dtype=torch.bool)
        norm = torch.zeros(ids.shape, device=ids.device)
        norm[needed] = torch.logsumexp(self.head(hidden[needed]).float(), -1)
        return chosen - norm[..., None]
