"""A corpus's rows written in a shuffled order with sequential reads only (an external shuffle).

Gathering rows in random order from a memory-mapped Arrow file touches every page of it in every
window (the kernel maps the neighbours of each page read), and Arrow's `take` on a chunked string
column first joins the whole column into one copy. Instead the rows are read front to back, each
sent to the bucket of its output position (a scratch Arrow stream per `BUCKET_ROWS` positions), and
each bucket is then put in order in memory: memory holds one window and one bucket, never the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter

from .pages import arrow_windows

BUCKET_ROWS = 100_000  # output positions per scratch bucket
READ_ROWS = 50_000  # source rows read between page releases
_POSITION = "__position"


def write_in_order(dataset: datasets.Dataset, order: np.ndarray, outputs: Sequence[tuple[Path, int]], scratch: Path) -> None:
    """Write the rows `order[0], order[1], ...` of `dataset` (no indices mapping) as Arrow files that
    `datasets.Dataset.from_file` reads: the first `outputs[0][1]` rows to `outputs[0][0]`, the next
    `outputs[1][1]` to `outputs[1][0]`, and so on. `scratch` is an empty directory, emptied again."""
    if sum(count for _, count in outputs) != len(order):
        raise ValueError("the outputs' row counts must add up to the rows ordered")
    position = np.full(len(dataset), -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    n_buckets = -(-len(order) // BUCKET_ROWS)
    schema = dataset.features.arrow_schema.append(pa.field(_POSITION, pa.int64()))
    buckets = [pa.ipc.new_stream(str(scratch / f"{b}.arrows"), schema) for b in range(n_buckets)]
    start = 0
    for window in arrow_windows(dataset, READ_ROWS):
        where = position[start : start + len(window)]
        start += len(window)
        kept = np.flatnonzero(where >= 0)
        kept = kept[np.argsort(where[kept] // BUCKET_ROWS, kind="stable")]
        rows = window.append_column(_POSITION, pa.array(where)).take(kept).cast(schema)
        bucket_of = where[kept] // BUCKET_ROWS
        cuts = [0, *(np.flatnonzero(np.diff(bucket_of)) + 1), len(kept)]
        for a, b in zip(cuts, cuts[1:]):
            buckets[bucket_of[a]].write_table(rows.slice(a, b - a))
    for bucket in buckets:
        bucket.close()
    _write_buckets(dataset.features, n_buckets, outputs, scratch)


def _write_buckets(features: datasets.Features, n_buckets: int, outputs: Sequence[tuple[Path, int]], scratch: Path) -> None:
    """Each bucket in turn, in position order, cut at the outputs' boundaries."""
    bounds = np.cumsum([0] + [count for _, count in outputs])
    writers = [ArrowWriter(path=str(path), features=features) for path, _ in outputs]
    for b in range(n_buckets):
        file = scratch / f"{b}.arrows"
        with pa.OSFile(str(file)) as source:  # read into memory, not mapped: the bucket is dropped after
            rows = pa.ipc.open_stream(source).read_all()
        rows = rows.take(np.argsort(rows.column(_POSITION).to_numpy())).drop_columns([_POSITION])
        first = b * BUCKET_ROWS
        for i, writer in enumerate(writers):
            lo, hi = max(bounds[i], first), min(bounds[i + 1], first + len(rows))
            if lo < hi:
                writer.write_table(rows.slice(lo - first, hi - lo))
        file.unlink()
    for writer in writers:
        writer.finalize()
        writer.close()
