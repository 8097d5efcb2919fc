"""Imports every task module so that each registers itself (add a file, then a line here)."""

from . import docvqa, gqa, okvqa, textvqa, visual_cot, vizwiz, vqav2  # noqa: F401
