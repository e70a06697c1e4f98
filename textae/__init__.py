"""textae: unsupervised text autoencoders — compress sentences into codes and rebuild them."""

from .autoencoder import AutoEncoder
from .config import RunConfig, load_config
from .errors import DataError, TextAEError
from .loading import load
from .modeling import TextAEConfig, TextAEModel, TextAEOutput
from .scoring import AnomalyDetector
from .textcodec import TextCodec
from .training import train

__all__ = [
    "AnomalyDetector",
    "AutoEncoder",
    "DataError",
    "RunConfig",
    "TextAEConfig",
    "TextAEError",
    "TextAEModel",
    "TextAEOutput",
    "TextCodec",
    "load",
    "load_config",
    "train",
]
