"""A trained model directory as one object: `textae.load(path)` → encode / decode / reconstruct."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .errors import TextAEError
from .modeling import TextAEModel
from .tokenizer import load_tokenizer

log = logging.getLogger("textae")


class AutoEncoder:
    """Model + tokenizer with batched, order-preserving text ↔ code conversion."""

    def __init__(self, model: TextAEModel, tokenizer: PreTrainedTokenizerBase, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
        """Load a model directory written by `textae train` (safetensors weights only)."""
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise TextAEError(
                f"{path} is not a textae model directory (needs config.json and model.safetensors); "
                "pass the `final/` folder of a training run, e.g. runs/default/final"
            )
        model = TextAEModel.from_pretrained(path, use_safetensors=True)
        return cls(model, load_tokenizer(path), device)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    # ----- batching -----------------------------------------------------------------------
    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Content ids + EOS, truncated to the model's positions (long documents keep their start)."""
        limit = self.model.config.max_positions - 1
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        too_long = sum(len(x) > limit for x in ids)
        if too_long:
            log.warning("%d of %d texts are longer than %d tokens; only their first %d tokens are encoded",
                        too_long, len(ids), limit, limit)
        return [x[:limit] + [self.model.config.eos_token_id] for x in ids]

    def _batches(self, lengths: Sequence[int], batch_size: int, desc: str, progress: bool):
        """Index batches of similar length (less padding); callers restore the input order."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return tqdm(chunks, desc=desc, unit="batch", disable=not progress or len(chunks) < 2)

    def _pad(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        out = torch.full((len(rows), max(map(len, rows))), self.model.config.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(self.device)

    def _detokenize(self, generated: torch.Tensor) -> list[str]:
        eos = self.model.config.eos_token_id
        rows = [row[: row.index(eos)] if eos in row else row for row in generated.tolist()]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    # ----- public API ---------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """Codes (N, K, D) as float32, one per text, in input order."""
        ids = self._token_ids(texts)
        k, d = self.model.config.num_codes, self.model.config.code_dim
        codes = np.zeros((len(ids), k, d), dtype=np.float32)
        for batch in self._batches([len(x) for x in ids], batch_size, "encoding", progress):
            codes[batch] = self.model.encode(self._pad([ids[i] for i in batch])).float().cpu().numpy()
        return codes

    @torch.no_grad()
    def decode(self, codes: np.ndarray | torch.Tensor, batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Texts from codes (N, K, D); `generate` takes `TextAEModel.generate` options (num_beams, do_sample, …)."""
        codes = torch.as_tensor(np.asarray(codes, dtype=np.float32))
        expected = (self.model.config.num_codes, self.model.config.code_dim)
        if codes.ndim != 3 or tuple(codes.shape[1:]) != expected:
            raise TextAEError(f"codes have shape {tuple(codes.shape)}; this model expects (N, {expected[0]}, {expected[1]})")
        out: list[str] = [""] * len(codes)
        chunks = [list(range(i, min(i + batch_size, len(codes)))) for i in range(0, len(codes), batch_size)]
        for batch in tqdm(chunks, desc="decoding", unit="batch", disable=not progress or len(chunks) < 2):
            texts = self._detokenize(self.model.generate(codes[batch].to(self.device), **generate))
            for i, t in zip(batch, texts):
                out[i] = t
        return out

    @torch.no_grad()
    def reconstruct(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Text → code → text, in input order."""
        ids = self._token_ids(texts)
        out: list[str] = [""] * len(ids)
        for batch in self._batches([len(x) for x in ids], batch_size, "reconstructing", progress):
            code = self.model.encode(self._pad([ids[i] for i in batch]))
            for i, t in zip(batch, self._detokenize(self.model.generate(code, **generate))):
                out[i] = t
        return out


def load(path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
    """Load a trained model directory in one call."""
    return AutoEncoder.from_pretrained(path, device)
