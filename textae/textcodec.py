"""A trained text-family model as one object: its codes are short texts made of the input's words.

`encode` / `summarize` write the middle text, `decode` expands a middle text back into a sentence,
`reconstruct` does both. Inputs and outputs keep their order; batches group similar lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .autoencoder import AutoEncoder
from .errors import TextAEError

NOT_VECTORS = "a text-family model's codes are texts, not vectors: use summarize, encode or decode"


class TextCodec(AutoEncoder):
    """Summarise (compress to at most `max_words` words) and expand back."""

    text_codes = True

    def require_vector_codes(self, verb: str) -> None:
        raise TextAEError(f"{verb} moves through a vector code space; {NOT_VECTORS} (or train an ae / vae / vq model)")

    @property
    def code_shape(self) -> tuple[int, ...]:
        raise TextAEError(NOT_VECTORS)

    def code_tensor(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        raise TextAEError(NOT_VECTORS)

    @torch.no_grad()
    def summarize(self, texts: Sequence[str], max_words: int | None = None, ratio: float | None = None,
                  phrase_weight: float | None = None, fluency_weight: float | None = None, batch_size: int = 128,
                  progress: bool = False) -> list[str]:
        """Each text's middle text: its best words in their order, at most `max_words` words
        (default: the model's budget) and `ratio` of the text's words. `phrase_weight` (the cost of
        each break between kept phrases) and `fluency_weight` (of the corpus LM's surprise at a
        break) weigh readability against the words' own scores (defaults: the model's); both 0 keep
        the best-scored words wherever they are. Empty texts give ""."""
        if max_words is not None and max_words < 1:
            raise TextAEError(f"--max-words must be at least 1, got {max_words}")
        if ratio is not None and not 0 < ratio <= 1:
            raise TextAEError(f"the ratio must be in (0, 1], got {ratio}")
        for name, weight in (("phrase", phrase_weight), ("fluency", fluency_weight)):
            if weight is not None and weight < 0:
                raise TextAEError(f"--{name}-weight must be >= 0, got {weight}")
        if fluency_weight and self.model.prior is None:
            raise TextAEError("this model has no corpus LM to judge fluency (it was trained with fluency_weight 0 and "
                              "prior_weight 0); pass --fluency-weight 0, or retrain with model.bottleneck.fluency_weight > 0")
        ids = self.token_ids(texts)
        compress = lambda batch: self.model.compress(batch, max_words, ratio, fluency_weight, phrase_weight)
        middles = self._over_ids(ids, lambda batch: self.detokenize(compress(batch)), batch_size, "summarizing", progress)
        return [text if len(row) > 1 else "" for text, row in zip(middles, ids)]

    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> list[str]:  # type: ignore[override]
        """The middle texts (the text family's codes), in input order."""
        return self.summarize(texts, batch_size=batch_size, progress=progress)

    @torch.no_grad()
    def decode(self, codes: Sequence[str], batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:  # type: ignore[override]
        """Sentences rebuilt from middle texts (any short text works: it is read like the compressor's output)."""
        if isinstance(codes, np.ndarray) and codes.dtype.kind not in "OU":
            raise TextAEError("a text-family model decodes texts; pass the codes `textae encode` wrote with this model")
        limit = self.model.config.max_positions
        ids = [x[:limit] or [self.model.config.unk_token_id]
               for x in self.tokenizer([str(c) for c in codes], add_special_tokens=False)["input_ids"]]
        return self._over_ids(ids, lambda batch: self.detokenize(self.model.generate(batch, **generate)),
                              batch_size, "decoding", progress)

    def reconstruct(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, **generate: Any) -> list[str]:
        """Text → middle text → text, in input order."""
        return self.decode(self.summarize(texts, batch_size=batch_size, progress=progress), batch_size, progress, **generate)

    def heldout_reconstructions(self, texts: Sequence[str], batch_size: int = 128) -> tuple[list[str], dict[str, float]]:
        """The sentences rebuilt from the middle texts, and how long those summaries are."""
        middles = self.summarize(texts, batch_size=batch_size)
        words = sum(len(m.split()) for m in middles) / max(1, len(middles))
        return self.decode(middles, batch_size=batch_size), {"summary_words": words}
