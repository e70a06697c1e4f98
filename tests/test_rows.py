"""Streaming rows for `textae score` (textae.scoring.rows) and what a failed read leaves behind (job.py):
a missing field is a bad row wherever it is, a wrong option fails before any row, and an input that
cannot be read to its end is one DataError that blocks no rerun."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from textae.errors import DataError
from textae.scoring import rows as rows_module
from textae.scoring.job import Part, score_file
from textae.scoring.rows import count_rows, read_stream

LINES = [f"sentence number {i} is here ." for i in range(40)]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _truncated_gz(path: Path, data: bytes) -> Path:
    whole = gzip.compress(data)
    path.write_bytes(whole[: len(whole) - 20])
    return path


def test_a_first_record_without_the_field_is_a_bad_row_like_any_other(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", [{"id": 5}, {"text": "a", "id": 6}, {"text": None, "id": 7}, {"id": 8}])
    rows = list(read_stream(str(path)))
    assert [(r.id, r.text, r.reason) for r in rows] == [
        (5, None, "no 'text' value"), (6, "a", None), (7, None, "no 'text' value"), (8, None, "no 'text' value")]


def test_a_field_no_probed_record_has_is_a_wrong_option(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_module, "PROBE_RECORDS", 3)
    path = _jsonl(tmp_path / "in.jsonl", [{"body": "a"}, {"body": "b"}])  # a short file: all records probed
    with pytest.raises(DataError, match=r"in.jsonl has no column 'text' \(columns: body\); pass --text-column"):
        next(read_stream(str(path)))
    late = _jsonl(tmp_path / "late.jsonl", [{"body": "a"}] * 3 + [{"text": "b"}])  # beyond the probe: still wrong
    with pytest.raises(DataError, match="has no column 'text'"):
        next(read_stream(str(late)))
    ids = _jsonl(tmp_path / "ids.jsonl", [{"text": "a"}, {"text": "b"}])
    with pytest.raises(DataError, match="has no column 'key'.*pass --id-column"):
        next(read_stream(str(ids), id_column="key"))
    broken = tmp_path / "broken.jsonl"  # no JSON object at all: no evidence of a wrong option, every row says why
    broken.write_text("nope\n[1]\n")
    assert [r.reason for r in read_stream(str(broken))] == ["not valid JSON (Expecting value)", "not a JSON object"]


def test_rows_held_while_probing_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_module, "PROBE_RECORDS", 3)
    records = [{"id": 0}, "x", {"id": 2, "text": "c"}] + [{"id": i, "text": str(i)} for i in range(3, 8)]
    path = _jsonl(tmp_path / "in.jsonl", records)
    assert [r.index for r in read_stream(str(path))] == list(range(8))


@pytest.mark.parametrize("name", ["in.txt.gz", "in.jsonl.gz", "in.csv.gz"])
def test_a_truncated_gz_stream_is_one_error_naming_the_file(tmp_path, name):
    if "jsonl" in name:
        lines = [json.dumps({"text": t}) for t in LINES]
    else:
        lines = (["text"] if "csv" in name else []) + LINES
    path = _truncated_gz(tmp_path / name, "".join(line + "\n" for line in lines).encode())
    with pytest.raises(DataError, match=rf"{name} is truncated: its gzip data ends early at (line|row) \d+"):
        list(read_stream(str(path)))
    with pytest.raises(DataError, match=rf"{name} is truncated: its gzip data ends early at line \d+"):
        count_rows(str(path))


def test_a_gz_or_parquet_that_is_not_one_is_one_error(tmp_path):
    (tmp_path / "in.txt.gz").write_text("plain\n")
    with pytest.raises(DataError, match=r"in.txt.gz is not gzip data although its name ends in .gz"):
        list(read_stream(str(tmp_path / "in.txt.gz")))
    (tmp_path / "in.parquet").write_text("plain\n")
    for read in (lambda p: list(read_stream(p)), count_rows):
        with pytest.raises(DataError, match=r"in.parquet is not a parquet file \(no PAR1 marker"):
            read(str(tmp_path / "in.parquet"))


def test_a_damaged_parquet_is_one_error_naming_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"text {i} " * 50 for i in range(100)]}), path, compression="none")
    data = bytearray(path.read_bytes())
    data[200:1200] = b"\xff" * 1000  # the first data page; both PAR1 markers and the footer stay
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"in.parquet is a damaged parquet file at row 1 \(.*\); write or copy it again"):
        list(read_stream(str(path)))


class _Detector:
    """Just enough of an AnomalyDetector for the job's bookkeeping: every text scores its length."""

    scorer, members, aggregate, threshold_ = "stub", ("stub",), "mean", None
    ae = SimpleNamespace(path="stub-model")

    def features(self, texts):
        return SimpleNamespace(nll=np.array([float(len(t)) for t in texts]), n_tokens=np.ones(len(texts), dtype=int))

    def scores(self, feats):
        return feats.nll


def test_a_fresh_job_on_a_truncated_input_leaves_nothing_that_blocks_a_rerun(tmp_path):
    path = _truncated_gz(tmp_path / "in.txt.gz", "".join(line + "\n" for line in LINES).encode())
    out = tmp_path / "scores.jsonl"
    for _ in range(2):  # the rerun fails the same way, not on the first run's leftovers
        with pytest.raises(DataError, match="is truncated"):
            score_file(_Detector(), str(path), out, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt.gz"]
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in LINES))  # the fixed input scores
    assert score_file(_Detector(), str(tmp_path / "in.txt"), out, progress=False).rows == len(LINES)


def test_a_resumed_part_keeps_its_rows(tmp_path):
    out = tmp_path / "scores.jsonl"
    first = Part(out, 0, 1)
    first.open({"input": "x"}, resume=False)
    first.append([{"id": 0}])
    resumed = Part(out, 0, 1)
    assert resumed.open({"input": "x"}, resume=True) == 1
    resumed.discard_fresh()  # what _score_file calls when the input breaks off
    assert resumed.path.read_text() == '{"id": 0}\n' and resumed.progress.is_file()
