"""A trained model directory as one object: model + tokenizer with text ↔ code conversion.

`textae.load(path)` (loading.py) picks the front end a model needs; this one is for models whose
codes are vectors or integers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .errors import TextAEError, first_line
from .modeling import TextAEConfig, TextAEPreTrainedModel, get_family, model_class
from .tokenizer import load_tokenizer

log = logging.getLogger("textae")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")
T = TypeVar("T")


MAX_BATCH_TOKENS = 4096  # padded tokens a batch of texts may hold (long texts: fewer rows a batch)


def in_batches(lengths: Sequence[int], fn: Callable[[list[int]], Sequence[T]], batch_size: int, desc: str,
               progress: bool = False, max_tokens: int = MAX_BATCH_TOKENS) -> list[T]:
    """`fn` over batches of row indices of similar length (less padding); one result per row, in input order.
    A batch holds at most `batch_size` rows and, padded, at most `max_tokens` tokens (unless one row is
    longer), so long texts come in smaller batches: the activations' peak memory does not grow with length."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    for i in order:  # ascending lengths: the row being added is the longest of its batch
        if not chunks or len(chunks[-1]) >= batch_size or (len(chunks[-1]) + 1) * lengths[i] > max_tokens:
            chunks.append([])
        chunks[-1].append(i)
    out: list[Any] = [None] * len(lengths)
    for batch in tqdm(chunks, desc=desc, unit="batch", disable=not progress or len(chunks) < 2):
        for i, result in zip(batch, fn(batch)):
            out[i] = result
    return out


def load_model(path: str | Path) -> TextAEPreTrainedModel:
    """The model of a directory written by `textae train` (safetensors weights only), of its family's class."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise TextAEError(
            f"{path} is not a textae model directory (needs config.json and model.safetensors); "
            "pass the `final/` folder of a training run, e.g. runs/default/final"
        )
    try:
        config = json.loads((path / "config.json").read_text())
        with safe_open(path / "model.safetensors", framework="pt") as weights:
            config["bottleneck"] = get_family(config.get("family", "ae")).saved_options(config.get("bottleneck") or {},
                                                                                         set(weights.keys()))
        config = TextAEConfig.from_dict(config)
        model, info = model_class(config.family).from_pretrained(path, config=config, use_safetensors=True,
                                                                 output_loading_info=True)
    except (OSError, ValueError, RuntimeError, AttributeError, SafetensorError) as err:  # damaged files, an unknown family
        raise TextAEError(f"cannot load the model in {path} ({first_line(err)}); it is damaged or incomplete: "
                          "copy it again or retrain it") from None
    if info["missing_keys"]:  # Hugging Face would fill them with random values and say nothing
        missing = sorted(info["missing_keys"])
        raise TextAEError(f"the model in {path} has no weights for {len(missing)} of its parameters ({missing[0]}, ...): "
                          "it was written by another textae version or config; retrain it with this one")
    return model


def default_device() -> str:
    """Where models run unless told otherwise: the GPU when torch sees one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class AutoEncoder:
    """Model + tokenizer with batched, order-preserving text ↔ code conversion."""

    text_codes = False  # codes are vectors or integers (stored as parquet), not texts

    def __init__(self, model: TextAEPreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 device: str | torch.device | None = None):
        self.device = torch.device(device or default_device())
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.path: Path | None = None  # the model directory, when loaded from one

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> AutoEncoder:
        """This front end over a model directory written by `textae train`."""
        front = cls(load_model(path), load_tokenizer(path), device)
        front.path = Path(path)
        return front

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    # ----- batching -----------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Content ids + EOS, truncated to the model's positions (long documents keep their start)."""
        limit = self.model.config.max_positions - 1
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        too_long = sum(len(x) > limit for x in ids)
        if too_long:
            log.warning("%d of %d texts are longer than %d tokens; only their first %d tokens are encoded",
                        too_long, len(ids), limit, limit)
        return [x[:limit] + [self.model.config.eos_token_id] for x in ids]

    def pad(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Token rows → one PAD-padded (B, T) tensor on the model's device."""
        out = torch.full((len(rows), max(map(len, rows))), self.model.config.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(self.device)

    def detokenize(self, generated: torch.Tensor) -> list[str]:
        eos = self.model.config.eos_token_id
        rows = [row[: row.index(eos)] if eos in row else row for row in generated.tolist()]
        # one line per text: a sampled byte piece can be a line break, which no training text holds
        return [_LINE_BREAKS.sub(" ", t) for t in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]

    def _over_ids(self, ids: Sequence[Sequence[int]], fn: Callable[[torch.Tensor], Sequence[T]], batch_size: int,
                  desc: str, progress: bool) -> list[T]:
        """`fn` over padded batches of token rows of similar length; one result per row, in input order."""
        return in_batches([len(x) for x in ids], lambda batch: fn(self.pad([ids[i] for i in batch])), batch_size, desc,
                          progress)

    # ----- public API ---------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.model.config.family

    def require_vector_codes(self, verb: str) -> None:
        """Latent-space verbs need vector or integer codes: every model this front end holds has them."""

    def summarize(self, texts: Sequence[str], max_words: int | None = None, ratio: float | None = None,
                  batch_size: int = 128, progress: bool = False) -> list[str]:
        raise TextAEError(f"{self.path or 'this model'} is a {self.family} model; summaries need a text-family model "
                          "(textae train --config configs/text.yaml)")

    @property
    def code_shape(self) -> tuple[int, ...]:
        """One stored code: (K, D) floats (ae), (Z,) floats (vae), (K·heads,) integers (vq)."""
        return self.model.bottleneck.code_shape

    @property
    def integer_codes(self) -> bool:
        return not self.model.bottleneck.code_dtype.is_floating_point

    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """Codes (N, *code_shape), one per text, in input order: float32, or int64 for integer codes."""
        return self.encode_ids(self.token_ids(texts), batch_size, progress)

    @torch.no_grad()
    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """`encode` for token rows that already end in EOS (the trainer's prepared sentences)."""
        dtype = np.int64 if self.integer_codes else np.float32

        def encode_batch(batch: torch.Tensor) -> np.ndarray:
            code = self.model.encode(batch)
            return (code if self.integer_codes else code.float()).cpu().numpy()

        rows = self._over_ids(ids, encode_batch, batch_size, "encoding", progress)
        return np.stack(rows).astype(dtype, copy=False) if rows else np.zeros((0, *self.code_shape), dtype=dtype)

    def code_tensor(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Stored codes checked against this model (shape, integer or float, values) as a tensor on its device."""
        arr = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes)
        if arr.ndim != 1 + len(self.code_shape) or tuple(arr.shape[1:]) != self.code_shape:
            raise TextAEError(
                f"codes have shape {tuple(arr.shape)}; this {self.family} model expects (N, {', '.join(map(str, self.code_shape))})"
            )
        if self.integer_codes and not np.issubdtype(arr.dtype, np.integer):
            raise TextAEError(f"this {self.family} model's codes are integers; pass the codes `textae encode` wrote")
        dtype = torch.long if self.integer_codes else torch.float32
        code = torch.as_tensor(arr, dtype=dtype, device=self.device)
        try:
            self.model.bottleneck.check_code(code)
        except ValueError as err:
            raise TextAEError(str(err)) from None
        return code

    def decoder_vectors(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Stored codes → the vectors the decoder reads, flattened (N, K·D): one space for every family."""
        with torch.no_grad():
            return self.model.decoder_code(self.code_tensor(codes)).flatten(1).float().cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray | torch.Tensor, batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Texts from stored codes; `generate` takes the model's `generate` options (num_beams, do_sample, …)."""
        codes = self.code_tensor(codes)
        return in_batches([0] * len(codes), lambda batch: self.detokenize(self.model.generate(codes[batch], **generate)),
                          batch_size, "decoding", progress)

    @torch.no_grad()
    def reconstruct(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Text → code → text, in input order."""
        return self._over_ids(self.token_ids(texts),
                              lambda ids: self.detokenize(self.model.generate(self.model.encode(ids), **generate)),
                              batch_size, "reconstructing", progress)

    def heldout_reconstructions(self, texts: Sequence[str], batch_size: int = 128) -> tuple[list[str], dict[str, float]]:
        """What evaluation compares with the references: the reconstructions, and any numbers about
        the way there (none here)."""
        return self.reconstruct(texts, batch_size=batch_size), {}
