"""Reconstruction metrics: corpus BLEU (sacrebleu), exact match, token accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
import torch


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / max(1, len(references))


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) teacher-forced next-token predictions, ignoring -100 labels."""
    counted = labels.ne(-100)
    correct = (logits.argmax(-1).eq(labels) & counted).sum()
    return int(correct), int(counted.sum())
