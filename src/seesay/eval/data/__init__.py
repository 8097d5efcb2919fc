"""Data loaders. Visual-CoT evidence records for now (the benchmark registry builds on them)."""

from .visual_cot import EvidenceRecord, load_visual_cot

__all__ = ["EvidenceRecord", "load_visual_cot"]
