"""Whether bf16 pays on this machine: measured, because CPUs differ.

Some CPUs have bf16 matrix units (AMX, AVX-512 BF16) and run bf16 matmuls about twice as fast as
fp32; others emulate bf16 and run it several times slower. Inference that tolerates bf16 (the
sentence encoder's embeddings agree with fp32 to a cosine of 0.9999) asks here instead of guessing.
"""

from __future__ import annotations

import time
from functools import cache

import torch


@cache
def bf16_is_fast(device: str = "cpu") -> bool:
    """True when a bf16 matmul runs clearly faster than fp32 on `device` (a few milliseconds to find out)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    a = torch.randn(256, 512)
    b = torch.randn(512, 512)
    return _seconds(a.bfloat16(), b.bfloat16()) < 0.7 * _seconds(a, b)


def _seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    a @ b  # warm-up: the first call picks kernels
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return time.perf_counter() - start
