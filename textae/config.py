"""A training run's whole configuration: one dataclass per concern, mirrored by `configs/*.yaml`.

YAML sections map one-to-one to the dataclasses below (`model` maps to `TextAEConfig`'s
arguments); unknown keys are errors, so a config file cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig
from .errors import DataError, TextAEError, first_line
from .modeling import TextAEConfig
from .noise import NoiseConfig
from .tokenizer import DEFAULT_VOCAB_SIZE, MIN_VOCAB_SIZE, MODEL_TYPES

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")

# Each section checks its values in __post_init__ and raises ValueError with a message that starts
# with the field's name; build_config prefixes the section ("invalid config: train.lr must be > 0, ...").
# A bad value fails when the config is read, before data preparation, not steps into a run.


@dataclass
class TokenizerConfig:
    vocab_size: int = DEFAULT_VOCAB_SIZE
    model_type: str = "unigram"  # or "bpe"

    def __post_init__(self) -> None:
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be >= {MIN_VOCAB_SIZE} (special tokens, 256 byte pieces and the "
                             f"characters of the text; a few hundred is a practical minimum), got {self.vocab_size}")
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}")


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    max_steps: int | None = 4000  # the cosine schedule's length (about 18 min on 2 CPU cores) ...
    max_minutes: float | None = 20.0  # ... and a hard cap on training time, whichever comes first
    batch_tokens: int = 2048  # padded tokens per batch; batches are built from length buckets
    max_batch_size: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "no", "bf16" or "fp16"
    eval_every: int = 250  # steps
    eval_sentences: int = 256  # held-out sentences decoded greedily for BLEU / exact match
    save_every: int = 250  # steps between resumable checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    init_from: str | None = None  # a trained model directory: its tokenizer and every weight whose name and shape match

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, or null (omit it) for no step limit; got {self.max_steps}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, or null (omit it) for no time limit; got {self.max_minutes}")
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("max_steps and max_minutes are both null, so the run would never end; set one")
        for name in ("batch_tokens", "max_batch_size", "grad_accum", "eval_every", "eval_sentences", "save_every",
                     "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("warmup_steps", "weight_decay", "grad_clip"):  # grad_clip 0 turns clipping off
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.adam_betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        if not self.output_dir:
            raise ValueError("output_dir must not be empty")


_FROM_TOKENIZER = {"vocab_size", "pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id", "mask_token_id"}
# The model section lists TextAEConfig's arguments with their defaults, less what the tokenizer decides.
_MODEL_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(TextAEConfig.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty and name not in _FROM_TOKENIZER
}
# Its types, from the same signature: the model section is checked like a dataclass section.
_MODEL_HINTS = {name: hint for name, hint in typing.get_type_hints(TextAEConfig.__init__).items() if name in _MODEL_DEFAULTS}


@dataclass
class RunConfig:
    # Defaults = the default run: news sentences of 4-40 words, light BERT masking.
    data: DataConfig = field(default_factory=lambda: DataConfig(min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS))
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=lambda: dict(_MODEL_DEFAULTS))  # TextAEConfig arguments
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(mask_rate=0.1, word_dropout=0.1))
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


SECTIONS = ("data", "tokenizer", "noise", "train")
MODEL_KEYS = set(_MODEL_DEFAULTS)


def _coerce(value: Any, hint: Any) -> Any:
    """YAML reads `3e-4` as a string, `no` as False and lists where tuples are meant; follow the field's type."""
    text = str(hint)
    if isinstance(value, bool) and "str" in text and "bool" not in text:
        return "yes" if value else "no"  # e.g. train.mixed_precision=no
    if isinstance(value, str) and "float" in text:
        try:
            return float(value)
        except ValueError:
            pass
    return tuple(value) if isinstance(value, list) and "tuple" in text else value


def _fits(value: Any, hint: Any) -> bool:
    """Whether a (coerced) value has the field's scalar type; containers are left to the section."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if hint in (str, bool) else True


def _typed(values: dict[str, Any], hints: dict[str, Any], name: str) -> dict[str, Any]:
    """`values` coerced to their fields' types; unknown keys and values of the wrong type are errors."""
    unknown = set(values) - set(hints)
    if unknown:
        raise TextAEError(f"unknown key(s) {sorted(unknown)} in config section '{name}'; known: {sorted(hints)}")
    coerced = {k: _coerce(v, hints[k]) for k, v in values.items()}
    for key, value in coerced.items():
        if not _fits(value, hints[key]):
            kind = getattr(hints[key], "__name__", str(hints[key]))
            raise TextAEError(f"{name}.{key} = {values[key]!r} is not {kind}; see configs/ for examples")
    return coerced


def _section(default: Any, values: dict[str, Any], name: str):
    """The run's default section with `values` applied."""
    return dataclasses.replace(default, **_typed(values, typing.get_type_hints(type(default)), name))


def parse_overrides(values: Iterable[str]) -> dict[str, str]:
    """`--set section.key=value` strings as {"section.key": "value"}; values stay text for build_config to read."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise TextAEError(f"--set expects section.key=value, got {item!r} (e.g. --set train.lr=3e-4)")
        out[key.strip()] = value
    return out


def build_config(values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A RunConfig from nested `values` (e.g. parsed YAML) and dotted `overrides` ("train.lr": 3e-4;
    "model.bottleneck.latent_dim": 8 sets one option of the family)."""
    values = {k: dict(v or {}) for k, v in (values or {}).items()}
    values["model"] = {**_MODEL_DEFAULTS, **values.get("model", {})}
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:
            raise TextAEError(f"override {key!r} must look like section.key, e.g. train.lr")
        parsed = yaml.safe_load(value) if isinstance(value, str) else value
        if section == "model" and name.startswith("bottleneck."):  # one family option: merged into the mapping
            values["model"]["bottleneck"] = {**(values["model"].get("bottleneck") or {}), name.split(".", 1)[1]: parsed}
        else:
            values.setdefault(section, {})[name] = parsed
    unknown = set(values) - set(SECTIONS) - {"model"}  # after the overrides, which may name a section too
    if unknown:
        raise TextAEError(f"unknown config section(s) {sorted(unknown)}; known: {sorted([*SECTIONS, 'model'])}")
    bad = set(values["model"]) - MODEL_KEYS
    if bad:
        raise TextAEError(f"unknown model key(s) {sorted(bad)}; known: {sorted(MODEL_KEYS)}")
    model = _typed(values["model"], _MODEL_HINTS, "model")
    try:
        TextAEConfig(**model)  # checks sizes, the family and its options now, before any data or tokenizer work
    except (TypeError, ValueError) as err:
        raise TextAEError(f"invalid config: {err}") from err
    defaults, sections = RunConfig(), {}
    for name in SECTIONS:
        try:
            sections[name] = _section(getattr(defaults, name), values.get(name, {}), name)
        except (TypeError, ValueError, DataError) as err:  # DataConfig's checks raise DataError
            raise TextAEError(f"invalid config: {name}.{err}") from err
    return RunConfig(model=model, **sections)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TextAEError(f"config file not found: {path}; see configs/ for examples")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise TextAEError(f"cannot parse {path}: {_yaml_problem(err)}; fix the file (see configs/ for examples)") from err
        if not isinstance(values, dict):
            raise TextAEError(f"{path} must hold a mapping of sections (data, tokenizer, model, noise, train)")
    return build_config(values, overrides)


def _yaml_problem(err: Exception) -> str:
    """A YAML error on one line: where (1-based line and column) and what, without the quoted source."""
    if isinstance(err, UnicodeDecodeError):
        return f"not valid UTF-8 at byte {err.start}"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or first_line(err)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
