"""Helpers for tests and smoke runs: tiny random-weight vision-language models built offline."""

from seesay.testing.tiny import FAMILIES, TinyVLM, build_tiny_vlm, tiny_image

__all__ = ["FAMILIES", "TinyVLM", "build_tiny_vlm", "tiny_image"]
