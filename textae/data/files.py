"""Local data files: .txt, .jsonl, .json, .csv, .tsv (each optionally .gz) and .parquet.

Reading goes through `datasets.load_dataset`, which works offline and memory-maps large files;
its failures are turned into one-line DataErrors that name the file and say what to do.
"""

import gzip
from pathlib import Path

import datasets

from textae.errors import DataError

# suffix -> (datasets builder, builder options)
FORMATS: dict[str, tuple[str, dict]] = {
    ".txt": ("text", {}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
}


def data_suffix(path: Path) -> str:
    """The format suffix of `path`, looking through a trailing ``.gz``."""
    name = path.name.lower().removesuffix(".gz")
    return Path(name).suffix


def load_file(path: Path) -> datasets.Dataset:
    """All rows of a local file; for .txt one row per non-blank line, in column `text`."""
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file; pass one data file")
    suffix = data_suffix(path)
    if suffix not in FORMATS:
        raise DataError(
            f"cannot read '{path.name}': unknown extension; use one of "
            f"{', '.join(FORMATS)} (text formats may end in .gz)"
        )
    if suffix == ".parquet" and path.suffix.lower() == ".gz":
        raise DataError(f"{path}: parquet is compressed internally; pass the uncompressed .parquet file")
    builder, options = FORMATS[suffix]
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as err:  # the builders raise many types; all mean "this file is unreadable"
        raise _explain(path, err) from err
    if builder == "text":
        ds = ds.filter(_not_blank, input_columns="text", batched=True)
    if ds.num_rows == 0:
        raise DataError(f"{path} has no rows; check that it is the right file")
    return ds


def _not_blank(texts: list[str]) -> list[bool]:
    return [bool(text.strip()) for text in texts]


def _explain(path: Path, err: Exception) -> DataError:
    """The most useful explanation of a failed read: bad UTF-8, no rows, or the parser's own words."""
    if data_suffix(path) != ".parquet":
        try:
            bad_line, rows = _scan(path)
        except (OSError, EOFError) as scan_err:  # e.g. a .gz file that is not gzip
            return DataError(f"could not read {path}: {scan_err}")
        if bad_line is not None:
            return DataError(
                f"{path} is not valid UTF-8 (first bad line: {bad_line}); re-encode it, "
                f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{data_suffix(path)}"
            )
        if rows <= (1 if data_suffix(path) in (".csv", ".tsv") else 0):  # csv: header only
            return DataError(f"{path} has no rows; check that it is the right file")
    while err.__cause__ is not None:
        err = err.__cause__
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DataError(f"could not read {path}: {reason}")


def _scan(path: Path) -> tuple[int | None, int]:
    """The number of the first line that is not UTF-8 (None if all are), and the non-blank lines."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    rows = 0
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number, rows
            rows += bool(line.strip())
    return None, rows
