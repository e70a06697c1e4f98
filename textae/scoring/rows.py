"""Streaming rows of a file or stdin for batch jobs: one `Row` per input row, in order, in constant memory.

Unlike `textae.io` (which loads a whole file), nothing here holds more than a bounded number of
records. A row whose text cannot be used (bad UTF-8, broken JSON, a missing or null field) still
comes out, with `text=None` and a `reason`, so the output keeps one row per input row.

A column that the input does not have is a wrong option, not a bad row, and fails before any row
comes out: for CSV and parquet when the header lacks it; for JSON lines, which have no header,
when none of the first PROBE_RECORDS records (or of all, in a shorter file) has the field. The
first record is not special: it may lack the field like any later one. A file that cannot be read
to its end (a truncated or non-gzip `.gz`, a damaged parquet file) is a DataError naming the file
and the row where reading stopped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..data.files import READ_ERRORS, check_header, data_suffix, parquet_error, unreadable
from ..errors import DataError

STREAM_FORMATS = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
PROBE_RECORDS = 1000  # JSON records held back while deciding whether a missing field is a wrong option
csv.field_size_limit(2**31 - 1)  # one huge document must not stop a job


@dataclass(frozen=True)
class Row:
    index: int  # 0-based row number in the input
    id: Any  # the id column's value, or the row number
    text: str | None  # None when the row has no usable text; `reason` says why
    reason: str | None = None


def input_format(path: str, fmt: str | None = None) -> str:
    """The format suffix of an input ('-' is stdin, read as `fmt`, default .txt)."""
    suffix = "." + fmt.lstrip(".") if fmt else (".txt" if path == "-" else data_suffix(Path(path)))
    if suffix not in STREAM_FORMATS:
        raise DataError(f"cannot stream '{path}': use one of {', '.join(STREAM_FORMATS)} (text formats may end in .gz)")
    if path != "-" and not Path(path).is_file():
        raise DataError(f"file not found: {path}")
    if suffix == ".parquet" and path == "-":
        raise DataError("parquet cannot be read from stdin; pass the file's path")
    if path != "-":
        check_header(Path(path))  # a fake .parquet or .gz fails here, before any reading
    return suffix


def count_rows(path: str, fmt: str | None = None) -> int | None:
    """Rows in the input, for the progress bar's ETA (None for stdin); a streaming count, not a load."""
    suffix = input_format(path, fmt)
    if path == "-":
        return None
    if suffix == ".parquet":
        return pq.read_metadata(path).num_rows  # check_header has read it once already
    lines, last = 0, b""
    try:
        with _open_binary(path) as f:
            while chunk := f.read1(1 << 20):  # read1: what was read before a failure is counted
                lines += chunk.count(b"\n")
                last = chunk
    except READ_ERRORS as err:
        raise unreadable(path, err, f" at line {lines + 1}") from None
    lines += bool(last) and not last.endswith(b"\n")  # a last line without a newline
    return max(0, lines - (suffix in (".csv", ".tsv")))  # header; quoted newlines make this an estimate


def read_stream(path: str, text_column: str = "text", id_column: str | None = None, fmt: str | None = None) -> Iterator[Row]:
    """Every row of `path` ('-' = stdin) as a Row, in input order."""
    suffix = input_format(path, fmt)
    if suffix == ".parquet":
        yield from _parquet_rows(path, text_column, id_column)
        return
    done = 0  # rows yielded: where reading stopped if it fails
    try:
        with _open_binary(path) as raw:
            if suffix == ".txt":
                if id_column:
                    raise DataError(f"{path} is plain text and has no columns; drop --id-column or use .jsonl/.csv")
                rows = _text_rows(_lines(raw, path))
            elif suffix == ".jsonl":
                rows = _jsonl_rows(_lines(raw, path), path, text_column, id_column)
            else:
                rows = _csv_rows(raw, path, text_column, id_column, "\t" if suffix == ".tsv" else ",")
            for row in rows:
                yield row
                done += 1
    except READ_ERRORS as err:  # .txt and .jsonl name the line themselves (_lines)
        raise unreadable(_name(path), err, f" at row {done + 1}") from None


def _lines(raw: IO[bytes], path: str) -> Iterator[bytes]:
    """The lines of `raw`; a read that fails (a truncated .gz) is a DataError naming the line."""
    number = 0
    try:
        for line in raw:
            number += 1
            yield line
    except READ_ERRORS as err:
        raise unreadable(_name(path), err, f" at line {number + 1}") from None


def _name(path: str) -> str:
    return "stdin" if path == "-" else path


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def _decode(data: bytes) -> tuple[str | None, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"not valid UTF-8 at byte {err.start}"


def _text_rows(raw: Iterator[bytes]) -> Iterator[Row]:
    for index, line in enumerate(raw):
        text, reason = _decode(line.rstrip(b"\r\n"))
        yield Row(index, index, text, reason)


def _missing_column(path: str, name: str, flag: str, columns: list[str]) -> DataError:
    return DataError(f"{path} has no column '{name}' (columns: {', '.join(columns)}); pass {flag}")


def _jsonl_rows(raw: Iterator[bytes], path: str, text_column: str, id_column: str | None) -> Iterator[Row]:
    wanted = {name: flag for name, flag in ((text_column, "--text-column"), (id_column, "--id-column")) if name}
    held: list[Row] | None = []  # rows kept back until each wanted field is seen; None once decided
    first_keys: list[str] | None = None  # the first record's fields, for the error message
    for index, line in enumerate(raw):
        row, record = _jsonl_row(index, line, text_column, id_column)
        if held is None:
            yield row
            continue
        if record is not None:
            first_keys = list(record) if first_keys is None else first_keys
            wanted = {name: flag for name, flag in wanted.items() if name not in record}
        held.append(row)
        if wanted and len(held) < PROBE_RECORDS:
            continue
        _check_fields(path, wanted, first_keys)
        yield from held
        held = None
    if held is not None:  # a file shorter than PROBE_RECORDS
        _check_fields(path, wanted, first_keys)
        yield from held


def _check_fields(path: str, wanted: dict[str, str], first_keys: list[str] | None) -> None:
    """A field that no probed record has is a wrong option; with no JSON object at all there is no
    evidence either way, and each row says why it is bad."""
    if wanted and first_keys is not None:
        name, flag = next(iter(wanted.items()))
        raise _missing_column(path, name, flag, first_keys)


def _jsonl_row(index: int, line: bytes, text_column: str, id_column: str | None) -> tuple[Row, dict[str, Any] | None]:
    """The line's Row and its record (None when the line is not a JSON object)."""
    text, reason = _decode(line)
    record: Any = None
    if text is not None:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            reason = f"not valid JSON ({err.msg})"
    if reason is None and not isinstance(record, dict):
        reason = "not a JSON object"
    if reason is not None:
        return Row(index, index, None, reason), None
    return _record_row(index, record, text_column, id_column), record


def _csv_rows(raw: IO[bytes], path: str, text_column: str, id_column: str | None, delimiter: str) -> Iterator[Row]:
    # surrogateescape keeps undecodable bytes so one bad row is reported, not fatal
    lines = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.DictReader(lines, delimiter=delimiter)
    columns = reader.fieldnames or []
    for name, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
        if name and name not in columns:
            raise _missing_column(path, name, flag, columns)
    for index, record in enumerate(reader):
        row = _record_row(index, record, text_column, id_column)
        if row.text is not None:
            try:
                row.text.encode("utf-8")
            except UnicodeEncodeError as err:
                row = Row(index, row.id, None, f"not valid UTF-8 at character {err.start}")
        yield row


def _parquet_rows(path: str, text_column: str, id_column: str | None) -> Iterator[Row]:
    index = 0
    try:
        file = pq.ParquetFile(path)
        for name, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
            if name and name not in file.schema_arrow.names:
                raise _missing_column(path, name, flag, file.schema_arrow.names)
        if id_column is None and "id" in file.schema_arrow.names:
            id_column = "id"
        columns = [text_column] + ([id_column] if id_column else [])
        for batch in file.iter_batches(batch_size=4096, columns=columns):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                yield _record_row(index, {name: data[name][i] for name in columns}, text_column, id_column)
                index += 1
    except (pa.ArrowException, OSError) as err:
        raise parquet_error(path, err, f" at row {index + 1}") from None


def _record_row(index: int, record: dict[str, Any], text_column: str, id_column: str | None) -> Row:
    row_id = record.get(id_column or "id", index)  # default: an 'id' field when there is one
    value = record.get(text_column)
    if value is None:
        return Row(index, row_id, None, f"no '{text_column}' value")
    return Row(index, row_id, value if isinstance(value, str) else str(value))
