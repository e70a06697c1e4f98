"""The CLI end to end through click's CliRunner, and its one-line errors."""

from __future__ import annotations

import json

import datasets.config
import huggingface_hub.constants
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import textae
from textae.cli import cli

from .conftest import SENTENCES, tiny_overrides


def _train_args(corpus, out, **extra) -> list[str]:
    values = tiny_overrides(corpus, out, **extra)
    return ["train", "--no-progress", *[a for k, v in values.items() for a in ("--set", f"{k}={'null' if v is None else v}")]]


@pytest.fixture(scope="module")
def model_dir(trained_model):
    return trained_model()


def test_train_saves_a_model_that_loads(corpus, tmp_path):
    result = CliRunner().invoke(cli, _train_args(corpus, tmp_path / "run", **{"train.max_steps": 5}))
    assert result.exit_code == 0, result.output
    assert f"model saved to {tmp_path / 'run' / 'final'}" in result.output
    assert textae.load(tmp_path / "run" / "final").encode(SENTENCES[:2]).shape == (2, 16, 32)  # the --set sizes
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 5


def test_encode_then_decode_keeps_ids_order_and_text(model_dir, tmp_path):
    rows = [{"id": f"r{i}", "text": s} for i, s in reversed(list(enumerate(SENTENCES[:6])))]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", "--model", str(model_dir), "--input", str(src), "--output", str(tmp_path / "codes.parquet")])
    assert res.exit_code == 0, res.output
    table = pq.read_table(tmp_path / "codes.parquet").to_pylist()
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert len(table[0]["code"]) == 16 and len(table[0]["code"][0]) == 32  # K x D
    res = runner.invoke(cli, ["decode", "--model", str(model_dir), "--input", str(tmp_path / "codes.parquet"),
                              "--output", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 0, res.output
    out = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    heldout = (model_dir.parent / "heldout.txt").read_text().splitlines()
    for r, o in zip(rows, out):
        if r["text"] not in heldout:
            assert o["text"] == r["text"]


def test_reconstruct_txt_keeps_every_line_including_blank_ones(model_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(f"{SENTENCES[0]}\n\n{SENTENCES[1]}\n")
    res = CliRunner().invoke(cli, ["reconstruct", "--model", str(model_dir), "--input", str(src),
                                   "--output", str(tmp_path / "out.csv"), "--show", "2"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == 4  # header + 3 rows
    assert SENTENCES[0] in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "--model", "{model}", "--input", "{tmp}/missing.txt", "--output", "{tmp}/c.parquet"], "file not found"),
        (["encode", "--model", "{tmp}", "--input", "{tmp}/in.txt", "--output", "{tmp}/c.parquet"], "not a textae model directory"),
        (["encode", "--model", "{model}", "--input", "{tmp}/in.txt", "--output", "{tmp}/c.csv"], ".parquet"),
        (["encode", "--model", "{model}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/c.parquet", "--text-column", "body"], "no column 'body'"),
        (["encode", "--model", "{model}", "--input", "{tmp}/bad.txt", "--output", "{tmp}/c.parquet"], "line 2 is not valid UTF-8"),
        (["encode", "--model", "{model}", "--input", "{tmp}/empty.txt", "--output", "{tmp}/c.parquet"], "has no rows"),
        (["decode", "--model", "{model}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o.txt"], ".parquet"),
        (["train", "--data", "{tmp}/missing.csv", "--output", "{tmp}/run"], "file not found"),
        (["train", "--data", "nosuchcorpus-xyz", "--output", "{tmp}/run", "--set", "train.max_steps=1"], "hub"),
        (["train", "--config", "{tmp}/none.yaml"], "config file not found"),
        (["train", "--set", "train.bogus=1"], "unknown key"),
    ],
)
def test_bad_input_gives_one_clear_line_and_status_2(model_dir, tmp_path, monkeypatch, args, message):
    # Offline, so the hub case fails at once; the environment variable is read only when the hub libraries are imported.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "in.txt").write_text("hello world\n")
    (tmp_path / "in.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "bad.txt").write_bytes(b"fine line\nbroken \xff\xfe line\n")
    (tmp_path / "empty.txt").write_text("")
    args = [a.format(model=model_dir, tmp=tmp_path) for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("error:")


def test_every_command_explains_itself():
    runner = CliRunner()
    for command in ("train", "encode", "decode", "reconstruct", "score", "fit-detector"):
        res = runner.invoke(cli, [command, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output and "--" in res.output
    assert "[default: 128; x>=1]" in runner.invoke(cli, ["encode", "--help"]).output


def test_empty_and_huge_documents_get_codes_not_crashes(model_dir, caplog):
    ae = textae.load(model_dir)
    codes = ae.encode(["", "word " * 5000, SENTENCES[0]])
    assert codes.shape == (3, 16, 32)
    assert "longer than 63 tokens" in caplog.text
    assert ae.decode(codes[2:])[0] == ae.reconstruct([SENTENCES[0]])[0]
