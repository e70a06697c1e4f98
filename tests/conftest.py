"""Shared fixtures: tiny corpora and tiny configs so every test runs in seconds on 2 CPU cores, and
the tiny trained models, each trained once per session however many test files use it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState

import textae

SENTENCES = [
    "the cat sat on the mat .",
    "a dog ran in the park .",
    "birds sing in the early morning .",
    "she reads a book every night .",
    "the market closed higher on friday .",
    "he paid 3.5 dollars for 2 apples .",
    "rain is expected across the north .",
    "the team won its third game in a row .",
    "our train leaves at noon .",
]


@pytest.fixture(autouse=True)
def fresh_accelerator():
    """accelerate's state is a process-wide singleton: each test starts from none and leaves none behind,
    so a model a session fixture trains between two tests sees no other test's state."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(autouse=True)
def fresh_sentence_encoder():
    """The process shares one sentence encoder (`textae.similarity.shared_encoder`): a test's fake one must not
    reach the next test."""
    from textae import similarity

    yield
    similarity._loaded.cache_clear()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


# The same content in two styles: the label alone says how a sentence ends (the conditional families' data).
STYLED = [(s[:-2] + " .", "calm") for s in SENTENCES] + [(s[:-2] + " !", "loud") for s in SENTENCES]


@pytest.fixture(scope="session")
def styled_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("styled") / "styled.jsonl"
    path.write_text("".join(json.dumps({"text": t, "style": y}) + "\n" for t, y in STYLED))
    return path


def tiny_overrides(corpus: Path, out: Path, **extra) -> dict:
    """Dotted overrides for a model small enough to overfit SENTENCES in well under a minute."""
    values = {
        "data.source": str(corpus),
        "data.split_sentences": False,
        "data.validation_size": 1,
        "tokenizer.vocab_size": 300,
        "model.d_model": 64,
        "model.n_heads": 2,
        "model.encoder_layers": 1,
        "model.decoder_layers": 1,
        "model.ffn_dim": 128,
        "model.num_codes": 16,
        "model.code_dim": 32,
        "noise.mask_rate": 0.0,
        "model.dropout": 0.0,
        "noise.word_dropout": 0.0,
        "train.output_dir": str(out),
        "train.max_steps": 150,
        "train.max_minutes": None,
        "train.batch_tokens": 512,
        "model.max_positions": 64,
        "train.lr": 3e-3,
        "train.warmup_steps": 10,
        "train.eval_every": 1000,
        "train.save_every": 1000,
        "train.log_every": 10,
    }
    values.update(extra)
    return values


# A tiny rae: an 8-float slot code and a two-component mixture prior; and one with a one-layer
# diffusion prior trained for 300 steps.
TINY_RAE = {"latent_dim": 8}  # the default prior: kde
TINY_GMM_RAE = {"latent_dim": 8, "prior": "gmm", "prior_components": 2}
TINY_LEVEL_RAE = {"latent_dim": 8, "noise_max": 1.5, "prior_bandwidth": 0.4, "midpoint_level": 0.5}
TINY_DIFFUSION_RAE = {"latent_dim": 8, "prior": "diffusion", "prior_width": 32, "prior_layers": 1, "prior_max_steps": 300}


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Callable[..., Path]:
    """`trained_model(family, steps, **overrides)` → the `final/` directory of a tiny model trained on
    SENTENCES (or on `corpus`, a file's text) with `tiny_overrides`; `options` is the family's
    bottleneck section. The same arguments give the same directory, trained once per session: tests
    read it (and its run directory, `final.parent`) but never write there; one that must write
    copies it into its tmp_path first."""
    root = tmp_path_factory.mktemp("models")
    finals: dict[str, Path] = {}

    def get(family: str = "ae", steps: int = 300, options: dict | None = None, corpus: Path | None = None,
            **overrides) -> Path:
        source = (corpus.suffix, corpus.read_text()) if corpus else (".txt", "\n".join(SENTENCES) + "\n")
        key = json.dumps([family, steps, options, source, overrides], sort_keys=True)
        if key not in finals:
            run = root / f"{family}-{len(finals)}"
            run.mkdir()
            data = run / f"corpus{source[0]}"
            data.write_text(source[1])
            values = {**tiny_overrides(data, run / "run", **{"train.max_steps": steps, **overrides}), "model.family": family}
            if options is not None:
                values["model.bottleneck"] = options
            finals[key] = textae.train(textae.load_config(overrides=values), progress=False)
        return finals[key]

    return get
