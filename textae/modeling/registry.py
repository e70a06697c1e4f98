"""The code families, by name: each registers itself where it is defined.

A bottleneck family is one `Bottleneck` subclass declared with `family="name", options=Dataclass`;
a family with a model of its own (the text family) calls `register_family` beside its model
class. Everything outside `modeling/` asks the registry or the family's classes, never a name:
the CLI's `--family` choices, which options a config may set, what the trainer must prepare.

Families from other packages register through the `textae.families` entry point group: each
entry names a module that defines (and so registers) its families.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "textae.families"


@dataclass(frozen=True)
class Family:
    """A registered family: its options dataclass (`model.bottleneck`) and the class that implements it.

    `bottleneck` is the `Bottleneck` subclass for families that plug into the shared
    encoder–bottleneck–decoder (`model` is then None); `model` is the model class of a family
    that has its own (and `bottleneck` is None).
    """

    name: str
    options: type
    bottleneck: type | None = None
    model: type | None = None

    @property
    def implementation(self) -> type:
        return self.bottleneck or self.model

    @property
    def conditional(self) -> bool:
        """Whether the family reads a label column of the training data (its options name it)."""
        return self.implementation.conditional

    @property
    def infills(self) -> bool:
        """Whether the family deletes its labels' markers from its input (cae): training finds them first."""
        return self.implementation.infills

    @property
    def find_unused_parameters(self) -> bool:
        """Whether some weights get no gradient in some steps (DDP must be told before the model exists)."""
        return self.implementation.find_unused_parameters

    def saved_options(self, options: dict[str, Any], weights: set[str]) -> dict[str, Any]:
        """A saved model's options (config.json), completed for one saved by an older textae (Bottleneck.saved_options)."""
        return options if self.bottleneck is None else self.bottleneck.saved_options(options, weights)

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """The options dataclass filled from `values`; unknown keys fail loudly."""
        names = {f.name for f in dataclasses.fields(self.options)}
        unknown = set(values or {}) - names
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for family {self.name!r}; known: {sorted(names)}")
        return self.options(**(values or {}))


_FAMILIES: dict[str, Family] = {}
_plugins_loaded = False


def register_family(name: str, options: type, *, bottleneck: type | None = None, model: type | None = None) -> Family:
    """Make a family known by `name`; registering the same classes again (a re-import) is harmless."""
    if (bottleneck is None) == (model is None):
        raise ValueError(f"family {name!r}: give either a bottleneck class or a model class")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"family {name!r}: options must be a dataclass, got {options!r}")
    family = Family(name, options, bottleneck, model)
    known = _FAMILIES.get(name)
    if known is not None and known.implementation.__qualname__ != family.implementation.__qualname__:
        raise ValueError(f"family {name!r} is already registered by {known.implementation.__qualname__}")
    _FAMILIES[name] = family
    return family


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entry.load()


def family_names() -> list[str]:
    """Every registered family, in registration order (the built-in ones first)."""
    _load_plugins()
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    _load_plugins()
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def family_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """The family's options dataclass filled from `options`; unknown families or keys fail loudly."""
    return get_family(name).make_options(options)
