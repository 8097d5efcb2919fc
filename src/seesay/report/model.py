"""What a report is made of: sections of figures, tables, gallery items and token traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .gallery import GalleryItem


@dataclass
class Figure:
    """One plot: ``name`` is its PNG's file name beside the report."""

    name: str
    png: bytes
    caption: str = ""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class TraceToken:
    """One decode step of a method's trace (DualPD: basic layer, Hellinger shifts, suppressed heads)."""

    token: str
    basic_layer: int | None = None
    shift: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, list[int]] = field(default_factory=dict)  # layer -> heads
    extra: dict[str, Any] = field(default_factory=dict)  # what else the step logged
    figure: Figure | None = None


@dataclass
class TraceView:
    label: str  # the question and method
    tokens: list[TraceToken]


@dataclass
class Section:
    """A titled part of the page; ``kind`` is one of :data:`KINDS` (its anchor and navigation group)."""

    kind: str
    title: str
    source: str = ""
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    gallery: list[GalleryItem] = field(default_factory=list)
    gallery_methods: list[str] = field(default_factory=list)
    traces: list[TraceView] = field(default_factory=list)


KINDS = {
    "methods": "method comparison",
    "layers": "per-layer curves",
    "gallery": "heatmap gallery",
    "trace": "per-token trace",
    "sweep": "sweeps",
}
