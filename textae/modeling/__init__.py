"""Model families: config, encoder–bottleneck–decoder, the text family, generation."""

from .config import TextAEConfig
from .model import TextAEModel, TextAEOutput
from .text.model import TextCodeModel


def model_class(family: str) -> type[TextAEModel] | type[TextCodeModel]:
    """The model class of a family: the text family has its own, every other one a bottleneck."""
    return TextCodeModel if family == "text" else TextAEModel


__all__ = ["TextAEConfig", "TextAEModel", "TextAEOutput", "TextCodeModel", "model_class"]
