"""The family contract: a family is one module, and nothing outside `modeling/` asks for it by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModel

import textae
from textae.cli import cli
from textae.modeling import TextAEConfig, TextAEModel, TextCodeConfig, TextCodeModel, family_names, get_family

from . import toy_family
from .conftest import SENTENCES, tiny_overrides

PACKAGE = Path(textae.__file__).parent


def test_no_code_outside_modeling_branches_on_a_family_name():
    branch = re.compile(r"family[\"'\]\)]*\s*(==|!=|in\b|not in\b)|hasattr\(")
    found = [f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}"
             for path in PACKAGE.rglob("*.py") if "modeling" not in path.parts
             for i, line in enumerate(path.read_text().splitlines(), 1) if branch.search(line)]
    assert not found, "\n".join(found)


def test_the_registry_knows_each_family_and_what_it_needs():
    assert {"ae", "vae", "vq", "cvae", "gmvae", "text", "toy"} <= set(family_names())
    assert get_family("cvae").conditional and not get_family("vae").conditional
    assert get_family("text").model is TextCodeModel and get_family("toy").bottleneck is toy_family.ToyBottleneck
    assert get_family("toy").make_options({"scale": 3.0}).scale == 3.0
    with pytest.raises(ValueError, match="unknown option"):
        get_family("toy").make_options({"shift": 1})
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("nope")


def test_auto_model_tells_the_two_model_types_apart(tmp_path):
    sizes = dict(vocab_size=60, d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, num_codes=4, code_dim=8)
    TextAEModel(TextAEConfig(**sizes)).save_pretrained(tmp_path / "ae")
    TextCodeModel(TextCodeConfig(**sizes, bottleneck={"adversarial_weight": 0.0})).save_pretrained(tmp_path / "text")
    assert json.loads((tmp_path / "text" / "config.json").read_text())["model_type"] == "textae_text"
    assert type(AutoModel.from_pretrained(tmp_path / "ae")) is TextAEModel
    assert type(AutoModel.from_pretrained(tmp_path / "text")) is TextCodeModel


def test_the_text_model_ignores_no_argument():
    sizes = dict(vocab_size=60, d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, num_codes=4, code_dim=8)
    model = TextCodeModel(TextCodeConfig(**sizes, bottleneck={"adversarial_weight": 0.0, "similarity_weight": 0.0,
                                                                "salience_weight": 0.0})).eval()
    labels = torch.randint(5, 60, (2, 6))
    with pytest.raises(TypeError):
        model(labels=labels, unexpected=labels)
    with pytest.raises(ValueError, match="no label"):
        model(labels=labels, condition=torch.zeros(2, dtype=torch.long))
    # The compressor reads input_ids when given: another sentence gives another middle text.
    other = torch.randint(5, 60, (2, 6))
    assert not torch.equal(model(labels=labels).code, model(input_ids=other, labels=labels).code)


def test_a_family_defined_in_one_module_trains_and_serves_through_the_cli(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    values = tiny_overrides(corpus, tmp_path / "run", **{"train.max_steps": 40, "model.bottleneck": "{scale: 3.0}"})
    runner = CliRunner()
    args = [a for k, v in values.items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    result = runner.invoke(cli, ["train", "--no-progress", "--family", "toy", *args])
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "run" / "final"

    ae = textae.load(model_dir)
    assert isinstance(ae.model.bottleneck, toy_family.ToyBottleneck) and ae.model.bottleneck.cfg.scale == 3.0
    ids = ae.pad(ae.token_ids(SENTENCES[:2]))
    h, _ = ae.model.chunk_summaries(ids, None)
    assert torch.allclose(ae.model.encode(ids), 3.0 * h)  # the stored code is the family's own

    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:5]) + "\n")
    for command in (["encode", "--output", str(tmp_path / "codes.parquet")],
                    ["reconstruct", "--output", str(tmp_path / "rebuilt.jsonl")],
                    ["score", "--output", str(tmp_path / "scores.jsonl"), "--no-progress"]):
        result = runner.invoke(cli, [command[0], "--model", str(model_dir), "--input", str(src), *command[1:]])
        assert result.exit_code == 0, result.output
    assert len(pq.read_table(tmp_path / "codes.parquet").to_pylist()[0]["code"]) == 16  # K code vectors
    result = runner.invoke(cli, ["decode", "--model", str(model_dir), "--input", str(tmp_path / "codes.parquet"),
                                 "--output", str(tmp_path / "decoded.jsonl")])
    assert result.exit_code == 0, result.output
    decoded = [json.loads(l)["text"] for l in (tmp_path / "decoded.jsonl").read_text().splitlines()]
    rebuilt = [json.loads(l)["reconstruction"] for l in (tmp_path / "rebuilt.jsonl").read_text().splitlines()]
    assert decoded == rebuilt and len(decoded) == 5
    scores = [json.loads(l) for l in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 5 and all(s["score"] > 0 for s in scores)
