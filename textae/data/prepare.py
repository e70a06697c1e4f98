"""From a source to train/validation rows: clean, split into sentences, filter, dedup, hold out.

Every step is deterministic for a given DataConfig, so a run can be reproduced from its config.
"""

from dataclasses import dataclass

import datasets
import numpy as np

from textae.data.clean import clean_text
from textae.data.files import QUIET_BELOW_ROWS, quiet
from textae.data.sentences import split_sentences
from textae.data.sources import TEXT, load_source
from textae.errors import DataError

DOC_ID = "doc_id"
# The default run's length filter (whitespace words); evaluations and plots reuse it so they see
# text like the text the model was trained on.
SENTENCE_MIN_WORDS = 4
SENTENCE_MAX_WORDS = 40


@dataclass
class DataConfig:
    """What text to train on and how to cut it into examples."""

    source: str = "news"  # built-in name (news, sms, trec), a local file path, or a HF hub dataset name
    text_column: str = "text"  # column holding the text; other columns (labels, ids) are kept
    split_sentences: bool = True  # split documents into sentences (one row per sentence)
    min_words: int = 1  # drop rows with fewer whitespace words
    max_words: int | None = None  # drop rows with more whitespace words
    dedup: bool = True  # drop exact duplicate texts (after whitespace normalisation)
    validation_size: float = 0.05  # fraction (<1) or absolute count (>=1) of rows held out
    seed: int = 0
    max_examples: int | None = None  # cap on rows kept (after filtering), for quick runs

    def __post_init__(self) -> None:
        # Messages start with the field's name: the config loader prefixes the section ("data.").
        for name in ("source", "text_column"):
            if not getattr(self, name).strip():
                raise DataError(f"{name} must not be empty")
        if self.min_words < 0:
            raise DataError(f"min_words must be >= 0, got {self.min_words}")
        if self.max_words is not None and self.max_words < max(self.min_words, 1):
            raise DataError(f"max_words ({self.max_words}) must be >= min_words and >= 1")
        if self.validation_size <= 0 or (
            self.validation_size >= 1 and self.validation_size != int(self.validation_size)
        ):
            raise DataError(
                f"validation_size must be a fraction in (0, 1) or a whole count >= 1, "
                f"got {self.validation_size}"
            )
        if self.max_examples is not None and self.max_examples < 2:
            raise DataError(
                f"max_examples must be >= 2 (a train and a validation row), got {self.max_examples}"
            )
        if self.max_examples is not None and self.validation_size >= self.max_examples:
            raise DataError(
                f"validation_size ({self.validation_size:g} rows) must be below max_examples "
                f"({self.max_examples}) to leave training rows"
            )


def prepare(cfg: DataConfig) -> datasets.DatasetDict:
    """load_source + clean + optional sentence split + length filter + dedup + deterministic split.

    Returns "train" and "validation" with a cleaned `text`, a `doc_id` (the document's row index in
    `load_source`'s output) and every other source column copied to each of the document's rows.
    """
    raw = load_source(cfg.source, cfg.text_column)
    features = raw.features.copy()
    features[TEXT] = datasets.Value("string")
    features[DOC_ID] = datasets.Value("int64")
    with quiet(raw.num_rows < QUIET_BELOW_ROWS):  # a small corpus is prepared in a blink: no bar
        rows = raw.map(
            _examples,
            batched=True,
            with_indices=True,
            remove_columns=raw.column_names,
            features=features,
            fn_kwargs={"split": cfg.split_sentences, "min_words": cfg.min_words, "max_words": cfg.max_words},
            load_from_cache_file=False,  # the cache key cannot see changes to the cleaning code
            desc="Preparing examples",
        )
    texts = rows.data.column(TEXT).to_pylist()  # whole column at once: iterating rows is slow
    keep = _first_occurrences(texts) if cfg.dedup else np.arange(len(texts))
    keep = keep[np.random.default_rng(cfg.seed).permutation(len(keep))][: cfg.max_examples]
    n_val = _validation_rows(cfg, len(keep))
    return datasets.DatasetDict(
        train=rows.select(keep[n_val:]), validation=rows.select(keep[:n_val])
    )


def _examples(
    batch: dict[str, list], indices: list[int], *, split: bool, min_words: int, max_words: int | None
) -> dict[str, list]:
    """Cleaned texts (sentences if `split`) within the length limits, other columns copied along."""
    columns = [column for column in batch if column != DOC_ID]  # a source `doc_id` is replaced
    out: dict[str, list] = {column: [] for column in columns} | {DOC_ID: []}
    for row, (text, doc_id) in enumerate(zip(batch[TEXT], indices)):
        pieces = split_sentences(clean_text(text, keep_newlines=True)) if split else [clean_text(text)]
        for piece in pieces:
            n_words = len(piece.split())
            if n_words == 0 or n_words < min_words or (max_words is not None and n_words > max_words):
                continue
            for column in columns:
                out[column].append(piece if column == TEXT else batch[column][row])
            out[DOC_ID].append(doc_id)
    return out


def _first_occurrences(texts: list[str]) -> np.ndarray:
    """Indices of the first row of each distinct text (texts are already whitespace-normalised)."""
    seen: set[str] = set()
    keep = [i for i, text in enumerate(texts) if not (text in seen or seen.add(text))]
    return np.asarray(keep, dtype=np.int64)


def _validation_rows(cfg: DataConfig, n_rows: int) -> int:
    """How many rows to hold out: a count, or a fraction rounded but at least one."""
    if cfg.validation_size >= 1:
        n_val = int(cfg.validation_size)
    else:
        n_val = max(1, round(cfg.validation_size * n_rows))
    if n_val >= n_rows:
        raise DataError(
            f"only {n_rows} rows of {cfg.source} are left after filtering (min_words={cfg.min_words}, "
            f"max_words={cfg.max_words}); that cannot hold out {n_val} validation rows and keep a "
            "training row. Lower validation_size, relax the length limits, or use more data"
        )
    return n_val
