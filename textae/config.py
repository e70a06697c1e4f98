"""A training run's whole configuration: one dataclass per concern, mirrored by `configs/*.yaml`.

YAML sections map one-to-one to the dataclasses below (`model` maps to `TextAEConfig`'s
arguments); unknown keys are errors, so a config file cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import DataConfig
from .errors import TextAEError
from .modeling import TextAEConfig
from .noise import NoiseConfig


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: str = "unigram"  # or "bpe"


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    max_steps: int | None = None  # stop after this many optimiser steps ...
    max_minutes: float | None = 20.0  # ... or this much training time, whichever comes first
    batch_tokens: int = 2048  # target tokens per batch; batches are built from length buckets
    max_batch_size: int = 128
    max_tokens_per_sentence: int = 64  # longer sentences are truncated (the model's position limit)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "bf16" or "fp16"
    eval_every: int = 200  # steps
    eval_sentences: int = 256  # held-out sentences decoded greedily for BLEU / exact match
    save_every: int = 200  # steps between resumable checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=dict)  # TextAEConfig arguments (vocab_size comes from the tokenizer)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


SECTIONS = {"data": DataConfig, "tokenizer": TokenizerConfig, "noise": NoiseConfig, "train": TrainConfig}
MODEL_KEYS = set(inspect.signature(TextAEConfig.__init__).parameters) - {"self", "kwargs", "vocab_size"}


def _section(cls: type, values: dict[str, Any], name: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise TextAEError(f"unknown key(s) {sorted(unknown)} in config section '{name}'; known: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def build_config(values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A RunConfig from nested `values` (e.g. parsed YAML) and dotted `overrides` ("train.lr": 3e-4)."""
    values = {k: dict(v or {}) for k, v in (values or {}).items()}
    unknown = set(values) - set(SECTIONS) - {"model"}
    if unknown:
        raise TextAEError(f"unknown config section(s) {sorted(unknown)}; known: {sorted([*SECTIONS, 'model'])}")
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:
            raise TextAEError(f"override {key!r} must look like section.key, e.g. train.lr")
        values.setdefault(section, {})[name] = _parse_value(value) if isinstance(value, str) else value
    model = values.get("model", {})
    bad = set(model) - MODEL_KEYS
    if bad:
        raise TextAEError(f"unknown model key(s) {sorted(bad)}; known: {sorted(MODEL_KEYS)}")
    try:
        TextAEConfig(**model)  # validates the family and its options now
        sections = {name: _section(cls, values.get(name, {}), name) for name, cls in SECTIONS.items()}
    except (TypeError, ValueError) as err:
        raise TextAEError(f"invalid config: {err}") from err
    return RunConfig(model=model, **sections)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TextAEError(f"config file not found: {path}; see configs/ for examples")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise TextAEError(f"cannot parse {path}: {err}") from err
        if not isinstance(values, dict):
            raise TextAEError(f"{path} must hold a mapping of sections (data, tokenizer, model, noise, train)")
    return build_config(values, overrides)
