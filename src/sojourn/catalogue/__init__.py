"""Hardware and model catalogues.

``default_catalogue()`` is the built-in data (``gpus.toml``, ``models.toml``:
every number with its source; prices are defaults meant to be overridden).
Extend it with ``Catalogue.from_file(path)`` or ``Catalogue.with_overrides``;
load any dense Hugging Face model with ``model_from_hf_config``.
"""

from sojourn.catalogue._catalogue import (
    GPU,
    PRECISIONS,
    Catalogue,
    ModelSpec,
    count_parameters,
    default_catalogue,
    model_from_hf_config,
)
from sojourn.catalogue._reliability import Reliability, reliability

__all__ = [
    "GPU",
    "PRECISIONS",
    "Catalogue",
    "ModelSpec",
    "Reliability",
    "count_parameters",
    "default_catalogue",
    "model_from_hf_config",
    "reliability",
]
