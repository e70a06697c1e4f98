"""The reconstruction loss fused with the output projection: cross-entropy of `hidden @ weight.T`
without keeping the (N, V) logits.

Why: on this CPU the plain path (linear → log_softmax → NLL, then their backward) spends much of
its time on the logits outside the matmuls: log_softmax, its backward and the zeroed (N, V)
gradient of the NLL each walk all N·V floats, and exp runs twice (the A/B is in the README,
"Speed against BART"; step times in benchmarks/results/speed.json, `rows.default.train_fp32`).
Here each chunk of rows gets its logits, one exp, and its gradients at once (the idea of Liger
Kernel's FusedLinearCrossEntropy and of Apple's Cut Cross-Entropy): softmax − one-hot is the logits'
gradient, so the backward pass only scales what the forward already computed. Peak memory drops
from N·V logits to `chunk_rows`·V, which is what matters for large vocabularies on a GPU.
"""

from __future__ import annotations

import torch

from .linear import fast_bf16_operand


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_rows: int) -> torch.Tensor:
        device = hidden.device.type
        # Under autocast the matmuls run in its dtype, as nn.Linear's would; the softmax in fp32.
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            # The input gradient's GEMM in the layout a CPU's bf16 kernel is fast at (see linear.py).
            w_back = fast_bf16_operand(w) if device == "cpu" and dtype == torch.bfloat16 else w
            valid = labels.ne(-100)
            scale = 1.0 / valid.sum().clamp(min=1)  # mean over the tokens that count
            weights = valid * scale  # (N,) each row's share of the loss
            targets = labels.clamp(min=0).unsqueeze(1)  # (N, 1); ignored rows weigh 0
            # One logits buffer for every chunk, and the gradients written in place: fresh (n, V)
            # and (V, d) tensors per chunk cost page faults and copies (README, "Speed against BART").
            buffer = h.new_empty(min(chunk_rows, h.shape[0]), w.shape[0])
            grad_hidden = h.new_empty(h.shape)
            grad_weight = torch.zeros_like(weight, dtype=torch.float32)
            loss = hidden.new_zeros((), dtype=torch.float32)
            for s in range(0, h.shape[0], chunk_rows):
                hc, tc, wc = h[s : s + chunk_rows], targets[s : s + chunk_rows], weights[s : s + chunk_rows, None]
                logits = torch.mm(hc, w.T, out=buffer[: hc.shape[0]]).float()  # (n, V)
                top = logits.amax(-1, keepdim=True)
                picked = logits.gather(1, tc)
                probs = logits.sub_(top).exp_()  # in place: one exp, no second (n, V) tensor
                total = probs.sum(-1, keepdim=True)
                loss += ((top + total.log() - picked) * wc).sum()  # −log softmax at the target
                grad = probs.mul_(wc / total).scatter_add_(1, tc, -wc).to(dtype)  # (softmax − one-hot) · weight
                torch.mm(grad, w_back, out=grad_hidden[s : s + chunk_rows])
                if dtype == torch.float32:
                    grad_weight.addmm_(grad.T, hc)
                else:  # the bf16 product, accumulated in fp32 over the chunks
                    grad_weight += grad.T @ hc
        ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """Mean cross-entropy of the logits `hidden @ weight.T` (N, V) against `labels` (N,; -100 =
    ignored), as `F.cross_entropy(F.linear(hidden, weight), labels)`; 0 when every label is ignored."""
    if hidden.shape[0] != labels.shape[0]:
        raise ValueError(f"{hidden.shape[0]} hidden rows but {labels.shape[0]} labels")
    return _LinearCrossEntropy.apply(hidden, weight, labels, chunk_rows)
