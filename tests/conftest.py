"""Shared fixtures: tiny corpora and tiny configs so every test runs in seconds on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
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
