"""Model adapters: one per supported family, found from the model's class."""

from __future__ import annotations

from typing import Any

import torch

from ...errors import UnsupportedModelError
from .base import ImageGrid, ImageLayout, ModelAdapter
from .families import (
    ADAPTERS,
    Gemma3Adapter,
    InternVLAdapter,
    LlavaAdapter,
    LlavaNextAdapter,
    Qwen2_5_VLAdapter,
    Qwen2VLAdapter,
)

SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(a for cls in ADAPTERS for a in cls.architectures)


def adapter_class_for(model: torch.nn.Module) -> type[ModelAdapter]:
    """The adapter class of a loaded model, by its class (or a base class) name."""
    for cls in type(model).__mro__:  # most specific class first
        for adapter in ADAPTERS:
            if cls.__name__ in adapter.architectures:
                return adapter
    raise UnsupportedModelError(
        f"unsupported model class {type(model).__name__}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
    )


def get_adapter(model: torch.nn.Module, processor: Any = None) -> ModelAdapter:
    """Build the adapter for ``model`` (and its ``processor``, needed for pixel geometry)."""
    return adapter_class_for(model)(model=model, processor=processor)


__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "Gemma3Adapter",
    "ImageGrid",
    "ImageLayout",
    "InternVLAdapter",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "ModelAdapter",
    "Qwen2VLAdapter",
    "Qwen2_5_VLAdapter",
    "adapter_class_for",
    "get_adapter",
]
