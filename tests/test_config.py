"""Configs cannot drift from the code: every YAML loads, the default YAML equals the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from textae.config import RunConfig, build_config, load_config, parse_overrides
from textae.errors import TextAEError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(p.name == "default.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_yaml_loads_against_the_dataclasses(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


def test_default_yaml_equals_the_code_defaults():
    expected = yaml.safe_load(yaml.safe_dump(RunConfig().to_dict()))
    assert yaml.safe_load((Path(__file__).parent.parent / "configs" / "default.yaml").read_text()) == expected


def test_overrides_and_their_errors():
    cfg = build_config(overrides={"train.lr": "3e-4", "model.num_codes": 2, "data.source": "x.txt"})
    assert cfg.train.lr == 3e-4 and cfg.model["num_codes"] == 2 and cfg.data.source == "x.txt"
    assert build_config(overrides={"train.mixed_precision": "no"}).train.mixed_precision == "no"  # YAML reads `no` as False
    with pytest.raises(TextAEError, match="unknown key"):
        build_config(overrides={"train.nope": 1})
    with pytest.raises(TextAEError, match="unknown model key"):
        build_config(overrides={"model.nope": 1})
    with pytest.raises(TextAEError, match="unknown config section"):
        build_config({"optim": {}})
    with pytest.raises(TextAEError, match="invalid config"):
        build_config(overrides={"noise.mask_rate": 2.0})
    with pytest.raises(TextAEError, match="section.key"):
        build_config(overrides={"lr": 1})
    # A value of the wrong type is one clear error, not a traceback from deep inside training.
    with pytest.raises(TextAEError, match=r"train.lr = 'abc' is not float"):
        build_config(overrides={"train.lr": "abc"})
    with pytest.raises(TextAEError, match=r"train.max_steps = 2.5 is not int \| None"):
        build_config(overrides={"train.max_steps": "2.5"})
    assert build_config(overrides={"train.max_minutes": "2", "data.max_examples": "null"}).train.max_minutes == 2


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model.d_model=abc", r"model.d_model = 'abc' is not int"),
        ("model.num_codes=abc", r"model.num_codes = 'abc' is not int"),
        ("model.num_codes=0", r"num_codes must be at least 1, got 0"),
        ("model.num_codes=-4", r"num_codes must be at least 1, got -4"),
        ("model.encoder_layers=0", r"encoder_layers must be at least 1"),
        ("model.num_codes=5", r"max_positions=64 must be a multiple of num_codes=5"),
        ("model.n_heads=3", r"d_model=128 must be a multiple of n_heads=3"),
        ("model.dropout=2", r"dropout must be in \[0, 1\), got 2"),
        ("model.bottleneck=abc", r"bottleneck must be a mapping"),
        ("nonexistent.key=1", r"unknown config section\(s\) \['nonexistent'\]"),
    ],
)
def test_bad_model_overrides_fail_at_load_time(item, message):
    # One TextAEError naming the option, at load time: before data preparation and tokenizer training.
    with pytest.raises(TextAEError, match=message):
        load_config(None, parse_overrides([item]))


def test_valid_model_overrides_are_typed():
    cfg = load_config(None, parse_overrides(["model.d_model=64", "model.n_heads=2", "model.dropout=1e-1",
                                             "model.num_codes=8", "model.family=vae"]))
    assert cfg.model["d_model"] == 64 and cfg.model["num_codes"] == 8 and cfg.model["family"] == "vae"
    assert cfg.model["dropout"] == 0.1 and isinstance(cfg.model["dropout"], float)  # YAML reads 1e-1 as a string


def test_one_family_option_can_be_set_alone(tmp_path):
    cfg = load_config(Path("configs/rae.yaml"), parse_overrides(["model.bottleneck.latent_dim=8"]))
    assert cfg.model["bottleneck"]["latent_dim"] == 8 and cfg.model["bottleneck"]["noise"] == 0.3  # the rest kept
    cfg = load_config(None, parse_overrides(["model.family=vq", "model.bottleneck.heads=2"]))
    assert cfg.model["bottleneck"] == {"heads": 2}
    with pytest.raises(TextAEError, match="latnt_dim"):
        load_config(Path("configs/rae.yaml"), parse_overrides(["model.bottleneck.latnt_dim=8"]))


def test_parse_overrides():
    assert parse_overrides([" train.lr=3e-4", "data.source=a=b.txt", "data.max_words="]) == {
        "train.lr": "3e-4", "data.source": "a=b.txt", "data.max_words": ""}
    with pytest.raises(TextAEError, match=r"--set expects section.key=value, got 'train.lr'"):
        parse_overrides(["train.lr"])


def test_saved_config_round_trips(tmp_path):
    cfg = build_config(overrides={"train.max_steps": 7, "model.d_model": 64})
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("family", ["rae", "vae", "vq", "cvae", "cae", "gmvae", "text"])
def test_family_yaml_lists_every_option_at_its_default(family):
    from dataclasses import asdict

    from textae.modeling.bottlenecks import family_config

    values = yaml.safe_load((Path(__file__).parent.parent / "configs" / f"{family}.yaml").read_text())
    assert values["model"]["family"] == family
    assert values["model"]["bottleneck"] == asdict(family_config(family))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.max_steps=-5", r"invalid config: train.max_steps must be >= 1, or null \(omit it\) for no step limit; got -5"),
        ("train.max_steps=0", r"train.max_steps must be >= 1, or null \(omit it\) for no step limit; got 0"),
        ("train.max_minutes=-1", r"train.max_minutes must be > 0, or null \(omit it\) for no time limit; got -1"),
        ("train.max_minutes=0", r"train.max_minutes must be > 0"),
        ("train.lr=0", r"train.lr must be > 0, got 0"),
        ("train.batch_tokens=0", r"train.batch_tokens must be >= 1, got 0"),
        ("train.max_batch_size=0", r"train.max_batch_size must be >= 1, got 0"),  # hung the batcher
        ("train.grad_accum=0", r"train.grad_accum must be >= 1"),
        ("train.eval_every=0", r"train.eval_every must be >= 1"),
        ("train.save_every=-1", r"train.save_every must be >= 1"),
        ("train.log_every=0", r"train.log_every must be >= 1"),
        ("train.keep_checkpoints=0", r"train.keep_checkpoints must be >= 1"),
        ("train.eval_sentences=0", r"train.eval_sentences must be >= 1"),
        ("train.min_lr_ratio=1.5", r"train.min_lr_ratio must be in \[0, 1\], got 1.5"),
        ("train.warmup_steps=-1", r"train.warmup_steps must be >= 0"),
        ("train.adam_betas=[0.9, 1.0]", r"train.adam_betas must be two numbers in \[0, 1\)"),
        ("train.mixed_precision=fp8", r"train.mixed_precision must be one of auto, no, bf16, fp16, got 'fp8'"),
        ("tokenizer.vocab_size=100", r"tokenizer.vocab_size must be >= 262"),
        ("tokenizer.model_type=wordpiece", r"tokenizer.model_type must be one of unigram, bpe, got 'wordpiece'"),
        ("data.min_words=-1", r"invalid config: data.min_words must be >= 0, got -1"),
        ("data.validation_size=0", r"data.validation_size must be a fraction"),
        ("noise.span_rate=1", r"invalid config: noise.span_rate must be in \[0, 1\), got 1"),
    ],
)
def test_bad_section_values_fail_at_load_time(item, message):
    # Each would otherwise fail (or hang, or train without end) after data preparation.
    with pytest.raises(TextAEError, match=message) as info:
        load_config(None, parse_overrides([item]))
    assert "\n" not in str(info.value)


def test_null_limits_mean_no_limit_but_not_both():
    assert load_config(None, parse_overrides(["train.max_steps=null"])).train.max_steps is None
    assert load_config(None, parse_overrides(["train.max_minutes=null"])).train.max_minutes is None
    with pytest.raises(TextAEError, match="train.max_steps and max_minutes are both null"):
        load_config(None, parse_overrides(["train.max_steps=null", "train.max_minutes=null"]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lr: 1\n  max_steps: 3: 4\n", r"line 3, column 15: mapping values are not allowed here"),
        ("train:\n\tlr: 1\n", r"line 2, column 1: found character '\\t' that cannot start any token"),
        ("train: [1, 2\n", r"line 2, column 1: expected ',' or '\]', but got '<stream end>'"),
    ],
)
def test_a_yaml_syntax_error_is_one_line(tmp_path, text, message):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(TextAEError, match=rf"^cannot parse .*x.yaml: {message}; fix the file") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_a_vocab_too_small_for_the_data_says_how_large_it_must_be():
    from textae.tokenizer import train_tokenizer

    with pytest.raises(TextAEError, match=r"tokenizer.vocab_size=262 is smaller than required for this data: it needs at least \d+ .*; raise"):
        train_tokenizer(["The quick brown fox jumps over the lazy dog, 0123456789 times!"] * 5, vocab_size=262)
