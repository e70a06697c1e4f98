"""Pre-LayerNorm Transformer blocks on scaled-dot-product attention, with a key/value cache for decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear

KVCache = tuple[torch.Tensor, torch.Tensor]  # (B, H, T, Dh) keys and values
MemoryKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # memory keys, values, (B, 1, 1, M) mask or None


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = Linear(d_model, 3 * d_model)
        self.out = Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, Dh)
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:  # decoding: x is the one new position, which may see every cached one
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )
        b, h, t, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * dh)), (k, v)


class CrossAttention(nn.Module):
    """Attention from queries to a memory (the code vectors), with fused KV projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = Linear(d_model, d_model)
        self.kv = Linear(d_model, 2 * d_model)
        self.out = Linear(d_model, d_model)

    def memory_kv(self, memory: torch.Tensor, mask: torch.Tensor | None = None) -> MemoryKV:
        """Keys and values of the memory (B, M, d), and its padding mask (B, M; True = real) if it
        has padding; computed once per generation and reused every step. Stored contiguous: the
        attention kernel then reads them without striding (README, "Speed against BART")."""
        b, m, d = memory.shape
        k, v = self.kv(memory).view(b, m, 2, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return k.contiguous(), v.contiguous(), None if mask is None else mask[:, None, None, :]

    def forward(self, x: torch.Tensor, kv: MemoryKV) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=kv[2], dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__(Linear(d_model, ffn_dim), nn.GELU(), Linear(ffn_dim, d_model), nn.Dropout(dropout))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask=mask)[0])
        return x + self.ffn(self.ln2(x))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the code vectors, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, dropout)
        self.cross_attn = CrossAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: MemoryKV,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        h, new_cache = self.self_attn(self.ln1(x), causal=True, cache=cache)
        x = x + self.drop(h)
        x = x + self.drop(self.cross_attn(self.ln2(x), memory_kv))
        return x + self.ffn(self.ln3(x)), new_cache
