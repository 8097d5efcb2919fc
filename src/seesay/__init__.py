"""seesay: make vision-language models say what they see."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    ImageError,
    ModelLoadError,
    NoImageTokensError,
    SeesayError,
    UnsupportedModelError,
)

# The public names, imported on first use (PEP 562): `import seesay` and `seesay --help` do not pay for
# torch, transformers and the engine until something needs them.
_LAZY = {
    "SUPPORTED_ARCHITECTURES": "engine.adapters", "ImageLayout": "engine.adapters",
    "ModelAdapter": "engine.adapters", "get_adapter": "engine.adapters",
    "Answer": "api", "ask": "api", "ask_batch": "api",
    "DecodeOutput": "engine.decoding", "GenerationSettings": "engine.decoding",
    "StepState": "engine.decoding", "decode": "engine.decoding",
    "EMBEDDING_OUTPUT": "engine.lens", "LogitLens": "engine.lens", "capture_hidden": "engine.lens",
    "LoadedModel": "engine.loading", "PreparedBatch": "engine.loading", "build_inputs": "engine.loading",
    "build_prompt": "engine.loading", "load_image": "engine.loading", "load_model": "engine.loading",
    "METHODS": "methods", "get_method": "methods",
    "AttentionTap": "engine.tap", "LayerScores": "engine.tap", "TapRecord": "engine.tap",
    "attention_tap": "engine.tap",
}  # fmt: skip

if TYPE_CHECKING:
    from .api import Answer, ask, ask_batch
    from .engine.adapters import SUPPORTED_ARCHITECTURES, ImageLayout, ModelAdapter, get_adapter
    from .engine.decoding import DecodeOutput, GenerationSettings, StepState, decode
    from .engine.lens import EMBEDDING_OUTPUT, LogitLens, capture_hidden
    from .engine.loading import LoadedModel, PreparedBatch, build_inputs, build_prompt, load_image, load_model
    from .engine.tap import AttentionTap, LayerScores, TapRecord, attention_tap
    from .methods import METHODS, get_method


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seesay' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "EMBEDDING_OUTPUT",
    "METHODS",
    "SUPPORTED_ARCHITECTURES",
    "Answer",
    "AttentionTap",
    "ConfigError",
    "DecodeOutput",
    "GenerationSettings",
    "ImageError",
    "ImageLayout",
    "LayerScores",
    "LoadedModel",
    "LogitLens",
    "ModelAdapter",
    "ModelLoadError",
    "NoImageTokensError",
    "PreparedBatch",
    "SeesayError",
    "StepState",
    "TapRecord",
    "UnsupportedModelError",
    "__version__",
    "ask",
    "ask_batch",
    "attention_tap",
    "build_inputs",
    "build_prompt",
    "capture_hidden",
    "decode",
    "get_adapter",
    "get_method",
    "load_image",
    "load_model",
]
