"""The report's heatmap gallery: per question, the original image, its evidence boxes, the evidence map
over it and the highlighted image, with each method's answer against the reference.

A :class:`GalleryItem` is what a source (a demo run, an eval run folder) knows about one question;
:meth:`GalleryItem.tags` says which methods fixed it (right where base was wrong) or broke it (the
reverse), which the page's filter buttons use.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..methods.vea import heat_overlay
from ..methods.vea.evidence import compact_map, expand_map, highlight

TILE = 120  # pixels: the height of each gallery tile


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_from_b64(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]]) -> Image.Image:
    """The image with each evidence box ``[x0, y0, x1, y1]`` (pixels) outlined."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 64))
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 230, 0), width=width)
    return out


def tile(image: Image.Image, height: int = TILE) -> Image.Image:
    """``image`` scaled to ``height`` (nearest neighbour for small synthetic images)."""
    w, h = image.size
    resample = Image.Resampling.NEAREST if max(w, h) <= 128 else Image.Resampling.BILINEAR
    return image.resize((max(1, round(w * height / h)), height), resample)


@dataclass(eq=False)
class GalleryItem:
    """One question of the gallery. ``emap``: the evidence map at the image's size (or None);
    ``highlighted``: the image the method answered from (or None: computed from ``emap``, Eq. 4)."""

    id: str
    question: str
    references: list[str]
    answers: dict[str, str]
    correct: dict[str, bool]
    image: Image.Image
    boxes: list[list[float]] = field(default_factory=list)
    emap: np.ndarray | None = None
    highlighted: Image.Image | None = None
    group: str = ""  # e.g. the split

    def tags(self, base: str = "base") -> list[str]:
        """``fixed:M`` / ``broken:M`` for each method M that is right where ``base`` is wrong / the
        reverse; ``agree`` when no method differs from base."""
        if base not in self.correct:
            return []
        out = []
        for method, right in self.correct.items():
            if method != base and right != self.correct[base]:
                out.append(f"{'fixed' if right else 'broken'}:{method}")
        return out or ["agree"]

    def panels(self) -> list[tuple[str, Image.Image]]:
        """(caption, image) tiles: original, evidence boxes, evidence map, highlighted image."""
        out = [("image", self.image)]
        if self.boxes:
            out.append(("evidence boxes", draw_boxes(self.image, self.boxes)))
        if self.emap is not None:
            out.append(("evidence map", heat_overlay(self.image, self.emap)))
            shown = self.highlighted or highlight(self.image, self.emap)
            out.append(("highlighted", shown))
        return [(caption, tile(im)) for caption, im in out]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record (images as base64 PNG, the map compacted)."""
        return {
            "id": self.id,
            "question": self.question,
            "references": self.references,
            "answers": self.answers,
            "correct": self.correct,
            "image": base64.b64encode(png_of(self.image)).decode(),
            "boxes": self.boxes,
            "emap": compact_map(self.emap, side=32) if self.emap is not None else None,
            "highlighted": base64.b64encode(png_of(self.highlighted)).decode() if self.highlighted else None,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GalleryItem:
        image = image_from_b64(data["image"])
        return cls(
            id=str(data["id"]),
            question=data["question"],
            references=list(data["references"]),
            answers=dict(data["answers"]),
            correct={k: bool(v) for k, v in data["correct"].items()},
            image=image,
            boxes=[list(b) for b in data.get("boxes") or []],
            emap=expand_map(data["emap"], image.size) if data.get("emap") else None,
            highlighted=image_from_b64(data["highlighted"]) if data.get("highlighted") else None,
            group=data.get("group", ""),
        )


def pick(items: Sequence[GalleryItem], limit: int = 24, base: str = "base") -> list[GalleryItem]:
    """Up to ``limit`` items: first those some method fixed or broke (alternating between the tags so
    every method's changes show), then agreements, in their original order otherwise."""
    changed: dict[str, list[GalleryItem]] = {}
    agree = []
    for item in items:
        tags = item.tags(base)
        if tags in ([], ["agree"]):
            agree.append(item)
        else:
            changed.setdefault(tags[0], []).append(item)
    out: list[GalleryItem] = []
    queues = list(changed.values())
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                item = queue.pop(0)
                out.append(item)
    for item in agree:
        if len(out) >= limit:
            break
        out.append(item)
    return out
