"""`textae score`: a streaming, resumable batch job that scores every row of a file.

Memory stays flat however long the file: rows stream in, fill a bounded buffer, are scored in
batches of similar length, and leave in input order. Each process appends its rows to a part
file (`OUT.part-R-of-W.jsonl`) and, after every buffer, records how many rows and bytes are safely
on disk in a progress file written after an fsync. `--resume` truncates the part back to that
point and skips that many rows, so a job killed at any moment (even `kill -9`) finishes with no
duplicated and no missing rows. Under `accelerate launch`, process R of W scores rows
i ≡ R (mod W), the rule `datasets.distributed.split_dataset_by_node` applies to streams, and the
main process interleaves the parts back into input order.
"""

from __future__ import annotations

import csv
import ctypes
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from functools import cache
from itertools import chain, islice
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import DataError, TextAEError
from ..locks import FileLock
from .detector import DETECTOR_DIR, NO_FIT_SCORER, AnomalyDetector
from .rows import Row, count_rows, read_stream

log = logging.getLogger("textae")
SCORE_FORMATS = (".jsonl", ".csv", ".parquet")
COLUMNS = ("id", "score", "nll", "n_tokens", "is_outlier", "reason")


@dataclass
class JobSummary:
    rows: int  # rows written
    scored: int  # rows with a score
    outliers: int  # rows flagged (0 when no threshold is set)
    resumed_from: int  # rows already done before this run (-1: the output was already complete)
    output: Path


def load_detector(model_dir: str | Path, scorer: str | None = None, aggregate: str | None = None,
                  batch_size: int = 128) -> AnomalyDetector:
    """The model directory's fitted detector, or an unfitted one for a scorer that needs no fit."""
    from accelerate import PartialState

    from ..loading import load

    ae = load(model_dir, device=PartialState().device)  # under accelerate launch: this process's GPU
    saved = Path(model_dir) / DETECTOR_DIR / "detector.json"
    if saved.is_file():
        det = AnomalyDetector.load(ae, batch_size=batch_size)
        if scorer in (None, det.scorer) and aggregate in (None, det.aggregate):
            return det
    det = AnomalyDetector(ae, scorer or NO_FIT_SCORER, aggregate=aggregate or "mean", batch_size=batch_size)
    if det.needs_fit:
        raise TextAEError(f"the {det.scorer} scorer compares with normal texts, and {model_dir} has no detector fitted "
                          f"with it: run textae fit-detector --model {model_dir} --input NORMAL_TEXTS --scorer {det.scorer}")
    return det


def score_file(
    detector: AnomalyDetector,
    input_path: str,
    output: str | Path,
    text_column: str = "text",
    id_column: str | None = None,
    input_format: str | None = None,
    threshold: float | None = None,
    contamination: float | None = None,
    resume: bool = False,
    buffer_rows: int = 4096,
    progress: bool = True,
    overwrite: bool = False,
) -> JobSummary:
    """Score every row of `input_path` ('-' = stdin) into `output` (.jsonl, .csv or .parquet), in input order.

    While it runs, the job holds a lock beside `output` that a second job on the same output
    respects (a killed job's lock dies with it). An existing output is replaced only with
    `overwrite`; `resume` finishes an unfinished job or leaves a finished one as it is."""
    from accelerate import PartialState

    output = Path(output)
    rank = PartialState().process_index
    lock = FileLock(output.with_name(f"{output.name}.lock-{rank}"), f"{output}",
                    "wait for the job writing it to finish, or choose another --output")
    with lock:
        return _score_file(detector, input_path, output, text_column, id_column, input_format, threshold, contamination,
                           resume, buffer_rows, progress, overwrite)


def _score_file(detector: AnomalyDetector, input_path: str, output: Path, text_column: str, id_column: str | None,
                input_format: str | None, threshold: float | None, contamination: float | None, resume: bool,
                buffer_rows: int, progress: bool, overwrite: bool) -> JobSummary:
    from accelerate import PartialState

    if output.suffix.lower() not in SCORE_FORMATS:
        raise DataError(f"cannot write '{output.name}': scores go to {', '.join(SCORE_FORMATS)}")
    if threshold is not None and contamination is not None:
        raise TextAEError("pass --threshold or --contamination, not both")
    if contamination is not None:
        detector.set_contamination(contamination)
    cut = threshold if threshold is not None else detector.threshold_
    if resume and overwrite:
        raise TextAEError("pass --resume to finish a job or --overwrite to start it again, not both")
    state = PartialState()
    rank, world = state.process_index, state.num_processes
    if overwrite and state.is_main_process:
        _remove_job(output)
    state.wait_for_everyone()
    if output.exists() and not resume and not overwrite:
        raise TextAEError(f"{output} already exists; pass --overwrite to score again, or choose another --output")
    stream = read_stream(input_path, text_column, id_column, input_format)
    first = list(islice(stream, 1))  # a wrong column or format fails here, before any output exists
    if not first:
        raise DataError(f"{'stdin' if input_path == '-' else input_path} has no rows to score; check that it is the right input")
    fingerprint = _fingerprint(input_path, detector, cut, text_column, id_column, world)
    part = Part(output, rank, world)
    done = part.open(fingerprint, resume)
    if done is None:  # a finished job: nothing left to do
        return JobSummary(0, 0, 0, -1, output)
    try:
        total = count_rows(input_path, input_format)
        mine = None if total is None else len(range(rank, total, world))
        with tqdm(total=mine, initial=done, unit="rows", desc="scoring", disable=not progress or rank != 0,
                  dynamic_ncols=True, smoothing=0.1) as bar:
            rows = (r for r in chain(first, stream) if r.index % world == rank)
            for buffer in _buffers(rows, done, buffer_rows):
                records = _score_rows(detector, buffer, cut)
                part.append(records)
                bar.update(len(records))
                _release_freed_memory()
    except DataError:  # the input cannot be read to its end (e.g. a truncated .gz): a fresh job leaves nothing behind
        part.discard_fresh()
        raise
    state.wait_for_everyone()
    counts = _merge(output, world) if state.is_main_process else (0, 0, 0)
    state.wait_for_everyone()
    return JobSummary(*counts, done, output)


def _buffers(rows: Iterator[Row], skip: int, size: int) -> Iterator[list[Row]]:
    buffer: list[Row] = []
    for n, row in enumerate(rows):
        if n < skip:
            continue
        buffer.append(row)
        if len(buffer) >= size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def _release_freed_memory() -> None:
    """Hand the heap pages freed by a buffer's tensors back to the OS (glibc keeps them otherwise, and over
    a million rows of varying shapes the resident set creeps up); a no-op off glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _score_rows(detector: AnomalyDetector, rows: list[Row], cut: float | None) -> list[dict[str, Any]]:
    """One output record per row; rows without usable text get null figures and a reason."""
    usable = [i for i, r in enumerate(rows) if r.text is not None and r.text.strip()]
    scores = np.full(len(rows), np.nan)
    nll = np.full(len(rows), np.nan)
    tokens = np.zeros(len(rows), dtype=np.int64)
    if usable:
        feats = detector.features([rows[i].text for i in usable])  # batches inside by length
        scores[usable] = detector.scores(feats)
        nll[usable] = feats.nll
        tokens[usable] = feats.n_tokens
    out, usable_set = [], set(usable)
    for i, row in enumerate(rows):
        ok = i in usable_set
        score = float(scores[i]) if ok and math.isfinite(scores[i]) else None
        reason = row.reason or (None if ok else "empty text")
        out.append({
            "id": row.id, "score": score, "nll": float(nll[i]) if ok else None,
            "n_tokens": int(tokens[i]) if ok else None,
            "is_outlier": None if score is None or cut is None else bool(score > cut),
            "reason": reason,
        })
    return out


def _fingerprint(input_path: str, det: AnomalyDetector, cut: float | None, text_column: str,
                 id_column: str | None, world: int) -> dict[str, Any]:
    """What must match for a resumed job to continue the same output."""
    src: dict[str, Any] = {"input": "-"}
    if input_path != "-":
        stat = Path(input_path).stat()
        src = {"input": str(Path(input_path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {**src, "model": str(Path(det.ae.path or "").resolve()), "scorer": det.scorer, "members": list(det.members),
            "aggregate": det.aggregate, "threshold": cut, "text_column": text_column, "id_column": id_column,
            "processes": world}


class Part:
    """One process's rows as JSON lines, plus a progress file naming the rows and bytes safely written."""

    def __init__(self, output: Path, rank: int, world: int):
        self.output = output
        self.path = part_path(output, rank, world)
        self.progress = self.path.with_name(self.path.name + ".progress")
        self.rows = 0
        self.fresh = False  # whether this run created the part (a resumed one holds earlier runs' rows)

    def open(self, fingerprint: dict[str, Any], resume: bool) -> int | None:
        """Rows already done (0 for a fresh job), or None when `output` is a finished job to keep."""
        if self.progress.is_file():
            state = json.loads(self.progress.read_text())
            if not resume:
                raise TextAEError(f"an unfinished job left {state['rows']} rows for {self.output}; "
                                  "add --resume to finish it, or delete its .part files to start over")
            if state["fingerprint"] != fingerprint:
                changed = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
                raise TextAEError(f"cannot resume {self.output}: {', '.join(changed)} changed since it started; "
                                  "rerun without --resume after deleting its .part files")
            with open(self.path, "r+b") as f:
                f.truncate(state["bytes"])  # drop rows written after the last recorded progress
            self.rows, self.fingerprint = state["rows"], fingerprint
            log.info("resuming %s after %d rows", self.output, self.rows)
            return self.rows
        if resume and self.output.is_file():
            log.info("%s is already complete; nothing to resume", self.output)
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.fingerprint, self.fresh = fingerprint, True
        self._record()
        return 0

    def discard_fresh(self) -> None:
        """Remove the part and its progress file if this run started them, so that a failed fresh job
        (unreadable input) blocks no rerun; a resumed job's part keeps its earlier rows."""
        if self.fresh:
            for path in (self.path, self.progress, self.progress.with_name(self.progress.name + ".tmp")):
                path.unlink(missing_ok=True)

    def append(self, records: list[dict[str, Any]]) -> None:
        with open(self.path, "ab") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode())
            f.flush()
            os.fsync(f.fileno())  # rows on disk before the progress file says so
        self.rows += len(records)
        self._record()

    def _record(self) -> None:
        state = {"rows": self.rows, "bytes": self.path.stat().st_size, "fingerprint": self.fingerprint}
        tmp = self.progress.with_name(self.progress.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.progress)


def _remove_job(output: Path) -> None:
    """A finished output and any unfinished job's parts (of any number of processes): --overwrite."""
    output.unlink(missing_ok=True)
    for leftover in output.parent.glob(f"{output.name}.part-*"):
        leftover.unlink()


def part_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.part-{rank}-of-{world}.jsonl")


def _merge(output: Path, world: int) -> tuple[int, int, int]:
    """Interleave the parts (row i is line i // W of part i % W) into `output` in its format.
    Returns the rows, the scored rows and the flagged rows."""
    parts = [part_path(output, r, world) for r in range(world)]
    readers = [open(p, "rb") for p in parts]
    tmp = output.with_name(output.name + ".tmp")
    try:
        writer = _Writer(tmp, output.suffix.lower())
        n = scored = flagged = 0
        while line := readers[n % world].readline():
            record = json.loads(line)
            writer.write(line, record)
            n += 1
            scored += record["score"] is not None
            flagged += bool(record["is_outlier"])
        writer.close()
    finally:
        for f in readers:
            f.close()
    os.replace(tmp, output)
    for p in parts:
        p.with_name(p.name + ".progress").unlink(missing_ok=True)  # the job is finished from here on
        p.unlink(missing_ok=True)
    return n, scored, flagged


class _Writer:
    """Streams JSON lines into .jsonl, .csv or .parquet (row groups of 64k rows)."""

    def __init__(self, path: Path, suffix: str):
        self.suffix, self.path = suffix, path
        self.pending: list[dict[str, Any]] = []
        self.file = open(path, "wb") if suffix == ".jsonl" else open(path, "w", newline="", encoding="utf-8") if suffix == ".csv" else None
        self.csv = csv.DictWriter(self.file, fieldnames=COLUMNS) if suffix == ".csv" else None
        if self.csv:
            self.csv.writeheader()
        self.parquet: pq.ParquetWriter | None = None

    def write(self, line: bytes, record: dict[str, Any]) -> None:
        if self.suffix == ".jsonl":
            self.file.write(line)
            return
        if self.csv:
            self.csv.writerow(record)
            return
        self.pending.append(record)
        if len(self.pending) >= 65536:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        ids = [r["id"] for r in self.pending]
        id_type = pa.int64() if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) else pa.string()
        schema = pa.schema([("id", id_type), ("score", pa.float64()), ("nll", pa.float64()),
                            ("n_tokens", pa.int64()), ("is_outlier", pa.bool_()), ("reason", pa.string())])
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.path, schema)
        elif self.parquet.schema != schema:  # ids were integers so far but this group has strings
            schema = self.parquet.schema
        columns = {name: [r[name] for r in self.pending] for name in COLUMNS}
        if schema.field("id").type == pa.string():
            columns["id"] = [None if i is None else str(i) for i in columns["id"]]
        self.parquet.write_table(pa.table(columns, schema=schema))
        self.pending = []

    def close(self) -> None:
        if self.suffix == ".parquet":
            if self.pending or self.parquet is None:
                self._flush_parquet()
            self.parquet.close()
        else:
            self.file.close()

