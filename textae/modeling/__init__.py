"""Model families: config, encoder–bottleneck–decoder, the text family, generation, the family registry."""

from transformers import AutoConfig, AutoModel

from .config import TextAEConfig
from .generation import Decodable, DecoderMemory
from .model import TextAEModel, TextAEOutput
from .pretrained import TextAEPreTrainedModel
from .registry import Family, family_names, get_family, register_family
from .text.model import TextCodeConfig, TextCodeModel

for _config, _model in ((TextAEConfig, TextAEModel), (TextCodeConfig, TextCodeModel)):
    AutoConfig.register(_config.model_type, _config)
    AutoModel.register(_config, _model)


def model_class(family: str) -> type[TextAEPreTrainedModel]:
    """The model class of a family: its own, or the shared encoder–bottleneck–decoder."""
    return get_family(family).model or TextAEModel


__all__ = [
    "Decodable", "DecoderMemory", "Family", "TextAEConfig", "TextAEModel", "TextAEOutput", "TextAEPreTrainedModel",
    "TextCodeConfig", "TextCodeModel", "family_names", "get_family", "model_class", "register_family",
]
