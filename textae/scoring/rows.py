"""Streaming rows of a file or stdin for batch jobs: one `Row` per input row, in order, in constant memory.

Unlike `textae.io` (which loads a whole file), nothing here holds more than one record. A row
whose text cannot be used (bad UTF-8, broken JSON, a missing field) still comes out, with
`text=None` and a `reason`, so the output keeps one row per input row.
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

import pyarrow.parquet as pq

from ..data.files import data_suffix
from ..errors import DataError

STREAM_FORMATS = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
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
    return suffix


def count_rows(path: str, fmt: str | None = None) -> int | None:
    """Rows in the input, for the progress bar's ETA (None for stdin); a streaming count, not a load."""
    suffix = input_format(path, fmt)
    if path == "-":
        return None
    if suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b""
    with _open_binary(path) as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk
    lines += bool(last) and not last.endswith(b"\n")  # a last line without a newline
    return max(0, lines - (suffix in (".csv", ".tsv")))  # header; quoted newlines make this an estimate


def read_stream(path: str, text_column: str = "text", id_column: str | None = None, fmt: str | None = None) -> Iterator[Row]:
    """Every row of `path` ('-' = stdin) as a Row, in input order."""
    suffix = input_format(path, fmt)
    if suffix == ".parquet":
        yield from _parquet_rows(path, text_column, id_column)
        return
    with _open_binary(path) as raw:
        if suffix == ".txt":
            if id_column:
                raise DataError(f"{path} is plain text and has no columns; drop --id-column or use .jsonl/.csv")
            yield from _text_rows(raw)
        elif suffix == ".jsonl":
            yield from _jsonl_rows(raw, path, text_column, id_column)
        else:
            yield from _csv_rows(raw, path, text_column, id_column, "\t" if suffix == ".tsv" else ",")


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def _decode(data: bytes) -> tuple[str | None, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"not valid UTF-8 at byte {err.start}"


def _text_rows(raw: IO[bytes]) -> Iterator[Row]:
    for index, line in enumerate(raw):
        text, reason = _decode(line.rstrip(b"\r\n"))
        yield Row(index, index, text, reason)


def _missing_column(path: str, name: str, flag: str, columns: list[str]) -> DataError:
    return DataError(f"{path} has no column '{name}' (columns: {', '.join(columns)}); pass {flag}")


def _jsonl_rows(raw: IO[bytes], path: str, text_column: str, id_column: str | None) -> Iterator[Row]:
    checked = False
    for index, line in enumerate(raw):
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
            yield Row(index, index, None, reason)
            continue
        if not checked:  # a column missing from the first record is a wrong option, not a bad row
            for name, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
                if name and name not in record:
                    raise _missing_column(path, name, flag, list(record))
            checked = True
        yield _record_row(index, record, text_column, id_column)


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
    file = pq.ParquetFile(path)
    for name, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
        if name and name not in file.schema_arrow.names:
            raise _missing_column(path, name, flag, file.schema_arrow.names)
    if id_column is None and "id" in file.schema_arrow.names:
        id_column = "id"
    columns = [text_column] + ([id_column] if id_column else [])
    index = 0
    for batch in file.iter_batches(batch_size=4096, columns=columns):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            yield _record_row(index, {name: data[name][i] for name in columns}, text_column, id_column)
            index += 1


def _record_row(index: int, record: dict[str, Any], text_column: str, id_column: str | None) -> Row:
    row_id = record.get(id_column or "id", index)  # default: an 'id' field when there is one
    value = record.get(text_column)
    if value is None:
        return Row(index, row_id, None, f"no '{text_column}' value")
    return Row(index, row_id, value if isinstance(value, str) else str(value))
