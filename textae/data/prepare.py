"""From a source to train/validation rows: clean, split into sentences, filter, dedup, hold out.

Every step is deterministic for a given DataConfig, so a run can be reproduced from its config.
"""

import hashlib
import logging
import os
from dataclasses import dataclass

import datasets
import numpy as np

from textae.data.clean import clean_text
from textae.data.files import QUIET_BELOW_ROWS, quiet
from textae.data.pages import ReleasingPages, source_files
from textae.data.sentences import split_sentences
from textae.data.sources import TEXT, load_source
from textae.errors import DataError

DOC_ID = "doc_id"
HASH = "_hash"  # of each cleaned text, for deduplication; dropped before `prepare` returns
MIN_ROWS_PER_PROCESS = 10_000  # below this many rows per process, one process prepares faster
log = logging.getLogger("textae")
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
    num_proc: int | None = None  # processes that clean, split and tokenize; None = every core this process may use
    streaming: bool = False  # read files or a hub dataset as a stream, written to disk as it comes

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
        if self.num_proc is not None and self.num_proc < 1:
            raise DataError(f"num_proc must be >= 1, or null for every core; got {self.num_proc}")
        if self.max_examples is not None and self.validation_size >= self.max_examples:
            raise DataError(
                f"validation_size ({self.validation_size:g} rows) must be below max_examples "
                f"({self.max_examples}) to leave training rows"
            )


def num_processes(cfg: DataConfig) -> int:
    """The processes preparation uses: `num_proc`, or every core this process may run on."""
    return cfg.num_proc or len(os.sched_getaffinity(0))


def map_processes(num_proc: int, rows: int) -> int | None:
    """Worker processes for a `datasets` map over `rows` rows; None (this process) where starting
    workers would cost more than it saves."""
    return num_proc if num_proc > 1 and rows >= MIN_ROWS_PER_PROCESS * num_proc else None


def prepare(cfg: DataConfig) -> datasets.DatasetDict:
    """load_source + clean + optional sentence split + length filter + dedup + deterministic split.

    Returns "train" and "validation" with a cleaned `text`, a `doc_id` (the document's row index in
    `load_source`'s output) and every other source column copied to each of the document's rows.
    Cleaning runs in `num_processes(cfg)` processes; deduplication compares 64-bit hashes of the
    cleaned texts, so no text is held in memory, and the rows stay memory-mapped Arrow.
    """
    rows, order = prepared_rows(cfg)
    return datasets.DatasetDict({split: rows.select(indices) for split, indices in order.items()})


def prepared_rows(cfg: DataConfig) -> tuple[datasets.Dataset, dict[str, np.ndarray]]:
    """`prepare`'s rows in source order, and each split's row indices into them, in split order."""
    raw = load_source(cfg.source, cfg.text_column, streaming=cfg.streaming)
    features = raw.features.copy()
    features[TEXT] = datasets.Value("string")
    features[DOC_ID] = datasets.Value("int64")
    features[HASH] = datasets.Value("int64")
    with quiet(raw.num_rows < QUIET_BELOW_ROWS):  # a small corpus is prepared in a blink: no bar
        rows = raw.map(
            ReleasingPages(_examples, source_files(raw)),
            batched=True,
            with_indices=True,
            remove_columns=raw.column_names,
            features=features,
            fn_kwargs={"split": cfg.split_sentences, "min_words": cfg.min_words, "max_words": cfg.max_words},
            num_proc=map_processes(num_processes(cfg), raw.num_rows),
            load_from_cache_file=False,  # the cache key cannot see changes to the cleaning code
            desc="Preparing examples",
        )
    keep = np.arange(len(rows))
    if cfg.dedup:
        keep = _first_occurrences(rows.data.column(HASH).to_numpy())
        if len(keep) < len(rows):
            log.info("dropped %d duplicate sentences of %d", len(rows) - len(keep), len(rows))
    rows = rows.remove_columns(HASH)
    keep = keep[np.random.default_rng(cfg.seed).permutation(len(keep))][: cfg.max_examples]
    n_val = _validation_rows(cfg, len(keep))
    return rows, {"train": keep[n_val:], "validation": keep[:n_val]}


def _examples(
    batch: dict[str, list], indices: list[int], *, split: bool, min_words: int, max_words: int | None
) -> dict[str, list]:
    """Cleaned texts (sentences if `split`) within the length limits, other columns copied along."""
    columns = [column for column in batch if column not in (DOC_ID, HASH)]  # a source `doc_id` is replaced
    out: dict[str, list] = {column: [] for column in columns} | {DOC_ID: [], HASH: []}
    for row, (text, doc_id) in enumerate(zip(batch[TEXT], indices)):
        pieces = split_sentences(clean_text(text, keep_newlines=True)) if split else [clean_text(text)]
        for piece in pieces:
            n_words = len(piece.split())
            if n_words == 0 or n_words < min_words or (max_words is not None and n_words > max_words):
                continue
            for column in columns:
                out[column].append(piece if column == TEXT else batch[column][row])
            out[DOC_ID].append(doc_id)
            out[HASH].append(text_hash(piece))
    return out


def text_hash(text: str) -> int:
    """A 64-bit hash of a text, the same in every process and run (Python's `hash` of a str is not)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Indices of the first row of each distinct text, in order, from the texts' hashes (texts are
    already whitespace-normalised; two texts share a 64-bit hash about once in 10^19 pairs)."""
    return np.sort(np.unique(hashes, return_index=True)[1])


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
