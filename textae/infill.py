"""Infilling: decode a code while copying a known content, so the decoder writes only what was masked.

The content is a token row with <mask> where words were deleted (a cae's label markers). Greedy
decoding runs in step for the whole batch, one token per row per step: a content token is copied;
at a <mask> the decoder writes freely until the content's next token (or EOS at the end) is at least
1/SPAN_END_ODDS as likely as its best guess, or `max_span` tokens, then copying resumes; before and
after the content it may add up to `max_span` tokens too (a label's words may open or close a text
that held none). So nothing the input kept is lost or garbled, whatever the code's fidelity, and
what the decoder writes goes where the deleted words stood (Wu et al. 2019, "Mask and Infill").

The words it writes follow the label the code carries, but the copied words around them pull toward
their own label (a decoder that is a language model continues a text in its style). Guidance
(classifier-free guidance for text, Sanchez et al. 2023) sharpens the label's pull: with `negative`
codes (the same content with the source's label) the decoder's logits l become l + g·(l − l_negative),
so a word the new label makes likelier than the old one gains by g times that difference. Only words
the decoder finds plausible with the new label (at least 1/PLAUSIBLE_ODDS as likely as its best guess,
the plausibility constraint of contrastive decoding, Li et al. 2023) can be chosen, so guidance picks
among words, never pieces of none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .modeling.generation import Decodable, inference

MAX_SPAN = 6  # tokens the decoder may write for one <mask>, and after the content
SPAN_END_ODDS = 4.0  # a mask ends once the next content token is this close to the decoder's best guess
PLAUSIBLE_ODDS = 10.0  # guidance chooses among tokens at least this close to the unguided best guess


@inference
def infill(model: Decodable, code: torch.Tensor, content: Sequence[Sequence[int]], mask_id: int,
           max_span: int = MAX_SPAN, negative: torch.Tensor | None = None, guidance: float = 0.0) -> torch.Tensor:
    """(B, T) token ids ending in EOS: each row's content with its masks filled; `code` (and `negative`,
    the codes guidance steers away from) as the decoder reads them."""
    cfg = model.config
    guided = negative is not None and guidance > 0
    memory = model.decoder_memory(torch.cat([code, negative]) if guided else code)
    rows = [_opened([t for t in c if t != cfg.eos_token_id], mask_id) for c in content]
    at = [0] * len(rows)  # the next content position of each row
    span = [0] * len(rows)  # tokens written for the current mask (or the tail)
    done = [False] * len(rows)
    tokens = code.new_full((len(rows), 1), cfg.bos_token_id, dtype=torch.long)
    out, caches = [], None
    limit = cfg.max_positions
    for step in range(limit):
        hidden, caches = model.decoder_states(torch.cat([tokens, tokens]) if guided else tokens, step, memory, caches)
        logits = model.output_logits(hidden[:, -1:], memory)[:, 0].float()
        if guided:
            wanted, avoided = logits.chunk(2)
            plausible = wanted >= wanted.max(-1, keepdim=True).values - math.log(PLAUSIBLE_ODDS)
            logits = (wanted + guidance * (wanted - avoided)).masked_fill(~plausible, -math.inf)
        best = logits.max(-1)
        predicted = best.indices.tolist()
        following = torch.tensor([_following(row, at[i], mask_id, cfg.eos_token_id) for i, row in enumerate(rows)], device=logits.device)
        close = (logits.gather(1, following[:, None])[:, 0] >= best.values - math.log(SPAN_END_ODDS)).tolist()
        nxt = []
        for i, row in enumerate(rows):
            if done[i]:
                nxt.append(cfg.pad_token_id)
                continue
            token = _next(row, at, span, i, following[i].item() if close[i] else predicted[i], mask_id, cfg.eos_token_id,
                          max_span, last=step == limit - 1)
            done[i] = token == cfg.eos_token_id
            nxt.append(token)
        out.append(torch.tensor(nxt, device=code.device))
        if all(done):
            break
        tokens = out[-1].unsqueeze(1)
    return torch.stack(out, dim=1)


def _opened(row: list[int], mask_id: int) -> list[int]:
    """The content with a mask in front, so the decoder may open the text with the label's words."""
    return row if row and row[0] == mask_id else [mask_id, *row]


def _following(row: list[int], at: int, mask_id: int, eos: int) -> int:
    """The token that ends the current span when likely: the content's next token after a mask, EOS after the content."""
    if at < len(row) and row[at] == mask_id:
        at += 1
    return row[at] if at < len(row) else eos


def _next(row: list[int], at: list[int], span: list[int], i: int, predicted: int, mask_id: int, eos: int,
          max_span: int, last: bool) -> int:
    """Row i's token for this step; advances its position (`at`) and span count."""
    if last:
        return eos
    while at[i] < len(row) and row[at[i]] == mask_id:
        if predicted == _following(row, at[i], mask_id, eos) or span[i] >= max_span or predicted in (eos, mask_id):
            at[i] += 1  # the mask is filled: copy on
            span[i] = 0
            continue
        span[i] += 1
        return predicted
    if at[i] < len(row):
        at[i] += 1
        return row[at[i] - 1]
    if predicted in (eos, mask_id) or span[i] >= max_span:  # after the content: a short tail, then the end
        return eos
    span[i] += 1
    return predicted
