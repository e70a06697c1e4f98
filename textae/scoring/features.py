"""What a trained autoencoder says about each document: how well it rebuilds it, and where its code lies.

A document longer than the model's positions is cut into windows of at most `max_positions - 1`
tokens (each scored as a text of its own, ending in EOS); a document's figures come from its
windows. Windows of similar length are batched together to cut padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..autoencoder import AutoEncoder


@dataclass
class Features:
    """Per-document figures (N documents); `window_*` keep each window's, for max aggregation."""

    nll: np.ndarray  # (N,) total reconstruction NLL, nats (all windows)
    n_tokens: np.ndarray  # (N,) target tokens, EOS included
    n_chars: np.ndarray  # (N,) characters of the text
    kl: np.ndarray  # (N,) KL(q(z|x) || p(z)) summed over windows; 0 for families without a prior
    codes: np.ndarray  # (N, C) the decoder's code vectors, flattened, averaged over windows
    window_doc: np.ndarray  # (W,) document of each window
    window_nll: np.ndarray  # (W,)
    window_tokens: np.ndarray  # (W,)
    window_chars: np.ndarray  # (W,) the document's characters per token times the window's tokens
    window_kl: np.ndarray  # (W,)
    window_codes: np.ndarray  # (W, C)
    semantic: np.ndarray  # (N, L, E) sentence-encoder embeddings after L layers (L = 0 when not asked for)
    pieces: np.ndarray  # (P, E) float16: the sentence encoder's unit-length word-piece states (P = 0: not asked for)
    piece_doc: np.ndarray  # (P,) document of each word piece


def windows(ae: AutoEncoder, texts: Sequence[str]) -> list[list[list[int]]]:
    """Token windows of each text: content ids cut into pieces of `max_positions - 1`, each + EOS."""
    size = ae.model.config.max_positions - 1
    eos = ae.model.config.eos_token_id
    ids = ae.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[x[i : i + size] + [eos] for i in range(0, len(x), size)] or [[eos]] for x in ids]


@torch.no_grad()
def window_features(ae: AutoEncoder, rows: Sequence[Sequence[int]], batch_size: int = 128) -> dict[str, np.ndarray]:
    """nll (W,), tokens (W,), kl (W,) and codes (W, C) of token windows, batched by length."""
    model = ae.model

    def features(ids: torch.Tensor) -> list[tuple]:
        labels = ids.masked_fill(ids.eq(model.config.pad_token_id), -100)
        h, slot_mask = model.chunk_summaries(ids, ids.ne(model.config.pad_token_id))
        code = model.bottleneck.to_decoder(model.bottleneck.encode(h, slot_mask))  # (B, K, D); a VAE's posterior mean
        return list(zip(
            (-model.sequence_log_likelihood(code, labels)).float().cpu().numpy(),
            labels.ne(-100).sum(1).cpu().numpy(),
            model.bottleneck.prior_kl(h).float().cpu().numpy(),
            code.flatten(1).float().cpu().numpy(),
        ))

    per_window = ae._over_ids(rows, features, batch_size, "scoring", progress=False)
    if not per_window:
        return {"nll": np.zeros(0), "tokens": np.zeros(0, dtype=np.int64), "kl": np.zeros(0),
                "codes": np.zeros((0, 0), dtype=np.float32)}
    nll, tokens, kl, codes = zip(*per_window)
    return {"nll": np.asarray(nll, dtype=np.float64), "tokens": np.asarray(tokens, dtype=np.int64),
            "kl": np.asarray(kl, dtype=np.float64), "codes": np.stack(codes).astype(np.float32)}


def document_features(ae: AutoEncoder, texts: Sequence[str], batch_size: int = 128, encoder=None,
                      layers: Sequence[int] = (), piece_layer: int | None = None) -> Features:
    """Features of whole documents (texts must be non-empty), in input order; `encoder`, a
    `textae.similarity.SentenceEncoder`, adds their embeddings after each of `layers` and, with
    `piece_layer`, their word pieces' states after that layer (it reads the first 128 word pieces
    of a document)."""
    cuts = windows(ae, texts)
    doc = np.repeat(np.arange(len(cuts)), [len(p) for p in cuts])
    w = window_features(ae, [r for p in cuts for r in p], batch_size)
    count = np.bincount(doc, minlength=len(cuts))
    codes = np.zeros((len(cuts), w["codes"].shape[1]), dtype=np.float32)
    np.add.at(codes, doc, w["codes"])
    n_tokens = np.bincount(doc, w["tokens"], len(cuts)).astype(np.int64)
    n_chars = np.asarray([max(len(t), 1) for t in texts], dtype=np.int64)
    if encoder is not None:
        semantic, word_pieces, piece_doc = encoder.layer_states(list(texts), layers, piece_layer, batch_size)
    else:
        semantic = np.zeros((len(texts), 0, 0), np.float32)
        word_pieces, piece_doc = np.zeros((0, 0), np.float16), np.zeros(0, np.int64)
    return Features(
        nll=np.bincount(doc, w["nll"], len(cuts)),
        n_tokens=n_tokens,
        n_chars=n_chars,
        kl=np.bincount(doc, w["kl"], len(cuts)),
        codes=codes / np.maximum(count, 1)[:, None],
        window_doc=doc,
        window_nll=w["nll"],
        window_tokens=w["tokens"],
        window_chars=w["tokens"] * (n_chars / np.maximum(n_tokens, 1))[doc],
        window_kl=w["kl"],
        window_codes=w["codes"],
        semantic=semantic,
        pieces=word_pieces,
        piece_doc=piece_doc,
    )
