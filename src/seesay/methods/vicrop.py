"""ViCrop: training-free visual cropping from the model's own attention (Zhang et al., "MLLMs Know Where
to Look: Training-free Perception of Small Visual Details", ICLR 2025), its ``rel_att`` variant, as the
official code computes it (github.com/saccharomycetes/mllms_know: ``llava_methods.rel_attention_llava``,
``utils.bbox_from_att_image_adaptive``, ``run.vicrop_qa``).

1. Relative attention: the last row's attention to each image token in decoder layer ``layer`` (mean over
   heads), for the question and for a generic prompt, divided:  r_i = a_i(question) / a_i(general).
2. A map over the original image from the token scores (VEA's painting, :func:`seesay.methods.vea.evidence.
   evidence_map`, without denoising or blur), averaged to the first token block's grid.
3. The crop: for each ratio s in {1, 1.2, ..., 2}, the window of side ``s x`` the model's input size
   (in grid cells) with the largest sum, scored by (its sum - the mean of its four neighbour windows) /
   its area; the best ratio's window, centred and clamped to the image.
4. The answer: the same prompt with two images, the original and the crop (the crop added as a second
   view), decoded by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine.loading import LoadedModel, PreparedBatch, build_inputs
from ..errors import ConfigError
from .base import EnginePlan, Method, MethodConfig, register_method
from .vea.attribution import attention_rows
from .vea.evidence import evidence_map

RATIOS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)  # the official crop ratios
REFERENCE_DEPTH, REFERENCE_LAYER = 32, 14  # ATT_LAYER = 14 for 32-layer LLaVA-1.5 7B


@dataclass(frozen=True)
class ViCropConfig(MethodConfig):
    """ViCrop's knobs. Source of each default in brackets.

    layer: decoder layer whose attention is read; None = the official 14 of 32 scaled to the model's
        depth, round(14 L / 32). [ATT_LAYER = 14: official llava_methods.py; the scaling is ours]
    general_prompt: the generic prompt of the relative attention, put in place of the question.
        ["Write a general description of the image.": official run.py]
    crop_size: the crop's base side in original-image pixels; None = the model's input size (its first
        token block's canvas, 336 for LLaVA-1.5). [bbox_size = 336 for LLaVA: official run.py]
    """

    layer: int | None = None
    general_prompt: str = "Write a general description of the image."
    crop_size: int | None = None

    def __post_init__(self) -> None:
        if self.layer is not None and self.layer < 0:
            raise ConfigError(f"vicrop layer must be >= 0; got {self.layer}")
        if not self.general_prompt.strip():
            raise ConfigError("vicrop general_prompt must not be empty")
        if self.crop_size is not None and self.crop_size < 1:
            raise ConfigError(f"vicrop crop_size must be >= 1; got {self.crop_size}")

    def resolve_layer(self, num_layers: int) -> int:
        layer = (
            int(REFERENCE_LAYER * num_layers / REFERENCE_DEPTH + 0.5) if self.layer is None else self.layer
        )
        if layer >= num_layers:
            raise ConfigError(f"vicrop layer {layer} is past the model's {num_layers} layers")
        return layer


def grid_average(emap: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[H, W] map -> [rows, cols] cell means (cells split as evenly as the pixels allow)."""
    h, w = emap.shape
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            cell = emap[ys[r] : max(ys[r + 1], ys[r] + 1), xs[c] : max(xs[c + 1], xs[c] + 1)]
            out[r, c] = cell.mean() if cell.size else 0.0
    return out


def adaptive_box(grid: np.ndarray, image_size: tuple[int, int], crop_size: int) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) in original pixels from a [rows, cols] attention grid (module
    docstring, step 3); the whole image when the smallest window already covers the grid."""
    rows, cols = grid.shape
    width, height = image_size
    cell_w, cell_h = width / cols, height / rows
    best: tuple[float, float, tuple[int, int], tuple[int, int]] | None = None  # (score, ratio, pos, size)
    for ratio in RATIOS:
        nx = min(int(crop_size * ratio / cell_w), cols)
        ny = min(int(crop_size * ratio / cell_h), rows)
        if cols - nx < 1 and rows - ny < 1:
            if ratio == RATIOS[0]:
                return 0, 0, width, height
            continue
        nx, ny = max(nx, 1), max(ny, 1)
        window = np.array(
            [[grid[y : y + ny, x : x + nx].sum() for x in range(cols - nx + 1)] for y in range(rows - ny + 1)]
        )
        x, y = np.unravel_index(int(np.argmax(window.T)), window.T.shape)  # first maximum, x-major (official)
        top = window[y, x]
        neighbours = [window[y + dy, x + dx] for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0))
                      if 0 <= y + dy < window.shape[0] and 0 <= x + dx < window.shape[1]]  # fmt: skip
        score = (top - np.mean(neighbours)) / (nx * ny) if neighbours else 0.0
        if best is None or score > best[0]:
            best = (score, ratio, (x, y), (nx, ny))
    if best is None:
        return 0, 0, width, height
    _, ratio, (x, y), (nx, ny) = best
    side = crop_size * ratio
    half = side // 2
    cx = int(x * cell_w + cell_w * nx / 2)
    cy = int(y * cell_h + cell_h * ny / 2)
    cx = min(max(cx, half), width - half)
    cy = min(max(cy, half), height - half)
    return (
        int(max(0, cx - half)),
        int(max(0, cy - half)),
        int(min(width, cx + half)),
        int(min(height, cy + half)),
    )


def _with_general(texts: list[str], questions: list[str], general: str) -> list[str]:
    """Each text with its question replaced by the general prompt (the whole text when it holds none)."""
    return [
        t.replace(q, general, 1) if q and q in t else general for t, q in zip(texts, questions, strict=True)
    ]


@register_method("vicrop")
class ViCrop(Method):
    """ViCrop on the seesay engine (see the module docstring)."""

    config_class: ClassVar[type[MethodConfig]] = ViCropConfig
    reads_image_tokens = True

    def relative_scores(self, loaded: LoadedModel, batch: PreparedBatch) -> list[np.ndarray]:
        """Per sample, r_i = a_i(question) / a_i(general) over its image's tokens (step 1)."""
        cfg: ViCropConfig = self.config  # type: ignore[assignment]
        if any(len(imgs) != 1 for imgs in batch.images):
            raise ConfigError("vicrop takes one image per question")
        texts = batch.texts or batch.questions
        if not texts:
            raise ConfigError("vicrop needs the batch's texts (build it with seesay.build_inputs)")
        layer = cfg.resolve_layer(loaded.adapter.num_layers)
        general_texts = _with_general(texts, batch.questions or texts, cfg.general_prompt)
        general = build_inputs(loaded, batch.images, general_texts)
        rows = attention_rows(loaded, batch, [layer])[:, 0]  # [B, T]
        base = attention_rows(loaded, general, [layer])[:, 0]
        layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
        general_layouts = loaded.adapter.image_layouts(general.inputs, general.original_sizes)
        return [
            rows[b][ours[0].positions] / np.maximum(base[b][theirs[0].positions], 1e-12)
            for b, (ours, theirs) in enumerate(zip(layouts, general_layouts, strict=True))
        ]

    def crops(self, loaded: LoadedModel, batch: PreparedBatch) -> list[tuple[int, int, int, int]]:
        """Per sample, the crop box of its image (steps 1-3)."""
        cfg: ViCropConfig = self.config  # type: ignore[assignment]
        scores = self.relative_scores(loaded, batch)
        layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
        boxes = []
        for rel, (layout, *_) in zip(scores, layouts, strict=True):
            emap = evidence_map(layout, rel, sigma=0.0, use_denoise=False)  # VEA's painting, no blur
            block = layout.blocks[0]
            size = cfg.crop_size or int(max(block.input_size))
            boxes.append(adaptive_box(grid_average(emap, block.rows, block.cols), layout.original_size, size))
        return boxes

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        boxes = self.crops(loaded, batch)
        views = [[imgs[0], imgs[0].crop(box)] for imgs, box in zip(batch.images, boxes, strict=True)]
        answer = build_inputs(loaded, views, batch.texts or batch.questions)
        return EnginePlan(inputs=answer.inputs, passes_before=2)  # two attention passes ran before
