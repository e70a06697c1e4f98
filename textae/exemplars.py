"""Transfer for labels a whole message carries: keep the text, add one of the new label's own sentences.

Question type is marked by a word or two ("Who", "How many"), and an edit (`textae.edits`) changes
it. Spam is not: a message reads as spam only when most of what it says is spam, so one marker
edited in leaves a ham message ham. For such a label (its rows' typical lead, `textae.markers`,
is at least INSERT_LEAD markers) transfer keeps the whole text and appends one exemplar, a sentence
of the label's training rows that its markers mark: the "retrieve" step of "Delete, Retrieve,
Generate" (Li et al. 2018) with the retrieved sentence kept whole. The exemplar is the one nearest
the text by the model's own content code among those that make the text lead for the new label by
at least its typical lead × weight / TYPICAL_AT; if none does, the one that makes it lead most.
`weight` is transfer's label weight: 0 appends the nearest exemplar that leaves no other label
ahead, higher asks for a larger lead (usually a longer, more typical sentence, further from the
source).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .edits import LABEL_WEIGHT

INSERT_LEAD = 2.0  # a label whose rows typically lead by this many markers is carried by a whole message
TYPICAL_AT = 2.0  # the label weight at which an exemplar must give the label's typical lead
NEAREST = 64  # exemplars considered per text, nearest first
CLOSERS = "\"')]}»”’"  # what may follow a sentence's last word


def carried_by_message(bottleneck, label: int) -> bool:
    """Whether transfer toward `label` appends an exemplar (else it edits): the model kept exemplars
    of it and its rows typically hold INSERT_LEAD more of its markers than of any other label's."""
    leads = bottleneck.cfg.typical_leads
    return bool(leads) and leads[label] >= INSERT_LEAD and any(e[0] == label for e in bottleneck.cfg.exemplars)


def append_exemplars(ae, texts: Sequence[str], codes: torch.Tensor, label: int, weight: float = LABEL_WEIGHT,
                     batch_size: int = 128, progress: bool = False) -> list[str]:
    """Each text (with its checked stored codes `codes`) with one exemplar of `label` appended, after a full
    stop where the text ends in a word (`close`)."""
    bottleneck = ae.model.bottleneck
    exemplars = [e[1:] for e in bottleneck.cfg.exemplars if e[0] == label]
    rows = [e + [ae.model.config.eos_token_id] for e in exemplars]
    words = ae.detokenize(ae.pad(rows))
    near = nearest(_content(bottleneck, codes), _content(bottleneck, ae.encode_ids(rows, batch_size)))
    needed = bottleneck.cfg.typical_leads[label] * weight / TYPICAL_AT
    closed = [close(t) for t in texts]
    ids = ae.tokenizer(closed, add_special_tokens=False)["input_ids"]  # the lead is counted on the text as written
    out = []
    for text, row, order in tqdm(zip(closed, ids, near), desc="appending exemplars", total=len(texts), unit="text",
                                 disable=not progress):
        leads = [bottleneck.table.lead([*row, *exemplars[j]], label) for j in order]
        out.append(" ".join(filter(None, (text, words[order[choose(leads, needed)]]))))
    return out


def close(text: str) -> str:
    """The text as an exemplar follows it: one that ends in a word or number (before any closing quotes or
    brackets) gets a full stop, so the two do not run together as one sentence."""
    text = text.rstrip()
    return text + "." if text.rstrip(CLOSERS)[-1:].isalnum() else text


def choose(leads: Sequence[int], needed: float) -> int:
    """Of candidates nearest first (at least one), with the lead each gives the text: the first that leads
    by `needed`, else the first of those that lead most."""
    for i, lead in enumerate(leads):
        if lead >= needed:
            return i
    return int(np.argmax(leads))


def _content(bottleneck, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The content part of stored codes, each scaled to unit length, on the CPU."""
    content = bottleneck.split(torch.as_tensor(codes, dtype=torch.float32).cpu())[0]
    return torch.nn.functional.normalize(content, dim=-1)


def nearest(queries: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """(len(queries), min(NEAREST, len(bank))): bank indices by cosine to each query, nearest first
    (ties: the lower index first)."""
    order = np.argsort(-(queries @ bank.T).numpy(), axis=1, kind="stable")
    return order[:, :NEAREST]
