"""Style transfer: keep a sentence's content code, decode it with another label.

A cvae decodes the whole sentence from its small latent. A cae keeps the content it read: its
decoder, told the new label, writes only where the label's markers were deleted (`textae.infill`),
and that text competes with edits that put one of the new label's markers into the sentence
(`textae.edits`); the decoder picks. Toward a label a whole message carries (spam), a cae keeps the
text and appends one of that label's own sentences instead (`textae.exemplars`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .autoencoder import AutoEncoder, in_batches
from .edits import LABEL_WEIGHT, choose_edits
from .errors import TextAEError
from .exemplars import append_exemplars, carried_by_message
from .infill import infill

GUIDANCE = 4.0  # a cae's default: how much more the new label's pull counts than the copied words' (textae.infill)


def require_cvae(ae: AutoEncoder, verb: str) -> None:
    if not ae.model.conditional:
        raise TextAEError(f"{verb} needs a conditional model; this one is '{ae.family}'. "
                          "Train one with --family cvae on data with a label column")


def labels(ae: AutoEncoder) -> list[str]:
    """The labels a conditional model knows, in id order."""
    require_cvae(ae, "labels")
    return list(ae.model.bottleneck.cfg.labels)


def label_index(ae: AutoEncoder, label: str) -> int:
    """The id of a label the model knows; an unknown one is a clear error."""
    known = labels(ae)
    if label not in known:
        raise TextAEError(f"unknown label {label!r}; this model knows {', '.join(known)}")
    return known.index(label)


def label_names(ae: AutoEncoder, codes: np.ndarray) -> list[str]:
    """The label each stored code carries: the model's own guess for encoded text (its q(y|x))."""
    _, probs = ae.model.bottleneck.split(torch.as_tensor(codes))
    return [labels(ae)[i] for i in probs.argmax(-1).tolist()]


def decode_as(ae: AutoEncoder, codes: np.ndarray, to: str, batch_size: int = 128, progress: bool = False,
              **generate: Any) -> list[str]:
    """Stored codes decoded with label `to` in place of their own, in input order."""
    moved = ae.model.bottleneck.with_label(ae.code_tensor(codes), label_index(ae, to))
    return ae.decode(moved, batch_size=batch_size, progress=progress, **generate)


def predict_labels(ae: AutoEncoder, texts: Sequence[str], batch_size: int = 128) -> list[str]:
    """The model's own guess of each text's label (its q(y|x) classifier)."""
    require_cvae(ae, "predict_labels")
    return label_names(ae, ae.encode(texts, batch_size=batch_size))


def transfer(
    ae: AutoEncoder, texts: Sequence[str], to: str, batch_size: int = 128, progress: bool = False,
    codes: np.ndarray | None = None, guidance: float = GUIDANCE, label_weight: float = LABEL_WEIGHT, **generate: Any
) -> list[str]:
    """Each text rewritten toward label `to`: its content code decoded with that label, in input order.
    `codes`: the texts' codes, if already encoded. A cae decodes greedily (`generate` does not apply),
    `guidance` times away from the label its markers vote for (`textae.infill`), and chooses between
    that and marker edits by `label_weight` (`textae.edits`); toward a label a whole message carries it
    appends an exemplar instead, `label_weight` setting the lead it must give (`textae.exemplars`)."""
    label_index(ae, to)  # a bad label fails before any encoding
    if codes is None:
        codes = ae.encode(texts, batch_size=batch_size, progress=progress)
    if ae.model.bottleneck.infills:
        return _rewrite_cae(ae, texts, codes, to, batch_size, progress, guidance, label_weight)
    return decode_as(ae, codes, to, batch_size, progress, **generate)


def _rewrite_cae(ae: AutoEncoder, texts: Sequence[str], codes: np.ndarray, to: str, batch_size: int,
                 progress: bool, guidance: float, label_weight: float) -> list[str]:
    """The texts' content copied, their deleted markers written anew by the decoder told label `to` (steered
    away from the codes' own label, their markers' vote), or one of `to`'s markers edited in: the decoder's choice.
    Past the model's positions a text is copied unchanged. Toward a label a whole message carries, the text
    kept whole with one of `to`'s exemplars appended."""
    bottleneck, eos = ae.model.bottleneck, ae.model.config.eos_token_id
    target = label_index(ae, to)
    own = ae.code_tensor(codes)
    if carried_by_message(bottleneck, target):
        return append_exemplars(ae, texts, own, target, label_weight, batch_size, progress)
    markers = [gram for v, *gram in bottleneck.cfg.markers if v == target]
    cut = [_cut(row, ae.model.config.max_positions - 1, bottleneck.table.word_start)
           for row in ae.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    ids, tails = [head for head, _ in cut], [tail for _, tail in cut]
    content = [bottleneck.table.delete(row, bottleneck.mask_id)[0] for row in ids]
    moved = bottleneck.with_label(own, target)

    def rewrite(batch: list[int]) -> list[str]:
        with torch.no_grad():
            code, negative = ae.model.decoder_code(moved[batch]), ae.model.decoder_code(own[batch])
        filled = infill(ae.model, code, [content[i] for i in batch], bottleneck.mask_id, negative=negative, guidance=guidance)
        infilled = [row[: row.index(eos)] if eos in row else row for row in filled.tolist()]
        chosen = choose_edits(ae.model, bottleneck.table, [ids[i] for i in batch], infilled, markers, target, code,
                              negative, label_weight)
        return ae.detokenize(ae.pad([row + tails[i] + [eos] for i, row in zip(batch, chosen)]))

    return in_batches([len(c) for c in content], rewrite, batch_size, "rewriting", progress)


def _cut(row: list[int], limit: int, word_start: Sequence[bool]) -> tuple[list[int], list[int]]:
    """(what the model rewrites, the tail it copies as it is): a text longer than `limit` tokens is cut
    at the last word start within them, so no word is split between the two."""
    if len(row) <= limit:
        return row, []
    at = next((j for j in range(limit, 0, -1) if word_start[row[j]]), limit)
    return row[:at], row[at:]
