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
    "SUPPORTED_ARCHITECTURES": "adapters", "ImageLayout": "adapters", "ModelAdapter": "adapters",
    "get_adapter": "adapters",
    "Answer": "api", "ask": "api", "ask_batch": "api",
    "DecodeOutput": "decoding", "GenerationSettings": "decoding", "StepState": "decoding",
    "decode": "decoding",
    "EMBEDDING_OUTPUT": "lens", "LogitLens": "lens", "capture_hidden": "lens",
    "LoadedModel": "loading", "PreparedBatch": "loading", "build_inputs": "loading",
    "build_prompt": "loading", "load_image": "loading", "load_model": "loading",
    "METHODS": "methods", "get_method": "methods",
    "AttentionTap": "tap", "LayerScores": "tap", "TapRecord": "tap", "attention_tap": "tap",
}  # fmt: skip

if TYPE_CHECKING:
    from .adapters import SUPPORTED_ARCHITECTURES, ImageLayout, ModelAdapter, get_adapter
    from .api import Answer, ask, ask_batch
    from .decoding import DecodeOutput, GenerationSettings, StepState, decode
    from .lens import EMBEDDING_OUTPUT, LogitLens, capture_hidden
    from .loading import LoadedModel, PreparedBatch, build_inputs, build_prompt, load_image, load_model
    from .methods import METHODS, get_method
    from .tap import AttentionTap, LayerScores, TapRecord, attention_tap


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
