"""Row-preserving reading for the batch commands (textae.io) and loading a model's tokenizer: every bad
input is one DataError / TextAEError naming the file, never a traceback or a silent empty row."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from textae.data.files import load_file
from textae.errors import DataError, TextAEError
from textae.io import read_texts
from textae.tokenizer import load_tokenizer

LINES = [f"sentence number {i} is here ." for i in range(40)]


def _truncated_gz(path: Path, data: bytes) -> Path:
    whole = gzip.compress(data)
    path.write_bytes(whole[: len(whole) - 20])  # the end of the stream (and its CRC) is cut off
    return path


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_missing_or_null_json_text_names_the_first_row(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": ""}, {"id": 7}, {"text": None}])
    with pytest.raises(DataError, match=r"in.jsonl: row 3 has no 'text'; fill it or pass --text-column$"):
        read_texts(path)
    path = _jsonl(tmp_path / "null.jsonl", [{"text": "a"}, {"text": None}])
    with pytest.raises(DataError, match="row 2 has no 'text'"):
        read_texts(path)


def test_empty_texts_that_are_present_stay_rows(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": ""}, {"text": "b"}])
    assert read_texts(path) == ([0, 1, 2], ["a", "", "b"])
    (tmp_path / "in.txt").write_text("a\n\nb\n")
    assert read_texts(tmp_path / "in.txt") == ([0, 1, 2], ["a", "", "b"])
    (tmp_path / "in.csv").write_text('text,id\na,1\n"",2\n')  # CSV cannot tell empty from missing: a row
    assert read_texts(tmp_path / "in.csv") == ([1, 2], ["a", ""])


@pytest.mark.parametrize("name", ["in.txt.gz", "in.jsonl.gz"])
def test_a_truncated_gz_is_one_error_naming_the_file_and_line(tmp_path, name):
    lines = [json.dumps({"text": t}) for t in LINES] if "jsonl" in name else LINES
    path = _truncated_gz(tmp_path / name, "".join(line + "\n" for line in lines).encode())
    with pytest.raises(DataError, match=rf"{name} is truncated: its gzip data ends early at line \d+; copy") as info:
        read_texts(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["in.txt.gz", "in.jsonl.gz"])
def test_a_gz_that_is_not_gzip_is_one_error(tmp_path, name):
    path = tmp_path / name
    path.write_text('{"text": "plain text"}\n')
    with pytest.raises(DataError, match=rf"{name} is not gzip data although its name ends in .gz"):
        read_texts(path)


def test_a_fake_parquet_is_one_error_and_logs_nothing(tmp_path, caplog, capsys):
    path = tmp_path / "in.parquet"
    path.write_text("not parquet at all\n")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DataError, match=r"in.parquet is not a parquet file \(no PAR1 marker"):
        read_texts(path)
    assert not caplog.records and not capsys.readouterr().err


def test_a_broken_file_loads_without_the_builders_logs_or_bars(tmp_path, caplog, capsys):
    # datasets' json builder logs the failure at ERROR and draws a bar before raising: the DataError is the one report
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n{"text": \n')
    caplog.set_level(logging.DEBUG, logger="datasets")
    with pytest.raises(DataError, match="could not read .*in.jsonl"):
        load_file(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not capsys.readouterr().err


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "tokenizer.json is empty"),
    (b'{"version": "1.0", "trunc', r"tokenizer.json is not valid JSON \(Unterminated string"),
])
def test_a_damaged_tokenizer_is_one_error(tmp_path, content, expected):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(TextAEError, match=f"cannot load the tokenizer in .*: {expected}.*copy the model directory again") as info:
        load_tokenizer(tmp_path)
    assert "\n" not in str(info.value)
