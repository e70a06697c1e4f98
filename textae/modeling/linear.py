"""`nn.Linear` whose backward pass under CPU bf16 autocast feeds the GEMM the layout it is fast at.

Why: on a CPU without bf16 units (AVX2 only, like the 2-core machines textae is developed on)
oneDNN's bf16 GEMM is fast only when the second operand is a transposed view ("NT", what
nn.Linear's forward x @ W.T is) and many times slower on plain row-major operands ("NN", what the
input gradient g @ W is), so those NN products dominated a bf16 training step. The measured layouts
are in benchmarks/results/speed.json (`matmul_peak_flops_per_s.bf16`, NN / NT / TN), the bf16 step
in `rows.default.train_bf16`. Everywhere else (fp32, GPUs, CPUs with bf16 units) this is exactly
nn.Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cpu_bf16_autocast(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def fast_bf16_operand(b: torch.Tensor) -> torch.Tensor:
    """b, the same values, as the transposed view of a contiguous copy: the layout a CPU's bf16
    GEMM is fast at as the second operand."""
    return b.T.contiguous().T


class _BF16Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            xb, wb = x.to(torch.bfloat16), weight.to(torch.bfloat16)
            y = F.linear(xb, wb, None if bias is None else bias.to(torch.bfloat16))
        ctx.save_for_backward(xb, wb)
        ctx.dtypes, ctx.has_bias = (x.dtype, weight.dtype), bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xb, wb = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            g = grad.to(torch.bfloat16).flatten(0, -2)  # (N, out)
            grad_x = (g @ fast_bf16_operand(wb)).view(*xb.shape[:-1], wb.shape[1])  # (N, out) @ (out, in)
            grad_w = g.T @ xb.flatten(0, -2)  # (out, N) @ (N, in): already a fast layout
            grad_b = g.float().sum(0) if ctx.has_bias else None
        return grad_x.to(ctx.dtypes[0]), grad_w.to(ctx.dtypes[1]), grad_b


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and cpu_bf16_autocast(x):  # the cheap test first: decoding skips the rest
            return _BF16Linear.apply(x, self.weight, self.bias)
        return super().forward(x)
