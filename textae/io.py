"""Row-preserving input and output for the CLI's batch commands (encode, decode, reconstruct).

Unlike training data, nothing is dropped here: every input row gives exactly one output row,
in input order, with its id (a named column, or the row number).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .data.files import READ_ERRORS, check_header, data_suffix, load_file, unreadable
from .errors import DataError

OUTPUT_FORMATS = (".parquet", ".jsonl", ".csv", ".txt")  # what write_rows writes (scores have their own: scoring.job)


def _read_lines(path: Path) -> list[str]:
    """Every line, blank ones included; an unreadable or undecodable line is a DataError naming it."""
    check_header(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    lines: list[str] = []
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    lines.append(line.removesuffix(b"\n").decode("utf-8").rstrip("\r"))
                except UnicodeDecodeError as err:
                    raise DataError(
                        f"{path}: line {number} is not valid UTF-8 ({err.reason}); re-encode the file, "
                        "e.g. iconv -f latin1 -t utf-8"
                    ) from None
    except READ_ERRORS as err:
        raise unreadable(path, err, f" at line {len(lines) + 1}") from None
    if not lines:
        raise DataError(f"{path} has no rows; check that it is the right file")
    return lines


def read_rows(path: str | Path, column: str = "text", id_column: str | None = None) -> tuple[list[Any], list[Any]]:
    """(ids, values) of every row of a local file; `.txt` gives one row per line, blank lines included."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if data_suffix(path) == ".txt":
        if id_column:
            raise DataError(f"{path} is plain text and has no columns; drop --id-column or use .jsonl/.csv")
        values: list[Any] = _read_lines(path)
        return list(range(len(values))), values
    ds = load_file(path)
    for name, flag in ((column, "--text-column"), (id_column, "--id-column")):
        if name and name not in ds.column_names:
            raise DataError(f"{path} has no column '{name}' (columns: {', '.join(ds.column_names)}); pass {flag}")
    values = ds[column]
    if id_column is None and "id" in ds.column_names:
        id_column = "id"
    ids = ds[id_column] if id_column else list(range(len(values)))
    return ids, values


def read_texts(path: str | Path, text_column: str = "text", id_column: str | None = None) -> tuple[list[Any], list[str]]:
    """(ids, texts), one per input row. An empty text (`""`, a blank .txt line, an empty CSV cell)
    stays a row; a JSON or parquet row with no text at all (the field missing or null) is an
    error naming the first such row, since silently scoring or encoding "" for it would hide a
    wrong --text-column or a broken export."""
    ids, values = read_rows(path, text_column, id_column)
    if data_suffix(Path(path)) not in (".txt", ".csv", ".tsv"):  # CSV cannot tell an empty cell from a missing one
        missing = next((row for row, value in enumerate(values, start=1) if value is None), None)
        if missing is not None:
            raise DataError(f"{path}: row {missing} has no '{text_column}'; fill it or pass --text-column")
    return ids, ["" if v is None else str(v) for v in values]


def read_codes(path: str | Path, id_column: str | None = None) -> tuple[list[Any], np.ndarray]:
    """(ids, codes) from a parquet file written by `textae encode`."""
    if data_suffix(Path(path)) != ".parquet":
        raise DataError(f"{path}: codes are read from the .parquet file that `textae encode` writes")
    ids, values = read_rows(path, "code", id_column)
    try:
        return ids, np.asarray(values)  # float codes, or integer ones for VQ models
    except ValueError as err:
        raise DataError(f"{path}: the 'code' column does not hold equally shaped codes ({err})") from None


def write_rows(path: str | Path, columns: dict[str, list[Any]]) -> None:
    """Write columns to .parquet / .jsonl / .csv, or the last column alone to .txt (one row a line)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise DataError(f"cannot write '{path.name}': use one of {', '.join(OUTPUT_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # never leave a half-written output behind
    if suffix == ".txt":
        tmp.write_text("".join(" ".join(str(v).split()) + "\n" for v in list(columns.values())[-1]), encoding="utf-8")
    else:
        table = pa.table(columns)
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as f:
                for row in table.to_pylist():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            pcsv.write_csv(table, tmp)
    tmp.replace(path)
