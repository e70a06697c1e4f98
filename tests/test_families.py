"""The RAE, VAE and VQ families end to end: train a tiny model, reload it, and use every latent verb."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.modeling import TextAEModel
from textae.training.loop import _initialise_from

from .conftest import SENTENCES, TINY_RAE

OPTIONS = {
    "rae": TINY_RAE,
    "vae": {"latent_dim": 8, "beta_steps": 50},
    "vq": {"codebook_size": 32, "heads": 2},
}


@pytest.fixture(scope="module")
def models(trained_model) -> dict:
    return {family: trained_model(family, 250, options, **{"train.eval_every": 250}) for family, options in OPTIONS.items()}


@pytest.mark.parametrize("family", list(OPTIONS))
def test_tiny_model_overfits_and_logs_its_latent_metrics(models, family):
    ae = textae.load(models[family])
    rebuilt = ae.reconstruct(SENTENCES)
    assert sum(a == b for a, b in zip(rebuilt, SENTENCES)) >= 6, rebuilt
    events = [json.loads(l) for l in (models[family].parent / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*events)
    expected = {"rae": {"active_units", "active_share", "mi", "prior_bandwidth"},
                "vae": {"kl", "beta", "kl_nats", "active_units", "mi", "nll", "ppl"},
                "vq": {"commitment", "code_perplexity", "codebook_usage"}}[family]
    assert expected <= logged


@pytest.mark.parametrize("family", list(OPTIONS))
def test_model_directory_reloads_with_from_pretrained(models, family):
    ae = textae.load(models[family])
    again = TextAEModel.from_pretrained(models[family], use_safetensors=True).eval()
    assert again.config.family == family
    for name, tensor in ae.model.state_dict().items():
        assert torch.equal(tensor.cpu(), again.state_dict()[name]), name
    ids = ae.pad(ae.token_ids(SENTENCES[:3]))
    assert torch.equal(ae.model.encode(ids), again.encode(ids))


def test_codes_have_the_family_shape(models):
    vae, vq = textae.load(models["vae"]), textae.load(models["vq"])
    assert vae.encode(SENTENCES).shape == (len(SENTENCES), 8) and vae.encode(SENTENCES).dtype == np.float32
    codes = vq.encode(SENTENCES)
    assert codes.shape == (len(SENTENCES), 16 * 2) and codes.dtype == np.int64
    assert vq.decode(codes) == vq.reconstruct(SENTENCES)


def test_vq_codes_round_trip_through_parquet_as_integers(models, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:4]) + "\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", "--model", str(models["vq"]), "--input", str(src), "--output", str(tmp_path / "c.parquet")])
    assert res.exit_code == 0, res.output
    column = pq.read_table(tmp_path / "c.parquet").column("code").to_pylist()
    assert all(isinstance(v, int) for v in column[0]) and len(column[0]) == 32
    res = runner.invoke(cli, ["decode", "--model", str(models["vq"]), "--input", str(tmp_path / "c.parquet"), "--output", str(tmp_path / "o.txt")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.txt").read_text().splitlines() == textae.load(models["vq"]).reconstruct(SENTENCES[:4])
    # codes of another family are refused with a clear message, not a traceback
    res = runner.invoke(cli, ["decode", "--model", str(models["vae"]), "--input", str(tmp_path / "c.parquet"), "--output", str(tmp_path / "vae.txt")])
    assert res.exit_code == 2 and "error: codes have shape (4, 32); this vae model expects (N, 8)" in res.output


@pytest.mark.parametrize("family", list(OPTIONS))
def test_sample_interpolate_paraphrase_plot_through_the_cli(models, family, tmp_path):
    model, runner = str(models[family]), CliRunner()
    res = runner.invoke(cli, ["sample", "--model", model, "-n", "4", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) == 4
    assert res.output == runner.invoke(cli, ["sample", "--model", model, "-n", "4", "--seed", "1"]).output  # seeded

    res = runner.invoke(cli, ["interpolate", "--model", model, SENTENCES[0], SENTENCES[1], "--steps", "4"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("0.00") and lines[-1].startswith("1.00")
    ae = textae.load(models[family])
    assert lines[0].split("  ", 1)[1] == ae.reconstruct([SENTENCES[0]])[0]  # the ends are the sentences' own codes
    assert lines[-1].split("  ", 1)[1] == ae.reconstruct([SENTENCES[1]])[0]

    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:3]) + "\n")
    out = tmp_path / "para.jsonl"
    res = runner.invoke(cli, ["paraphrase", "--model", model, "--input", str(src), "--output", str(out), "-n", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert rows and {r["id"] for r in rows} <= {0, 1, 2}
    for r in rows:
        assert " ".join(r["paraphrase"].lower().split()) != " ".join(r["text"].lower().split())  # copies dropped
        assert r["rank"] in (1, 2)
    for i in {r["id"] for r in rows}:  # those within the default --max-overlap first, then the most similar
        order = [(r["overlap"] > 0.5, -r["similarity"]) for r in rows if r["id"] == i]
        assert order == sorted(order)

    corpus = tmp_path / "labelled.csv"
    corpus.write_text("text,label\n" + "".join(f"{s},{'a' if i % 2 else 'b'}\n" for i, s in enumerate(SENTENCES * 3)))
    png = tmp_path / "map.png"
    res = runner.invoke(cli, ["plot", "--model", model, "--data", str(corpus), "--label-column", "label",
                              "--output", str(png), "--no-split-sentences", "--max-points", "9"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_latent_verbs_explain_bad_requests(models, tmp_path):
    runner, corpus = CliRunner(), tmp_path / "c.csv"
    corpus.write_text("text\n" + "".join(f"{s}\n" for s in SENTENCES * 3))
    cases = [
        (["sample", "--model", str(models["vae"]), "-n", "0"], "at least 1"),
        (["interpolate", "--model", str(models["vae"]), "a", "b", "--steps", "1"], "at least 2"),
        (["plot", "--model", str(models["vae"]), "--data", str(corpus), "--label-column", "topic",
          "--output", str(tmp_path / "m.png"), "--no-split-sentences", "--max-points", "9"], "no column 'topic'"),
        (["plot", "--model", str(models["vae"]), "--data", str(corpus), "--output", str(tmp_path / "m.jpg"),
          "--no-split-sentences", "--max-points", "9"], ".png, .pdf or .svg"),
    ]
    for args, message in cases:
        res = runner.invoke(cli, args)
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (args, res.output)


def test_plain_autoencoder_has_no_prior_to_sample(trained_model):
    res = CliRunner().invoke(cli, ["sample", "--model", str(trained_model()), "-n", "2"])
    assert res.exit_code == 2 and "no prior" in res.output and "--family rae" in res.output


def test_init_from_copies_matching_weights_and_keeps_new_ones_fresh(models):
    ae_like = TextAEModel.from_pretrained(models["vq"], use_safetensors=True)  # any trained model of the same sizes
    vae = TextAEModel(ae_like.config.__class__(**{**ae_like.config.to_dict(), "family": "vae", "bottleneck": OPTIONS["vae"]}))
    fresh = vae.bottleneck.to_posterior.weight.clone()
    _initialise_from(vae, models["vq"])
    assert torch.equal(vae.encoder[0].attn.qkv.weight, ae_like.encoder[0].attn.qkv.weight)
    assert torch.equal(vae.to_code.weight, ae_like.to_code.weight) and torch.equal(vae.embed_tokens.weight, ae_like.embed_tokens.weight)
    assert torch.equal(vae.lm_head.weight, ae_like.embed_tokens.weight)  # tied weights follow
    assert torch.equal(vae.bottleneck.to_posterior.weight, fresh)
