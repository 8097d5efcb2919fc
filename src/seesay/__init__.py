"""seesay: make vision-language models say what they see."""

from __future__ import annotations

from .adapters import SUPPORTED_ARCHITECTURES, ImageLayout, ModelAdapter, get_adapter
from .api import Answer, ask, ask_batch
from .decoding import DecodeOutput, GenerationSettings, StepState, decode
from .errors import (
    ConfigError,
    ImageError,
    ModelLoadError,
    NoImageTokensError,
    SeesayError,
    UnsupportedModelError,
)
from .lens import EMBEDDING_OUTPUT, LogitLens, capture_hidden
from .loading import LoadedModel, PreparedBatch, build_inputs, build_prompt, load_image, load_model
from .methods import METHODS, get_method
from .tap import AttentionTap, LayerScores, TapRecord, attention_tap

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
