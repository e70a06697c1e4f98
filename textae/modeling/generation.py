"""Decoding from codes: greedy, sampling and beam search over the decoder's key/value cache.

Any model that follows `Decodable` can be decoded: it turns a batch of codes into a
`DecoderMemory` once, then gives hidden states for new tokens and their logits or argmax.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from .layers import KVCache, MemoryKV


@dataclass
class DecoderMemory:
    """What the decoder reads besides its own tokens, computed once per batch of codes."""

    kvs: list[MemoryKV]  # per decoder layer: cross-attention keys and values
    position_inputs: torch.Tensor  # (B or 1, P, d): what each position adds to its token embedding
    source: Any = None  # whatever else `output_logits` reads (the text family's copy source)


class Decodable(Protocol):
    """The decoding contract: what greedy, sampling and beam search call on a model."""

    config: Any

    def decoder_memory(self, code: torch.Tensor) -> DecoderMemory: ...

    def decoder_states(
        self, tokens: torch.Tensor, start: int, memory: DecoderMemory, caches: list[KVCache] | None = None
    ) -> tuple[torch.Tensor, list[KVCache]]: ...

    def output_logits(self, hidden: torch.Tensor, memory: DecoderMemory) -> torch.Tensor:
        """Next-token logits (B, T, V) for decoder states (B, T, d)."""
        ...

    def greedy_tokens(self, hidden: torch.Tensor, memory: DecoderMemory) -> torch.Tensor:
        """argmax of `output_logits` for decoder states (B, d): (B,) token ids."""
        ...


def inference(generate: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a `generate` method under torch.inference_mode and hand back an ordinary tensor.

    Why: inference mode skips the version counters and autograd bookkeeping `no_grad` still keeps
    on every operator, and a decoding step is a few hundred small operators, most of all at batch 1
    (the paired A/B is in the README, "Speed against BART"). The copy at the end (a few KB of token
    ids) lets callers feed the result to training later, which an inference tensor refuses.
    """

    @functools.wraps(generate)
    def wrapper(*args, **kwargs) -> torch.Tensor:
        with torch.inference_mode():
            out = generate(*args, **kwargs)
        return out.clone()

    return wrapper


def linear_argmax(hidden: torch.Tensor, weight: torch.Tensor, block: int = 32) -> torch.Tensor:
    """argmax(hidden @ weight.T, -1) for decoder states (B, d) and an output matrix (V, d): the greedy
    next tokens, ties to the lowest id as torch.argmax.

    Why: on CPU the next-token argmax over (B, V) logits is a large share of a greedy step (the A/B is
    in the README, "Speed against BART"). The logits are built as (V, B), the layout this CPU
    multiplies faster at B = 64, and torch's argmax is a scalar loop while amax is vectorised: the
    first block of `block` vocabulary rows holding each column's maximum is found from the block
    maxima, and argmax runs only inside that block. On GPUs, where argmax is one fast kernel, and for
    fewer than 32 rows (where 3 extra small operators cost more than they save) this is the plain argmax.
    """
    if hidden.device.type != "cpu" or hidden.shape[0] < 32:  # below 32 rows the plain path is faster
        return F.linear(hidden, weight).argmax(-1)
    logits = weight @ hidden.T  # (V, B)
    v, b = logits.shape
    n = v // block
    if n == 0:
        return logits.argmax(0)
    blocks = logits[: n * block].view(n, block, b)
    first = blocks.amax(1).argmax(0)  # (B,): the first block holding each row's maximum
    rows = torch.arange(b, device=hidden.device)
    tokens = first * block + blocks[first, :, rows].argmax(-1)
    if v > n * block:  # the vocabulary's last v % block ids: they win only when strictly larger
        tail_max, tail_arg = logits[n * block :].max(0)
        tokens = torch.where(tail_max > logits[tokens, rows], tail_arg + n * block, tokens)
    return tokens


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Keep the top-k tokens and the smallest set whose probability reaches top_p; mask the rest."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, as in transformers): the logit of every token a
    row has already produced is divided by `penalty` where positive and multiplied where negative,
    which breaks the loops greedy decoding falls into ("0000000…"). `seen` is None when it is off."""
    if seen is None:
        return logits
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def _no_tokens_yet(rows: int, vocab_size: int, device: torch.device, penalty: float) -> torch.Tensor | None:
    """The (rows, V) record of produced tokens the penalty needs; None (no work per step) when it is off."""
    return None if penalty == 1.0 else torch.zeros(rows, vocab_size, dtype=torch.bool, device=device)


def greedy_or_sample(
    model: Decodable,
    code: torch.Tensor,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    cfg = model.config
    memory = model.decoder_memory(code)
    b = code.shape[0]
    tokens = code.new_full((b, 1), cfg.bos_token_id, dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool, device=code.device)
    seen = _no_tokens_yet(b, cfg.vocab_size, code.device, repetition_penalty)
    out, caches = [], None
    for step in range(max_new_tokens):
        hidden, caches = model.decoder_states(tokens, step, memory, caches)
        if not do_sample and seen is None:
            nxt = model.greedy_tokens(hidden[:, -1], memory)
        else:
            logits = penalise_repeats(model.output_logits(hidden[:, -1:], memory)[:, 0].float(), seen, repetition_penalty)
            if do_sample:
                probs = _filter_logits(logits / max(temperature, 1e-5), top_k, top_p).softmax(-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                nxt = logits.argmax(-1)
        nxt = nxt.masked_fill(done, cfg.pad_token_id)
        if seen is not None:
            seen.scatter_(1, nxt.unsqueeze(1), True)
        out.append(nxt)
        done |= nxt.eq(cfg.eos_token_id)
        if done.all():
            break
        tokens = nxt.unsqueeze(1)
    return torch.stack(out, dim=1)


def beam_search(
    model: Decodable, code: torch.Tensor, max_new_tokens: int, num_beams: int, length_penalty: float,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """Standard beam search; a finished beam keeps its score and only extends with padding."""
    cfg = model.config
    b, v = code.shape[0], cfg.vocab_size
    code = code.repeat_interleave(num_beams, dim=0)  # (B*N, K, D)
    memory = model.decoder_memory(code)
    scores = code.new_zeros(b, num_beams, dtype=torch.float)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    seqs = code.new_zeros(b * num_beams, 0, dtype=torch.long)
    done = torch.zeros(b * num_beams, dtype=torch.bool, device=code.device)
    lengths = torch.zeros(b * num_beams, device=code.device)
    tokens = code.new_full((b * num_beams, 1), cfg.bos_token_id, dtype=torch.long)
    seen = _no_tokens_yet(b * num_beams, v, code.device, repetition_penalty)
    caches = None
    for step in range(max_new_tokens):
        hidden, caches = model.decoder_states(tokens, step, memory, caches)
        logits = model.output_logits(hidden[:, -1:], memory)[:, 0].float()
        logp = penalise_repeats(logits, seen, repetition_penalty).log_softmax(-1)  # (B*N, V)
        # Finished beams: only padding, at no cost.
        logp[done] = float("-inf")
        logp[done, cfg.pad_token_id] = 0.0
        total = (scores.view(-1, 1) + logp).view(b, num_beams * v)
        scores, flat = total.topk(num_beams, dim=-1)  # (B, N)
        beam = flat // v + torch.arange(b, device=code.device).unsqueeze(1) * num_beams
        beam, nxt = beam.view(-1), (flat % v).view(-1)
        seqs = torch.cat([seqs[beam], nxt.unsqueeze(1)], dim=1)
        lengths = lengths[beam] + (~done[beam]).float()
        done = done[beam] | nxt.eq(cfg.eos_token_id)
        if seen is not None:
            seen = seen[beam].scatter_(1, nxt.unsqueeze(1), True)
        caches = [(k[beam], val[beam]) for k, val in caches]
        if done.all():
            break
        tokens = nxt.unsqueeze(1)
    normalised = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    best = normalised.view(b, num_beams).argmax(-1) + torch.arange(b, device=code.device) * num_beams
    return seqs[best]
