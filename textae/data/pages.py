"""Keep a pass over memory-mapped Arrow files from growing the process's resident set.

`datasets` reads its Arrow files through memory maps. Every page a process reads stays mapped,
and counted in its resident set, until the map closes, so one pass over a 10 M-sentence corpus
adds the corpus's size to the process's RSS although the kernel could drop those clean pages at
any time. What watches RSS (`ps`, wait4's peak, a batch system's RSS cap) does not see the
difference. Passes that read a whole corpus therefore read it in windows and release the pages of
each window when done: they stay in the page cache, and a later read maps them again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Collection, Iterator
from functools import cache

import datasets

MADV_DONTNEED = 4  # Linux: drop the pages from this process's map; a file-backed page is read again on access
WINDOW_ROWS = 10_000  # rows read between releases


@cache
def _madvise():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "madvise", None)
    if fn is not None:
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return fn


def release_mapped_pages(paths: Collection[str]) -> None:
    """Drop this process's resident pages of its memory maps of the files `paths` (a no-op where
    /proc/self/maps or madvise is missing). Safe for read-only maps of unchanged files: the data is
    the file's, so the next access reads the same bytes from the page cache or the disk."""
    madvise = _madvise()
    wanted = {os.path.realpath(p) for p in paths}
    if madvise is None or not wanted or not os.path.exists("/proc/self/maps"):
        return
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and "w" not in fields[1] and fields[5].rstrip("\n") in wanted:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                madvise(start, end - start, MADV_DONTNEED)


def source_files(dataset: datasets.Dataset) -> list[str]:
    """The Arrow files a dataset reads its rows from."""
    return [entry["filename"] for entry in dataset.cache_files]


def arrow_windows(dataset: datasets.Dataset, rows: int = WINDOW_ROWS) -> Iterator:
    """The dataset as Arrow tables of `rows` rows (its indices applied), its files' pages released
    after each one."""
    files = source_files(dataset)
    table = dataset.with_format("arrow")
    for start in range(0, len(dataset), rows):
        yield table[start : start + rows]
        release_mapped_pages(files)


def column_windows(dataset: datasets.Dataset, column: str, rows: int = WINDOW_ROWS) -> Iterator[list]:
    """One column of the dataset as Python lists of `rows` values, pages released after each."""
    for window in arrow_windows(dataset.select_columns(column), rows):
        yield window.column(column).to_pylist()


class ReleasingPages:
    """A batched `datasets` map or filter function that releases the pages of `files` (the
    dataset's own) every `every` rows it has been given, in whichever process runs it."""

    def __init__(self, fn: Callable, files: Collection[str], every: int = WINDOW_ROWS):
        self.fn, self.files, self.every, self.seen = fn, list(files), every, 0

    def __call__(self, batch, *args, **kwargs):
        out = self.fn(batch, *args, **kwargs)
        self.seen += len(batch) if isinstance(batch, list) else len(next(iter(batch.values()), []))
        if self.seen >= self.every:
            release_mapped_pages(self.files)
            self.seen = 0
        return out
