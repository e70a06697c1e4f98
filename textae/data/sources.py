"""One entry point for raw documents: a built-in corpus, a local file, or a Hugging Face hub dataset.

`source` is resolved in that order: a name in BUILTIN; anything that exists on disk or looks like
a path (has a file extension, starts with ``.``, ``/`` or ``~``, or has more than one ``/``); else a
hub name such as ``ag_news`` or ``owner/name``. So a mistyped ``missing.txt`` is reported as a
missing file rather than as a hub error.
"""

from pathlib import Path

import datasets

from textae.data.builtin import BUILTIN, load_builtin
from textae.data.files import QUIET_BELOW_ROWS, load_file, quiet, stream_rows
from textae.errors import DataError, first_line

TEXT = "text"
ORIGINAL_TEXT = "original_text"  # where an existing `text` column goes when another column is chosen
_STRING_TYPES = ("string", "large_string")


def load_source(source: str, text_column: str = TEXT, split: str = "train", streaming: bool = False) -> datasets.Dataset:
    """Raw documents from a built-in name, local files (a file, a directory, a glob pattern), or a
    hub dataset; always has a `text` column (renamed from `text_column`, nulls dropped, other
    scalars cast to str), other columns kept. `streaming` reads files and hub datasets as a stream
    written to disk as it comes, for corpora larger than memory or than one download."""
    if source in BUILTIN or _looks_like_path(source):
        if split != "train":
            raise DataError(
                f"{source} has only the split 'train'; prepare() holds out validation rows itself"
            )
        ds = load_builtin(source) if source in BUILTIN else load_file(Path(source).expanduser(), streaming)
    else:
        ds = _load_hub(source, split, streaming)
    return _standardise(ds, text_column, source)


def _looks_like_path(source: str) -> bool:
    path = Path(source).expanduser()
    return (
        path.exists()
        or source.startswith((".", "/", "~"))
        or "\\" in source
        or source.count("/") > 1
        or path.suffix != ""
        or any(c in source for c in "*?[")
    )


def _load_hub(name: str, split: str, streaming: bool) -> datasets.Dataset:
    try:
        if streaming:
            return datasets.Dataset.from_generator(stream_rows, gen_kwargs={"builder": None, "data_files": None,
                                                                           "options": {}, "name": name, "split": split})
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, not found, gated, bad split: all need the same advice
        reason = first_line(err)
        raise DataError(
            f"could not load '{name}' (split '{split}') from the Hugging Face hub: the hub could not "
            f"be reached or has no such dataset ({reason}). Built-in corpora: {', '.join(BUILTIN)}; "
            "a local file path (.txt, .jsonl, .csv, .tsv, .parquet) works offline"
        ) from err


def _standardise(ds: datasets.Dataset, text_column: str, source: str) -> datasets.Dataset:
    """Move `text_column` to `text` and make sure it holds non-null strings."""
    if text_column not in ds.column_names:
        raise DataError(
            f"{source} has no column '{text_column}'; available columns: "
            f"{', '.join(ds.column_names)}. Pass --text-column with the column that holds the text"
        )
    if text_column != TEXT:
        renames = {text_column: TEXT}
        if TEXT in ds.column_names:
            renames[TEXT] = ORIGINAL_TEXT
        ds = ds.rename_columns(renames)
    feature = ds.features[TEXT]
    if not (isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES):
        if not isinstance(feature, datasets.Value):
            raise DataError(
                f"column '{text_column}' of {source} holds {feature}, not text; "
                "pass --text-column with a column of strings"
            )
        with quiet(ds.num_rows < QUIET_BELOW_ROWS):
            ds = ds.cast_column(TEXT, datasets.Value("string"))
    if ds.data.column(TEXT).null_count:
        with quiet(ds.num_rows < QUIET_BELOW_ROWS):
            ds = ds.filter(_not_null, input_columns=TEXT, batched=True)
    return ds


def _not_null(texts: list[str | None]) -> list[bool]:
    return [text is not None for text in texts]
