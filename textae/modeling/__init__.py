"""Model families: config, encoder–bottleneck–decoder, generation."""

from .config import TextAEConfig
from .model import TextAEModel, TextAEOutput

__all__ = ["TextAEConfig", "TextAEModel", "TextAEOutput"]
