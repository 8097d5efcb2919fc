"""Published per-model settings the methods start from (matched on the model's name)."""

from __future__ import annotations

# Published visual-grounding layers (0-indexed), METHODS.md section 2 / the VEA paper.
LAYER_PRESETS: dict[str, tuple[int, ...]] = {
    "llava-1.5-7b": (14, 15, 17, 19),
    "llava-1.5-13b": (13, 14, 15, 16),
    "qwen2.5-vl-7b": (18, 22, 24),
    "qwen2.5-vl-32b": (49, 50, 51, 52, 53, 55, 56),
    "gemma-3-4b": (17, 19, 21, 23),
    "gemma-3-27b": (35, 37, 40, 41, 47, 53, 58),
}


def preset_layers(model_name: str) -> tuple[int, ...] | None:
    """The published L_VG of a model, matched on its name (e.g. 'llava-hf/llava-1.5-7b-hf')."""
    name = model_name.lower().replace("_", "-")
    for key, layers in LAYER_PRESETS.items():
        if key in name:
            return layers
    return None
