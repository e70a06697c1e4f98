"""Corpora larger than memory: many files, streams, hashed deduplication, the prepared-data cache,
token shards on disk, and one process preparing for many."""

from __future__ import annotations

import errno
import gzip
import json
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from datasets.arrow_writer import ArrowWriter

from textae.data import DataConfig, prepare
from textae.data.corpus import prepare_corpus
from textae.data import shuffle
from textae.data.files import data_files
from textae.data.pages import column_windows, release_mapped_pages, source_files
from textae.data.shards import TokenShards, build_once, write_split
from textae.errors import DataError
from textae.tokenizer import load_tokenizer

from .conftest import SENTENCES, tiny_overrides

LINES = [f"{i} {s}" for i, s in enumerate(SENTENCES * 4)]  # 36 distinct lines


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTAE_CACHE", str(tmp_path / "cache"))


def _config(source, **extra) -> DataConfig:
    return DataConfig(source=str(source), split_sentences=False, validation_size=2, **extra)


def _texts(splits) -> list[str]:
    return sorted(list(splits["train"]["text"]) + list(splits["validation"]["text"]))


def test_a_directory_or_a_glob_is_read_as_one_corpus(tmp_path):
    (tmp_path / "docs" / "more").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("\n".join(LINES[:20]) + "\n")
    with gzip.open(tmp_path / "docs" / "more" / "b.txt.gz", "wt") as f:
        f.write("\n".join(LINES[20:]) + "\n")
    (tmp_path / "docs" / ".hidden.txt").write_text("not data\n")
    assert [p.name for p in data_files(tmp_path / "docs")] == ["a.txt", "b.txt.gz"]
    assert _texts(prepare(_config(tmp_path / "docs"))) == sorted(LINES)
    assert _texts(prepare(_config(tmp_path / "docs" / "**" / "*.txt*"))) == sorted(LINES)


def test_directories_and_patterns_without_one_format_are_one_line_errors(tmp_path):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_text("one line of text here\n")
    (tmp_path / "mixed" / "b.jsonl").write_text('{"text": "another line of text"}\n')
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds \.jsonl and \.txt files"):
        data_files(tmp_path / "mixed")
    with pytest.raises(DataError, match="names no data files"):
        data_files(tmp_path / "empty")
    with pytest.raises(DataError, match="names no data files"):
        data_files(tmp_path / "nothing-*.txt")


def test_a_streamed_corpus_has_the_same_rows(tmp_path):
    src = tmp_path / "corpus.jsonl"  # local files stand in for a hub dataset: the same streaming reader
    src.write_text("".join(json.dumps({"text": line, "n": i}) + "\n" for i, line in enumerate(LINES)))
    streamed, loaded = prepare(_config(src, streaming=True)), prepare(_config(src))
    assert _texts(streamed) == _texts(loaded) == sorted(LINES)
    assert streamed["train"]["n"] == loaded["train"]["n"]


def test_duplicates_are_dropped_by_hash_keeping_first_occurrences(tmp_path):
    src = tmp_path / "dups.txt"
    src.write_text("\n".join(LINES + LINES[:7] + ["  " + LINES[3] + "  "]) + "\n")  # 8 duplicates
    splits = prepare(_config(src, num_proc=1))
    assert _texts(splits) == sorted(LINES)
    assert sorted(list(splits["train"]["doc_id"]) + list(splits["validation"]["doc_id"])) == list(range(len(LINES)))


def test_the_prepared_corpus_is_built_once_and_rebuilt_when_the_file_changes(tmp_path, monkeypatch):
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(LINES) + "\n")
    first = prepare_corpus(_config(src))
    second = prepare_corpus(_config(src))
    assert first.seconds > 0 and second.seconds == 0 and second.directory == first.directory
    assert _texts(second.splits) == sorted(LINES)
    assert prepare_corpus(_config(src, num_proc=2)).directory == first.directory  # how fast is not what
    monkeypatch.chdir(tmp_path)
    assert prepare_corpus(_config("corpus.txt")).directory == first.directory  # the same file, spelled relatively
    src.write_text("\n".join(LINES[:-1]) + "\n")  # another size and modification time: prepared anew
    changed = prepare_corpus(_config(src))
    assert changed.directory != first.directory and changed.seconds > 0
    assert len(changed.splits["train"]) + len(changed.splits["validation"]) == len(LINES) - 1


def test_the_cached_rows_are_prepare_s_rows_in_prepare_s_order(tmp_path, monkeypatch):
    """The copy goes through more than one scratch bucket and read window, and still keeps
    prepare's rows, splits and order."""
    monkeypatch.setattr(shuffle, "BUCKET_ROWS", 5)
    monkeypatch.setattr(shuffle, "READ_ROWS", 7)
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(LINES) + "\n")
    cached = prepare_corpus(_config(src))
    fresh = prepare(_config(src))
    for split in ("train", "validation"):
        assert cached.splits[split].to_dict() == fresh[split].to_dict()
    assert not list(cached.directory.rglob("*.arrows"))  # the scratch buckets are gone


@pytest.mark.parametrize("num_proc", [1, 2])
def test_token_shards_hold_what_the_tokenizer_gives_and_are_cached(tmp_path, monkeypatch, num_proc):
    monkeypatch.setattr(sys.modules["textae.data.prepare"], "MIN_ROWS_PER_PROCESS", 1)  # 2: the token ids come in two files
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(LINES) + "\n")
    corpus = prepare_corpus(_config(src, num_proc=num_proc))
    tokenizer = load_tokenizer(corpus.tokenizer(300, "unigram"))
    shards = corpus.token_shards(tokenizer, max_positions=8)
    train = shards["train"]
    assert len(train) == len(corpus.splits["train"]) and train.tokens.dtype == np.uint16
    expected = [ids[:7] for ids in tokenizer(list(corpus.splits["train"]["text"]), add_special_tokens=False)["input_ids"]]
    assert train.rows(range(len(train))) == expected
    assert train.lengths.tolist() == [len(x) for x in expected]
    again = corpus.token_shards(tokenizer, max_positions=8)
    assert again["train"].tokens.filename == train.tokens.filename


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    target = tmp_path / "shards"

    def full_disk(tmp: Path) -> dict:
        write_split(tmp, "train", [pa.array([[1, 2, 3]])], 3, 1, 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DataError, match="disk filled up"):
        build_once(target, full_disk, "token shards")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert build_once(target, lambda tmp: write_split(tmp, "train", [pa.array([[1, 2], [3]])], 3, 2, 100) or {}, "token shards")
    assert TokenShards(target, "train").rows([0, 1]) == [[1, 2], [3]]
    assert not build_once(target, lambda tmp: pytest.fail("built twice"), "token shards")


@pytest.mark.slow
def test_two_processes_share_one_preparation_and_train(tmp_path, corpus):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    values = tiny_overrides(corpus, tmp_path / "run", **{"train.max_steps": 6, "data.validation_size": 2})
    sets = [a for k, v in values.items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "textae", "train", "--no-progress", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TEXTAE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    prepared = list((tmp_path / "cache" / "prepared").iterdir())
    assert len(prepared) == 1 and len(list(prepared[0].glob("tokens-*"))) == 1  # built once, by one process
    assert not list(prepared[0].glob("*.tmp-*"))


def test_the_tokenizer_learns_from_a_fixed_sample_of_a_large_corpus(tmp_path, monkeypatch):
    from textae.data import corpus as corpus_module

    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(LINES) + "\n")
    monkeypatch.setattr(corpus_module, "TOKENIZER_SENTENCES", 10)
    prepared = prepare_corpus(_config(src))
    directory = prepared.tokenizer(300, "unigram")
    assert json.loads((directory / "meta.json").read_text())["sentences"] == 10
    assert prepared.tokenizer(300, "unigram") == directory  # trained once


def _file_backed_mb() -> float:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["RssFile"].split()[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_windowed_pass_releases_the_pages_it_read(tmp_path):
    path = tmp_path / "rows.arrow"
    rows = 2_000
    with ArrowWriter(path=str(path)) as writer:  # about 32 MB of text
        writer.write_table(pa.table({"text": [f"{i:08d}" * 2_000 for i in range(rows)]}))
        writer.finalize()
    order = np.random.default_rng(0).permutation(rows)
    dataset = datasets.Dataset.from_file(str(path)).select(order)
    before = _file_backed_mb()
    seen = [text for window in column_windows(dataset, "text", rows=500) for text in window]
    assert seen == [f"{i:08d}" * 2_000 for i in order]  # every row, in the selected order
    assert _file_backed_mb() - before < 8  # a window's pages at most, not the 32 MB read
    sum(len(t) for t in dataset["text"])  # a plain pass keeps its pages mapped, which is what the check detects
    assert _file_backed_mb() - before > 24
    release_mapped_pages(source_files(dataset))
    assert _file_backed_mb() - before < 8
