"""Local data files: .txt, .jsonl, .json, .csv, .tsv (each optionally .gz) and .parquet.

Reading goes through `datasets.load_dataset`, which works offline and memory-maps large files;
its failures are turned into one-line DataErrors that name the file and say what to do. The
builders' own error logs and progress bars are muted while a file loads: the DataError is the one
report, and a bar drawn before it would leave a second line on stderr.
"""

import glob
import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from textae.data.pages import ReleasingPages, source_files
from textae.errors import DataError, first_line

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


def data_files(path: Path) -> list[Path]:
    """The files a data path names: the file itself, every data file under a directory (recursively,
    in name order, hidden ones left out), or a glob pattern's matches (`corpus/*.txt.gz`, `shards/**/*.jsonl`).
    All must share one format, which is how they are read together."""
    text = str(path)
    if any(c in text for c in "*?["):
        files, what = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()), f"the pattern {text}"
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and data_suffix(p) in FORMATS)
        what = f"the directory {path}"
    else:
        return [path]
    if not files:
        raise DataError(f"{what} names no data files ({', '.join(FORMATS)}, text formats optionally .gz); "
                        "check the path")
    suffixes = sorted({data_suffix(f) for f in files})
    if len(suffixes) > 1:
        raise DataError(f"{what} holds {' and '.join(suffixes)} files, which cannot be read as one table; "
                        f"pass a pattern of one format, e.g. {path if not path.is_dir() else path / '*'}{suffixes[0]}")
    return files


def load_file(path: Path, streaming: bool = False) -> datasets.Dataset:
    """All rows of a local file, or of every file of a directory or glob pattern (one format); for
    .txt one row per non-blank line, in column `text`. With `streaming`, rows are read as a stream
    and written to an Arrow file as they come, never all in memory."""
    files = data_files(path)
    for file in files:
        _check_file(file)
    builder, options = FORMATS[data_suffix(files[0])]
    with quiet():
        try:
            if streaming:
                ds = _materialise(builder, [str(f) for f in files], options, _files_key(files))
            else:
                ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **options)
        except Exception as err:  # the builders raise many types; all mean "this file is unreadable"
            raise _explain_files(files, err) from err
        if builder == "text":
            ds = ds.filter(ReleasingPages(_not_blank, source_files(ds)), input_columns="text", batched=True)
    if ds.num_rows == 0:
        raise DataError(f"{path} has no rows; check that it is the right file")
    return ds


def stream_rows(builder: str, data_files: list[str] | None, options: dict, name: str | None = None,
                split: str = "train") -> Iterator[dict]:
    """Rows of a dataset read with `streaming=True` (a hub name, or local files with their builder)."""
    if name is not None:
        yield from datasets.load_dataset(name, split=split, streaming=True)
    else:
        yield from datasets.load_dataset(builder, data_files=data_files, split="train", streaming=True, **options)


def _materialise(builder: str, files: list[str], options: dict, key: list) -> datasets.Dataset:
    """A streamed dataset written to an Arrow file batch by batch (`Dataset.from_generator`); its
    cache entry is named by `key` (the files' paths, sizes and modification times), so a changed
    file is read anew."""
    fingerprint = hashlib.sha256(json.dumps([builder, options, key]).encode()).hexdigest()[:16]
    return datasets.Dataset.from_generator(
        stream_rows, gen_kwargs={"builder": builder, "data_files": files, "options": options}, fingerprint=fingerprint,
    )


def _files_key(files: list[Path]) -> list:
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file; pass a data file, a directory of them, or a glob pattern")
    suffix = data_suffix(path)
    if suffix not in FORMATS:
        raise DataError(
            f"cannot read '{path.name}': unknown extension; use one of "
            f"{', '.join(FORMATS)} (text formats may end in .gz)"
        )
    if suffix == ".parquet" and path.suffix.lower() == ".gz":
        raise DataError(f"{path}: parquet is compressed internally; pass the uncompressed .parquet file")
    check_header(path)


def _explain_files(files: list[Path], err: Exception) -> DataError:
    """The first file whose failure can be explained (bad UTF-8, no rows, damaged), else the parser's words."""
    for file in files[:-1]:
        explained = _explain(file, err)
        if not str(explained).startswith("could not read"):
            return explained
    return _explain(files[-1], err)


def check_header(path: Path) -> None:
    """Fail fast, before any reader starts, on a file whose first or last bytes show it is not what
    its name says: a `.gz` that is not gzip, a `.parquet` that is not parquet (its footer is read)."""
    if data_suffix(path) == ".parquet":
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(0, f.seek(0, 2) - 4))
            tail = f.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise DataError(f"{path} is not a parquet file (no PAR1 marker at its start and end); "
                            "pass a parquet file, or name the file after its real format (.txt, .jsonl, .csv)")
        try:
            pq.read_metadata(path)
        except (pa.ArrowException, OSError) as err:
            raise parquet_error(path, err) from None
    elif path.suffix.lower() == ".gz":
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic != b"\x1f\x8b":
            raise unreadable(path, gzip.BadGzipFile(f"Not a gzipped file ({magic!r})"))


def parquet_error(path: Path | str, err: Exception, where: str = "") -> DataError:
    """A parquet file pyarrow cannot read, as one line; `where` is e.g. " at row 7"."""
    return DataError(f"{path} is a damaged parquet file{where} ({first_line(err)}); write or copy it again")


def unreadable(path: Path | str, err: BaseException, where: str = "") -> DataError:
    """A failed read below the format (gzip, zlib, the disk) as one line naming the file and, where
    known, the place reading stopped (`where`, e.g. " at line 12")."""
    if isinstance(err, gzip.BadGzipFile) and str(err).startswith("Not a gzipped file"):
        return DataError(f"{path} is not gzip data although its name ends in .gz; "
                         "rename it without .gz, or compress it with gzip")
    if isinstance(err, EOFError):
        return DataError(f"{path} is truncated: its gzip data ends early{where}; copy or download the file again")
    if isinstance(err, (gzip.BadGzipFile, zlib.error)):
        return DataError(f"{path} is damaged: its gzip data is corrupt{where} ({first_line(err)}); "
                         "copy or download the file again")
    return DataError(f"could not read {path}{where}: {getattr(err, 'strerror', None) or first_line(err)}")


READ_ERRORS = (OSError, EOFError, zlib.error)  # what reading a (possibly gzip) file can raise
QUIET_BELOW_ROWS = 10_000  # datasets this small are mapped and filtered without a progress bar


@contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """No `datasets` error logs or progress bars inside the block (see the module docstring); also
    used around quick steps on small datasets, whose bars are noise before a possible error line."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("datasets")
    level, bars_off = logger.level, are_progress_bars_disabled()
    logger.setLevel(logging.CRITICAL)
    if not bars_off:
        disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if not bars_off:
            enable_progress_bars()


def _not_blank(texts: list[str]) -> list[bool]:
    return [bool(text.strip()) for text in texts]


def _explain(path: Path, err: Exception) -> DataError:
    """The most useful explanation of a failed read: bad UTF-8, no rows, or the parser's own words."""
    while err.__cause__ is not None:
        err = err.__cause__
    if data_suffix(path) == ".parquet":
        return parquet_error(path, err)
    bad_line, rows = _scan(path)  # a DataError itself where the file cannot be read to its end
    if bad_line is not None:
        return DataError(
            f"{path} is not valid UTF-8 (first bad line: {bad_line}); re-encode it, "
            f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{data_suffix(path)}"
        )
    if rows <= (1 if data_suffix(path) in (".csv", ".tsv") else 0):  # csv: header only
        return DataError(f"{path} has no rows; check that it is the right file")
    return DataError(f"could not read {path}: {first_line(err)}")


def _scan(path: Path) -> tuple[int | None, int]:
    """The number of the first line that is not UTF-8 (None if all are), and the non-blank lines;
    a file that cannot be read to its end is a DataError naming the line where reading stopped."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    rows = number = 0
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number, rows
                rows += bool(line.strip())
    except READ_ERRORS as err:
        raise unreadable(path, err, f" at line {number + 1}") from None
    return None, rows
