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
from .modeling import TextAEConfig, TextAEModel, model_class
from .tokenizer import load_tokenizer

log = logging.getLogger("textae")


class AutoEncoder:
    """Model + tokenizer with batched, order-preserving text ↔ code conversion."""

    def __init__(self, model: TextAEModel, tokenizer: PreTrainedTokenizerBase, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.path: Path | None = None  # the model directory, when loaded from one

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
        """Load a model directory written by `textae train` (safetensors weights only)."""
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise TextAEError(
                f"{path} is not a textae model directory (needs config.json and model.safetensors); "
                "pass the `final/` folder of a training run, e.g. runs/default/final"
            )
        model = model_class(TextAEConfig.from_pretrained(path).family).from_pretrained(path, use_safetensors=True)
        ae = wrap(model, load_tokenizer(path), device) if cls is AutoEncoder else cls(model, load_tokenizer(path), device)
        ae.path = path
        return ae

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
    @property
    def family(self) -> str:
        return self.model.config.family

    def require_vector_codes(self, verb: str) -> None:
        """Latent-space verbs need vector or integer codes, which the text family does not have."""
        if self.family == "text":
            raise TextAEError(f"{verb} moves through a vector code space; a text-family model's codes are texts "
                              "(use summarize, encode or decode, or train an ae / vae / vq model)")

    @property
    def code_shape(self) -> tuple[int, ...]:
        """One stored code: (K, D) floats (ae), (Z,) floats (vae), (K·heads,) integers (vq)."""
        return self.model.bottleneck.code_shape

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """Codes (N, *code_shape), one per text, in input order: float32, or int64 for VQ."""
        ids = self._token_ids(texts)
        integer = not self.model.bottleneck.code_dtype.is_floating_point
        codes = np.zeros((len(ids), *self.code_shape), dtype=np.int64 if integer else np.float32)
        for batch in self._batches([len(x) for x in ids], batch_size, "encoding", progress):
            code = self.model.encode(self._pad([ids[i] for i in batch]))
            codes[batch] = (code if integer else code.float()).cpu().numpy()
        return codes

    def code_tensor(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Stored codes checked against this model (shape, integer or float) as a tensor on its device."""
        arr = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes)
        if arr.ndim != 1 + len(self.code_shape) or tuple(arr.shape[1:]) != self.code_shape:
            raise TextAEError(
                f"codes have shape {tuple(arr.shape)}; this {self.family} model expects (N, {', '.join(map(str, self.code_shape))})"
            )
        if not self.model.bottleneck.code_dtype.is_floating_point:
            if not np.issubdtype(arr.dtype, np.integer):
                raise TextAEError("this VQ model's codes are integers; pass the codes `textae encode` wrote")
            size = self.model.bottleneck.cfg.codebook_size
            if arr.size and (arr.min() < 0 or arr.max() >= size):
                raise TextAEError(f"VQ codes must lie in [0, {size}); got values from {arr.min()} to {arr.max()}")
            return torch.as_tensor(arr, dtype=torch.long, device=self.device)
        return torch.as_tensor(arr, dtype=torch.float32, device=self.device)

    def decoder_vectors(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Stored codes → the vectors the decoder reads, flattened (N, K·D): one space for every family."""
        with torch.no_grad():
            return self.model.bottleneck.to_decoder(self.code_tensor(codes)).flatten(1).float().cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray | torch.Tensor, batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Texts from stored codes; `generate` takes `TextAEModel.generate` options (num_beams, do_sample, …)."""
        codes = self.code_tensor(codes)
        out: list[str] = [""] * len(codes)
        chunks = [list(range(i, min(i + batch_size, len(codes)))) for i in range(0, len(codes), batch_size)]
        for batch in tqdm(chunks, desc="decoding", unit="batch", disable=not progress or len(chunks) < 2):
            texts = self._detokenize(self.model.generate(codes[batch], **generate))
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


def wrap(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, device: str | torch.device | None = None) -> AutoEncoder:
    """The right front end for a model: TextCodec for the text family (codes are texts), else AutoEncoder."""
    if model.config.family == "text":
        from .textcodec import TextCodec

        return TextCodec(model, tokenizer, device)
    return AutoEncoder(model, tokenizer, device)


def load(path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
    """Load a trained model directory in one call."""
    return AutoEncoder.from_pretrained(path, device)
