"""The six supported families: structure, positions and image-token geometry.

Geometry per family (how image token k maps to a pixel box of the ORIGINAL image):

* LLaVA-1.5: (optional pad to square,) resize shortest edge to S, centre crop C x C, ViT patch p ->
  (C/p)^2 tokens in raster order.
* LLaVA-NeXT: a base image resized to S x S (aspect ignored), then "anyres" tiles: the image resized
  into the best pinpoint resolution keeping its aspect, padded, cut into C x C tiles; the model unpads the
  tile grid and appends a newline token per row. The layout is computed with the model's own
  ``pack_image_features`` on coordinate features, so it follows the model exactly.
* Qwen2-VL / Qwen2.5-VL: resized to (h*14, w*14) from ``image_grid_thw``, 2x2 merge -> 28 px per token.
* Gemma3: resized to image_size^2 (aspect ignored), pooled to a sqrt(mm_tokens_per_image) square grid.
* InternVL: tiles of the image resized to cols x rows tiles (+ a thumbnail when > 1 tile); each tile's
  ViT grid is pixel-shuffled with the model's own ``pixel_shuffle`` on coordinate features.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from .base import (
    ADAPTER_REGISTRY,
    ImageGrid,
    ImageLayout,
    ModelAdapter,
    affine_boxes,
    grid_boxes,
    register_adapter,
)


def _size_get(size: Any, key: str) -> Any:
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _split_positions(input_ids_row: torch.Tensor, image_token_id: int, counts: list[int]) -> list[np.ndarray]:
    """Split a sample's image-token positions into consecutive chunks of the given sizes."""
    positions = (input_ids_row == image_token_id).nonzero().flatten().cpu().numpy()
    if sum(counts) != len(positions):
        raise ValueError(
            f"expected {sum(counts)} image tokens from the image geometry, "
            f"found {len(positions)} in the prompt"
        )
    out, start = [], 0
    for n in counts:
        out.append(positions[start : start + n])
        start += n
    return out


def _single_block_layouts(
    adapter: ModelAdapter, inputs: dict[str, Any], original_sizes, grids_fn
) -> list[list[ImageLayout]]:
    """Layouts for families with one grid block per image. ``grids_fn(sample, image, size) -> ImageGrid``."""
    layouts = []
    image_index = 0
    for b, sizes in enumerate(original_sizes):
        grids = []
        for size in sizes:
            grids.append(grids_fn(image_index, size))
            image_index += 1
        chunks = _split_positions(
            inputs["input_ids"][b], adapter.image_token_id, [g.num_tokens for g in grids]
        )
        layouts.append(
            [
                ImageLayout(
                    positions=pos, blocks=(g,), block_slices=(np.arange(g.num_tokens),), original_size=size
                )
                for pos, g, size in zip(chunks, grids, sizes, strict=True)
            ]
        )
    return layouts


def _image_processor(adapter: ModelAdapter):
    proc = adapter.processor
    if proc is None:
        raise ValueError(f"{adapter.family}: mapping image tokens to pixels needs the model's processor")
    return getattr(proc, "image_processor", proc)


@register_adapter("llava")
class LlavaAdapter(ModelAdapter):
    """LLaVA-1.5 (``LlavaForConditionalGeneration``)."""

    family: ClassVar[str] = "llava"
    architectures: ClassVar[tuple[str, ...]] = ("LlavaForConditionalGeneration",)

    def image_grid(self, size: tuple[int, int]) -> ImageGrid:
        """The token grid of one image of original ``size`` = (W, H)."""
        from transformers.image_transforms import get_resize_output_image_size

        ip = _image_processor(self)
        w, h = size
        off_x = off_y = 0.0
        if getattr(ip, "do_pad", False):  # LlavaImageProcessor: pad to a square first, centred
            side = max(w, h)
            off_x, off_y = (side - w) / 2, (side - h) / 2
            w_eff = h_eff = side
        else:
            w_eff, h_eff = w, h
        new_h, new_w = h_eff, w_eff
        shortest = _size_get(ip.size, "shortest_edge")
        if getattr(ip, "do_resize", True):
            if shortest:
                new_h, new_w = get_resize_output_image_size(
                    np.empty((3, h_eff, w_eff), dtype=np.uint8),
                    size=shortest,
                    default_to_square=False,
                    input_data_format="channels_first",
                )
            else:
                new_h, new_w = _size_get(ip.size, "height"), _size_get(ip.size, "width")
        crop_h, crop_w = new_h, new_w
        top = left = 0
        if getattr(ip, "do_center_crop", False) and ip.crop_size is not None:
            crop_h, crop_w = _size_get(ip.crop_size, "height"), _size_get(ip.crop_size, "width")
            top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        vc = self.model.config.vision_config
        side = vc.image_size // vc.patch_size
        canvas = grid_boxes(side, side, crop_w, crop_h)
        sx, sy = w_eff / new_w, h_eff / new_h
        return ImageGrid(
            "image", side, side, (crop_w, crop_h), canvas, (sx, sy, left * sx - off_x, top * sy - off_y), size
        )

    def image_layouts(self, inputs, original_sizes):
        grids: dict[tuple[int, int], ImageGrid] = {}  # one grid per distinct size in this batch

        def grid(_: int, size: tuple[int, int]) -> ImageGrid:
            key = (int(size[0]), int(size[1]))
            if key not in grids:
                grids[key] = self.image_grid(key)
            return grids[key]

        return _single_block_layouts(self, inputs, original_sizes, grid)


@register_adapter("llava_next")
class LlavaNextAdapter(ModelAdapter):
    """LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``)."""

    family: ClassVar[str] = "llava_next"
    architectures: ClassVar[tuple[str, ...]] = ("LlavaNextForConditionalGeneration",)

    def image_layout_for(
        self, size: tuple[int, int], image_size_hw: tuple[int, int]
    ) -> tuple[list[ImageGrid], list[np.ndarray], int]:
        """Blocks (base + tiles), per-block token indices and total token count of one image."""
        from transformers.image_processing_utils import select_best_resolution
        from transformers.models.llava_next.image_processing_pil_llava_next import get_patch_output_size

        cfg = self.model.config
        vc = cfg.vision_config
        side = vc.image_size // vc.patch_size
        w, h = size
        base_canvas = grid_boxes(side, side, vc.image_size, vc.image_size)
        base = ImageGrid(
            "base",
            side,
            side,
            (vc.image_size, vc.image_size),
            base_canvas,
            (w / vc.image_size, h / vc.image_size, 0.0, 0.0),
            size,
        )
        best_h, best_w = select_best_resolution(image_size_hw, cfg.image_grid_pinpoints)
        new_h, new_w = get_patch_output_size(
            np.empty((3, h, w), dtype=np.uint8), (best_h, best_w), input_data_format="channels_first"
        )
        paste_x, paste_y = (best_w - new_w) // 2, (best_h - new_h) // 2
        n_rows, n_cols = best_h // vc.image_size, best_w // vc.image_size
        canvas = grid_boxes(n_rows * side, n_cols * side, best_w, best_h)  # [R*C, 4] raster over the canvas
        # Coordinate features: (num_tiles, side*side, 5) laid out as the vision tower emits them.
        grid = canvas.reshape(n_rows, side, n_cols, side, 4).transpose(0, 2, 1, 3, 4)
        idx = np.arange(n_rows * side * n_cols * side, dtype=float).reshape(n_rows, side, n_cols, side)
        idx = idx.transpose(0, 2, 1, 3)
        feats = np.concatenate([grid, idx[..., None]], axis=-1).reshape(n_rows * n_cols, side * side, 5)
        base_feats = np.concatenate([base_canvas, np.full((side * side, 1), -1.0)], axis=-1)[None]
        all_feats = torch.from_numpy(np.concatenate([base_feats, feats], axis=0)).double()
        newline = torch.full((5,), float("nan"), dtype=torch.float64)
        packed, _ = self.model.model.pack_image_features(
            [all_feats], torch.tensor([image_size_hw]), cfg.vision_feature_select_strategy, newline
        )
        if isinstance(packed, list | tuple):
            packed = torch.cat(list(packed), dim=0)
        packed = packed.numpy()
        n_base = side * side
        tiles = packed[n_base:]
        is_patch = ~np.isnan(tiles[:, 4])
        tile_canvas = tiles[is_patch, :4]
        rows = max(1, int((~is_patch).sum()))  # one newline token closes every kept row
        tile_block = ImageGrid(
            "anyres",
            rows,
            int(is_patch.sum()) // rows,
            (best_w, best_h),
            tile_canvas,
            (w / new_w, h / new_h, -paste_x * w / new_w, -paste_y * h / new_h),
            size,
        )
        patch_idx = n_base + np.nonzero(is_patch)[0]
        return [base, tile_block], [np.arange(n_base), patch_idx], len(packed)

    def image_layouts(self, inputs, original_sizes):
        layouts = []
        image_sizes = inputs["image_sizes"].tolist()
        k = 0
        for b, sizes in enumerate(original_sizes):
            per_image = []
            for size in sizes:
                hw = tuple(int(v) for v in image_sizes[k])
                per_image.append(self.image_layout_for(size, hw))
                k += 1
            chunks = _split_positions(inputs["input_ids"][b], self.image_token_id, [p[2] for p in per_image])
            layouts.append(
                [
                    ImageLayout(
                        positions=pos, blocks=tuple(blocks), block_slices=tuple(slices), original_size=size
                    )
                    for pos, (blocks, slices, _), size in zip(chunks, per_image, sizes, strict=True)
                ]
            )
        return layouts


@register_adapter("qwen2_vl")
class Qwen2VLAdapter(ModelAdapter):
    """Qwen2-VL: M-RoPE positions, dynamic grid from ``image_grid_thw``."""

    family: ClassVar[str] = "qwen2_vl"
    architectures: ClassVar[tuple[str, ...]] = ("Qwen2VLForConditionalGeneration",)

    def position_inputs(self, inputs, state):
        """4-row position ids [text; t; h; w] as ``generate()`` builds them; keeps ``rope_deltas``."""
        mask = inputs["attention_mask"]
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        if inputs.get("mm_token_type_ids") is None:
            state["rope_deltas"] = torch.zeros(mask.shape[0], 1, dtype=torch.long, device=mask.device)
            return {"position_ids": text[None].expand(4, -1, -1)}
        vision, deltas = self.model.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            attention_mask=mask,
        )
        state["rope_deltas"] = deltas
        return {"position_ids": torch.cat([text[None], vision], dim=0)}

    def next_position_inputs(self, attention_mask, state):
        text = (attention_mask.long().cumsum(-1)[:, -1:] - 1)[None]  # [1, B, 1]
        vision = (text + state["rope_deltas"].to(text.device)[None]).expand(3, -1, -1)
        return {"position_ids": torch.cat([text, vision], dim=0)}

    def image_layouts(self, inputs, original_sizes):
        thw = inputs["image_grid_thw"].tolist()
        vc = self.model.config.vision_config
        merge, patch = vc.spatial_merge_size, vc.patch_size

        def grid(i: int, size: tuple[int, int]) -> ImageGrid:
            _, gh, gw = thw[i]
            rows, cols = gh // merge, gw // merge
            rw, rh = gw * patch, gh * patch
            canvas = grid_boxes(rows, cols, rw, rh)
            return ImageGrid(
                "image", rows, cols, (rw, rh), canvas, (size[0] / rw, size[1] / rh, 0.0, 0.0), size
            )

        return _single_block_layouts(self, inputs, original_sizes, grid)


@register_adapter("qwen2_5_vl")
class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL: as Qwen2-VL (windowed vision attention does not change the token grid)."""

    family: ClassVar[str] = "qwen2_5_vl"
    architectures: ClassVar[tuple[str, ...]] = ("Qwen2_5_VLForConditionalGeneration",)


@register_adapter("gemma3")
class Gemma3Adapter(ModelAdapter):
    """Gemma3 (``Gemma3ForConditionalGeneration``): square pooled grid, sliding-window layers, image
    tokens attending to their whole image (``token_type_ids``)."""

    family: ClassVar[str] = "gemma3"
    architectures: ClassVar[tuple[str, ...]] = ("Gemma3ForConditionalGeneration",)
    causal_image_attention: ClassVar[bool] = False

    def image_layouts(self, inputs, original_sizes):
        cfg = self.model.config
        side = math.isqrt(int(cfg.mm_tokens_per_image))
        res = cfg.vision_config.image_size

        def grid(i: int, size: tuple[int, int]) -> ImageGrid:
            canvas = grid_boxes(side, side, res, res)
            return ImageGrid(
                "image", side, side, (res, res), canvas, (size[0] / res, size[1] / res, 0.0, 0.0), size
            )

        return _single_block_layouts(self, inputs, original_sizes, grid)


@register_adapter("internvl")
class InternVLAdapter(ModelAdapter):
    """InternVL (``InternVLForConditionalGeneration``, the transformers-native port)."""

    family: ClassVar[str] = "internvl"
    architectures: ClassVar[tuple[str, ...]] = ("InternVLForConditionalGeneration",)

    def _tile_canvas(self) -> tuple[np.ndarray, int, int, int]:
        """Token boxes within one tile (tile pixels), via the model's own pixel shuffle."""
        cfg = self.model.config
        vc = cfg.vision_config
        tile = vc.image_size[0] if isinstance(vc.image_size, list | tuple) else vc.image_size
        patch = vc.patch_size[0] if isinstance(vc.patch_size, list | tuple) else vc.patch_size
        n = tile // patch
        boxes = torch.from_numpy(grid_boxes(n, n, tile, tile)).double().reshape(1, n, n, 4)
        shuffled = self.model.model.pixel_shuffle(boxes, scale_factor=cfg.downsample_ratio)
        side = shuffled.shape[1]
        groups = shuffled.reshape(-1, shuffled.shape[-1] // 4, 4).numpy()
        merged = np.stack(
            [groups[..., 0].min(1), groups[..., 1].min(1), groups[..., 2].max(1), groups[..., 3].max(1)],
            axis=-1,
        )
        return merged, side, tile, len(merged)

    def image_layouts(self, inputs, original_sizes):
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

        ip = _image_processor(self)
        tile_boxes, side, tile, per_tile = self._tile_canvas()
        layouts = []
        for b, sizes in enumerate(original_sizes):
            per_image = []
            for size in sizes:
                w, h = size
                blocks: list[ImageGrid] = []
                if getattr(ip, "crop_to_patches", False) and getattr(ip, "max_patches", 1) > 1:
                    cols, rows = get_optimal_tiled_canvas(
                        (h, w), (tile, tile), ip.min_patches, ip.max_patches
                    )
                else:
                    cols = rows = 1
                sx, sy = w / (cols * tile), h / (rows * tile)
                for i in range(cols * rows):
                    c, r = i % cols, i // cols
                    canvas = affine_boxes(tile_boxes, 1, 1, c * tile, r * tile)
                    blocks.append(
                        ImageGrid(
                            f"tile {r},{c}",
                            side,
                            side,
                            (cols * tile, rows * tile),
                            canvas,
                            (sx, sy, 0.0, 0.0),
                            size,
                        )
                    )
                if cols * rows > 1:
                    blocks.append(
                        ImageGrid(
                            "thumbnail",
                            side,
                            side,
                            (tile, tile),
                            tile_boxes,
                            (w / tile, h / tile, 0.0, 0.0),
                            size,
                        )
                    )
                per_image.append(blocks)
            chunks = _split_positions(
                inputs["input_ids"][b], self.image_token_id, [per_tile * len(bl) for bl in per_image]
            )
            layouts.append(
                [
                    ImageLayout(
                        positions=pos,
                        blocks=tuple(bl),
                        block_slices=tuple(
                            np.arange(i * per_tile, (i + 1) * per_tile) for i in range(len(bl))
                        ),
                        original_size=size,
                    )
                    for pos, bl, size in zip(chunks, per_image, sizes, strict=True)
                ]
            )
        return layouts


ADAPTERS: tuple[type[ModelAdapter], ...] = tuple(ADAPTER_REGISTRY.values())  # in registration order
