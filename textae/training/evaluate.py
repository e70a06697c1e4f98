"""Held-out evaluation shared by the trainer and the benchmarks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..autoencoder import AutoEncoder
from ..noise import NoiseConfig
from .batching import Collator
from .metrics import bleu, exact_match, token_accuracy


@torch.no_grad()
def evaluate(
    autoencoder: AutoEncoder,
    ids: Sequence[Sequence[int]],
    texts: Sequence[str],
    collator: Collator,
    batch_size: int = 64,
    nll_samples: int = 16,
    conditions: Sequence[int] | None = None,
) -> dict[str, float]:
    """Teacher-forced loss terms and token accuracy on clean inputs, the family's latent metrics
    (VAE: active units, MI, KL, NLL; VQ: codebook usage, perplexity), then greedy reconstruction
    BLEU / exact match. `conditions`: label ids of the rows, for conditional families."""
    model = autoencoder.model
    collator = dataclasses.replace(collator, noise=NoiseConfig())  # held-out loss on clean inputs, like inference
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    correct = counted = 0
    batches = []
    for start in range(0, len(ids), batch_size):
        rows = slice(start, start + batch_size)
        batch = collator(ids[rows], seed=0, conditions=conditions and conditions[rows])
        batch = {k: v.to(autoencoder.device) for k, v in batch.items()}
        batch.pop("decoder_input_ids")  # teacher forcing from the labels
        batches.append(batch)
        out = model(**batch)
        for name, value in out.losses.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        c, n = token_accuracy(out.logits, batch["labels"])
        correct, counted = correct + c, counted + n
    latent = model.latent_metrics(batches, nll_samples)
    metrics = {f"eval_{k}": v / max(1, len(batches)) for k, v in sums.items()}
    hypotheses, extra = autoencoder.heldout_reconstructions(texts, batch_size=batch_size)
    metrics.update({f"eval_{k}": v for k, v in extra.items()})
    references = autoencoder.tokenizer.batch_decode(ids, skip_special_tokens=True)  # what the model could rebuild
    model.train(was_training)
    metrics.update(latent)
    metrics.update(
        token_accuracy=correct / max(1, counted),
        bleu=bleu(hypotheses, references),
        exact_match=exact_match(hypotheses, references),
    )
    return metrics
