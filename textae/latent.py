"""Moving through a trained model's code space: sample, interpolate, paraphrase.

Each works for every family through the bottleneck's own notion of a code: a VAE samples its
Gaussian prior and perturbs z, a VQ model samples each slot's empirical code distribution and
swaps codes for near neighbours, a plain autoencoder perturbs its vectors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .autoencoder import AutoEncoder
from .errors import TextAEError

if TYPE_CHECKING:
    from .similarity import SentenceEncoder


def sample(ae: AutoEncoder, n: int, seed: int = 0, prior_temperature: float = 1.0, **generate) -> list[str]:
    """n sentences decoded from codes drawn from the model's prior (its spread scaled by
    `prior_temperature`); `generate` takes the decoding options (do_sample, temperature, num_beams, ...)."""
    ae.require_vector_codes("sample")
    if n < 1:
        raise TextAEError("-n must be at least 1")
    if prior_temperature <= 0:
        raise TextAEError("--prior-temperature must be above 0")
    gen = torch.Generator().manual_seed(seed)
    try:
        codes = ae.model.bottleneck.sample_prior(n, generator=gen, temperature=prior_temperature)
    except NotImplementedError as err:
        raise TextAEError(str(err)) from None
    if generate.get("do_sample"):  # the same seed gives the same sentences, on the model's device
        generate.setdefault("generator", torch.Generator(ae.device).manual_seed(seed))
    bottleneck = ae.model.bottleneck
    with bottleneck.told(bottleneck.sample_level_at(prior_temperature)):
        return ae.decode(codes, **generate)


def interpolate(ae: AutoEncoder, a: str, b: str, steps: int = 5, **generate) -> list[str]:
    """Sentences decoded at `steps` evenly spaced points from a's code to b's (both ends included)."""
    ae.require_vector_codes("interpolate")
    if steps < 2:
        raise TextAEError("--steps must be at least 2 (the two ends)")
    if not a.strip() or not b.strip():
        raise TextAEError("interpolate needs two sentences with words in them; got an empty one")
    codes = ae.code_tensor(ae.encode([a, b]))
    bottleneck, weights = ae.model.bottleneck, torch.linspace(0, 1, steps)
    path = bottleneck.interpolate(codes[0], codes[1], weights)
    if not bottleneck.interpolation_level:
        return ae.decode(path, **generate)
    out = []  # the ends are sentences' own codes; the farther from both, the less the decoder trusts the code
    for point, w in zip(path, weights.tolist()):
        with bottleneck.told(bottleneck.interpolation_level * math.sin(math.pi * w)):
            out += ae.decode(point[None], **generate)
    return out


@dataclass
class Paraphrase:
    index: int  # row of the input
    rank: int  # 1 = the best: within max_overlap of the input, and most similar to it
    text: str
    similarity: float  # cosine to the input: of sentence embeddings (an encoder given), else of decoder codes
    overlap: float  # sentence BLEU against the input, 0 to 1: how much of its wording the paraphrase keeps


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def paraphrase(
    ae: AutoEncoder,
    texts: Sequence[str],
    n: int = 3,
    candidates: int = 48,
    scale: float | None = None,
    rounds: int = 3,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = False,
    encoder: SentenceEncoder | None = None,
    max_overlap: float = 0.5,
) -> tuple[list[Paraphrase], dict[str, float]]:
    """Up to n paraphrases per text, best first, and counts of what was generated.

    Each round decodes `candidates` perturbed codes per text still short of n new sentences that
    keep at most `max_overlap` of its wording, and drops copies: the input itself, the model's plain
    reconstruction of it, and repeats. Rounds double the perturbation scale, so sentences the model
    holds tightly still move, while the first, small move keeps the meaning of those it does not.
    `scale` is the first round's perturbation (None: the family's default, e.g. 0.15 code standard
    deviations for a rae, a 10 % chance to swap each VQ code). Candidates that keep at most `max_overlap` of the
    input's wording (sentence BLEU / 100) come first, then the rest; within each, the most similar
    in meaning first: cosine of `encoder`'s sentence embeddings, or without one, of the re-encoded
    codes (which mostly measures shared wording, so near copies win).
    """
    ae.require_vector_codes("paraphrase")
    if n < 1 or candidates < 1:
        raise TextAEError("-n and --candidates must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    scale = ae.model.bottleneck.paraphrase_scale if scale is None else scale
    codes = ae.code_tensor(ae.encode(texts, batch_size=batch_size))
    rebuilt = ae.decode(codes, batch_size=batch_size)
    found: list[dict[str, float]] = [dict() for _ in texts]  # new sentences, in order → how much wording each keeps
    blocked = [{_key(t), _key(r)} for t, r in zip(texts, rebuilt)]
    generated = copies = 0
    for round_ in range(rounds):
        todo = [i for i in range(len(texts)) if sum(o <= max_overlap for o in found[i].values()) < n]
        if not todo:
            break
        rows = torch.tensor(todo, device=codes.device).repeat_interleave(candidates)
        move = scale * 2**round_
        moved = ae.model.bottleneck.perturb(codes[rows], move, generator=gen)
        with ae.model.bottleneck.told(move):
            outputs = ae.decode(moved, batch_size=batch_size, progress=progress)
        for i, text in zip(rows.tolist(), outputs):
            generated, key = generated + 1, _key(text)
            if key in blocked[i]:
                copies += key in (_key(texts[i]), _key(rebuilt[i]))
                continue
            blocked[i].add(key)
            found[i][text] = _overlap(text, texts[i])
    results = _rank(ae, texts, codes, found, n, batch_size, encoder, max_overlap)
    stats = {
        "generated": generated,
        "copy_rate": copies / max(1, generated),
        "inputs_without_paraphrase": sum(not f for f in found) / max(1, len(texts)),
    }
    return results, stats


def _overlap(text: str, source: str) -> float:
    """How much of source's wording text keeps: sentence BLEU, 0 to 1."""
    return _sentence_bleu()(text, [source]).score / 100


@functools.cache
def _sentence_bleu() -> Callable:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True).sentence_score


def _rank(ae: AutoEncoder, texts: Sequence[str], codes: torch.Tensor, found: list[dict[str, float]], n: int,
          batch_size: int, encoder: SentenceEncoder | None, max_overlap: float) -> list[Paraphrase]:
    """Each input's new sentences (→ their overlap), those within max_overlap first, then by similarity; the best n."""
    flat = [(i, t) for i in range(len(found)) for t in found[i]]
    if not flat:
        return []
    if encoder is not None:
        sims = encoder.similarity([texts[i] for i, _ in flat], [t for _, t in flat])
    else:
        source = ae.decoder_vectors(codes.cpu()[[i for i, _ in flat]])
        para = ae.decoder_vectors(ae.encode([t for _, t in flat], batch_size=batch_size))
        sims = (source * para).sum(1) / (np.linalg.norm(source, axis=1) * np.linalg.norm(para, axis=1) + 1e-8)
    by_input: dict[int, list[tuple[bool, float, float, str]]] = {}
    for (i, t), s in zip(flat, sims.tolist()):
        overlap = found[i][t]
        by_input.setdefault(i, []).append((overlap > max_overlap, -s, overlap, t))
    results: list[Paraphrase] = []
    for i in sorted(by_input):
        ranked = sorted(by_input[i])[:n]
        results.extend(Paraphrase(i, r + 1, t, round(-s, 4), round(o, 4)) for r, (_, s, o, t) in enumerate(ranked))
    return results
