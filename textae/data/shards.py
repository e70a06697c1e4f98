"""Tokenized sentences on disk, read with constant memory (the layout of nanoGPT's prepare.py).

A split is two numpy files in one directory: `SPLIT.tokens.npy`, every sentence's token ids one
after another (uint16 when the vocabulary fits, else uint32), and `SPLIT.offsets.npy`, where
sentence i is tokens[offsets[i]:offsets[i + 1]]. Both are memory-mapped: a training process
holds the pages it reads, not the corpus. A directory is written under a temporary name and
renamed when complete, so a half-written one is never read.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import DataError

COMPLETE = "meta.json"  # written last: a directory without it was never finished


class TokenShards:
    """One split's sentences as token ids: `len`, `lengths` (N,) and `rows(indices)`."""

    def __init__(self, directory: str | Path, split: str):
        directory = Path(directory)
        self.tokens = np.load(directory / f"{split}.tokens.npy", mmap_mode="r")
        self.offsets = np.load(directory / f"{split}.offsets.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sentence (N,), in memory: 8 bytes a sentence."""
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> list[int]:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]].tolist()

    def rows(self, indices: Iterable[int]) -> list[list[int]]:
        return [self[i] for i in indices]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def write_split(directory: Path, split: str, batches: Iterable[pa.ListArray], total_tokens: int, rows: int,
                vocab_size: int) -> None:
    """Stream Arrow list arrays of token ids (one list per sentence) into `directory`'s files for
    `split`; the sizes are known beforehand. Arrow's flat values and offsets are copied as they are,
    with plain file writes: pages written through a memory map stay in the process's resident set
    until it is unmapped, so a large corpus would count twice against its memory."""
    dtype = token_dtype(vocab_size)
    offsets = np.empty(rows + 1, dtype=np.int64)
    offsets[0] = position = row = 0
    with open(directory / f"{split}.tokens.npy", "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total_tokens,)}
        np.lib.format.write_array_header_1_0(f, header)
        for batch in batches:
            starts = batch.offsets.to_numpy()
            flat = batch.values.to_numpy()[starts[0] : starts[-1]]
            if position + len(flat) > total_tokens or row + len(batch) > rows:
                raise RuntimeError(f"more than the expected {rows} rows and {total_tokens} tokens")
            f.write(flat.astype(dtype).tobytes())
            offsets[row + 1 : row + 1 + len(batch)] = position + starts[1:] - starts[0]
            position, row = position + len(flat), row + len(batch)
    if (position, row) != (total_tokens, rows):
        raise RuntimeError(f"wrote {row} rows and {position} tokens; expected {rows} and {total_tokens}")
    np.save(directory / f"{split}.offsets.npy", offsets)


def build_once(directory: Path, build: Callable[[Path], dict], what: str) -> bool:
    """`build(tmp)` fills a temporary directory, which is then renamed to `directory`, with the
    metadata `build` returns saved as meta.json, the completion mark. A directory that is already
    complete is kept as it is (returns False: nothing was built). A failed build (a full disk, a
    kill) leaves nothing under `directory`."""
    if (directory / COMPLETE).is_file():
        return False
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = build(tmp)
        (tmp / COMPLETE).write_text(json.dumps(meta, indent=1) + "\n")
        if (directory / COMPLETE).is_file():  # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        shutil.rmtree(directory, ignore_errors=True)  # an unfinished one
        os.replace(tmp, directory)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"the disk filled up while writing {what} to {directory.parent}; free some space or "
                            "point TEXTAE_CACHE to a larger disk (nothing half-written was kept)") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True
