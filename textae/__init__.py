"""textae: unsupervised text autoencoders — compress sentences into codes and rebuild them.

The names below are imported on first use (PEP 562), so `textae --help` and a command that
refuses its arguments do not wait for torch and transformers to load."""

from importlib import import_module

_EXPORTS = {
    "AnomalyDetector": ".scoring",
    "AutoEncoder": ".autoencoder",
    "DataError": ".errors",
    "RunConfig": ".config",
    "TextAEConfig": ".modeling",
    "TextAEError": ".errors",
    "TextAEModel": ".modeling",
    "TextAEOutput": ".modeling",
    "TextCodec": ".textcodec",
    "load": ".loading",
    "load_config": ".config",
    "train": ".training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textae' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
