"""VEA's evidence pipeline (arXiv 2510.17771, Eqs. 1-4) as small pure functions, plus box labels.

    Eq. 1  e_i = mean_{l in L_VG} a^(l)_i                      per image token i (raw attention of the row)
    Eq. 2  e_ij <- mean(N_ij)  if e_ij > lambda * max(N_ij)    N_ij: the 3x3 neighbours (centre excluded,
                                                                edges replicated); lambda = 10
    Eq. 3  E = minmax(G_sigma * paint(e))                       painted on the model-input canvas; sigma <= 1
                                                                is a fraction of its shorter side, > 1 pixels
    Eq. 4  I'_xyc = (alpha + (1 - alpha) E_xy) I_xyc            alpha = 0.5

Families with several token blocks per image (LLaVA-NeXT's base view + anyres grid, InternVL's tiles +
thumbnail) get Eqs. 2-3 per block on that block's own canvas; the blocks' maps are carried to the original
image through each block's affine map and averaged where they overlap, then min-max normalised over the
pixels the model sees.

Where the highlight goes (VEA's ``highlight_on``): on "input", the image as the model sees it, as the
reference does: the original resampled onto the single block's model-input canvas (its resize / crop,
:func:`model_view`), highlighted with that canvas' map (Eq. 3 on the canvas, min-max over the covered
pixels), truncated to uint8, and handed to the processor again (which then leaves its size as it is).
Families with several blocks (tiles, views) have no single canvas: they, and "original", highlight the
original image with the map carried to it, which the model then resizes, crops or tiles as before.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ...engine.adapters.base import ImageGrid, ImageLayout


def mean_over_layers(rows: np.ndarray) -> np.ndarray:
    """Eq. 1: [n_layers, n_tokens] attention -> [n_tokens] evidence scores (a [n_tokens] row is returned)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        return rows
    if rows.ndim != 2:
        raise ValueError(f"mean_over_layers expects [n_layers, n_tokens] attention, got shape {rows.shape}")
    if rows.shape[0] == 0:
        raise ValueError("mean_over_layers got no layers (an empty layer set)")
    return rows.mean(axis=0)


def denoise(grid: np.ndarray, lam: float = 10.0) -> np.ndarray:
    """Eq. 2 on a [rows, cols] grid; a new array. Grids smaller than 3x3 are returned unchanged."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"denoise expects a 2-D grid, got shape {grid.shape}")
    h, w = grid.shape
    if h < 3 or w < 3:
        return grid.copy()
    padded = np.pad(grid, 1, mode="edge")
    neighbours = np.stack(
        [
            padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        ]
    )
    spike = grid > lam * neighbours.max(axis=0)
    return np.where(spike, neighbours.mean(axis=0), grid)


def pixel_sigma(sigma: float, canvas_hw: tuple[int, int]) -> float:
    """sigma <= 1: a fraction of the canvas' shorter side; > 1: pixels."""
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    return sigma * min(canvas_hw) if sigma <= 1 else sigma


def paint(values: np.ndarray, boxes: np.ndarray, canvas_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paint one value per box onto a canvas; returns (canvas, coverage mask)."""
    h, w = canvas_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"paint needs a non-empty canvas, got (height, width) = {canvas_hw}")
    values = np.asarray(values, dtype=np.float64).ravel()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"paint expects [n, 4] boxes (x0, y0, x1, y1), got shape {boxes.shape}")
    if len(values) != len(boxes):
        raise ValueError(f"paint got {len(values)} values for {len(boxes)} boxes")
    if not np.isfinite(boxes).all():
        raise ValueError("paint got a box with a non-finite coordinate")
    canvas = np.zeros((h, w), dtype=np.float64)
    covered = np.zeros((h, w), dtype=bool)
    for value, (x0, y0, x1, y1) in zip(values, np.rint(boxes).astype(int), strict=True):
        canvas[max(y0, 0) : y1, max(x0, 0) : x1] = value
        covered[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return canvas, covered


def smooth(canvas: np.ndarray, sigma: float) -> np.ndarray:
    """Eq. 3's blur (reflecting edges) of a 2-D canvas; sigma as in :func:`pixel_sigma`, 0 turns it off."""
    canvas = np.asarray(canvas)
    if canvas.ndim != 2:
        raise ValueError(f"smooth expects a 2-D [height, width] canvas, got shape {canvas.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return canvas.astype(np.float64, copy=True)
    from scipy.ndimage import gaussian_filter  # on first use: `seesay --help` does not load scipy

    return gaussian_filter(canvas.astype(np.float64), sigma=pixel_sigma(sigma, canvas.shape))


def minmax(x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise to [0, 1] (over ``where`` if given, 0 elsewhere); a constant map becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    if where is not None:
        where = np.asarray(where)
        if where.dtype != bool or where.shape != x.shape:
            raise ValueError(
                f"minmax: 'where' must be a bool mask of shape {x.shape}, got {where.dtype} {where.shape}"
            )
    sel = x if where is None else x[where]
    if sel.size == 0:
        return np.zeros_like(x)
    lo, hi = float(sel.min()), float(sel.max())
    out = np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)
    if where is not None:
        out = np.where(where, out, 0.0)
    return np.clip(out, 0.0, 1.0)


def highlight(image: Image.Image, emap: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Eq. 4: scale every channel by alpha + (1 - alpha) E, truncated to uint8 as the reference."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    arr = np.asarray(image.convert("RGB"), dtype=np.float64)
    emap = np.asarray(emap, dtype=np.float64)
    if emap.shape != arr.shape[:2]:
        raise ValueError(f"evidence map {emap.shape} does not match the image {arr.shape[:2]}")
    gain = (alpha + (1 - alpha) * emap)[..., None]
    # truncated to uint8 as VEA's reference does (``.astype(np.uint8)``), not rounded
    return Image.fromarray(np.clip(arr * gain, 0, 255).astype(np.uint8))


def model_view(image: Image.Image, block: ImageGrid) -> Image.Image:
    """The original ``image`` resampled onto ``block``'s model-input canvas (bicubic): canvas pixel
    (x, y) shows original pixel ``(sx x + ox, sy y + oy)`` (``block.to_original``)."""
    sx, sy, ox, oy = block.to_original
    w, h = (round(float(v)) for v in block.input_size)
    return image.convert("RGB").transform(
        (w, h), Image.Transform.AFFINE, (sx, 0, ox, 0, sy, oy), Image.Resampling.BICUBIC
    )


def input_highlight(
    image: Image.Image,
    layout: ImageLayout,
    token_scores: np.ndarray,
    lam: float = 10.0,
    sigma: float = 0.5,
    use_denoise: bool = True,
    alpha: float = 0.5,
    maps: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Image.Image | None:
    """Eqs. 2-4 on the model-input canvas of a one-block layout: the highlighted :func:`model_view`
    (None when the layout has several blocks). ``maps``: :func:`block_maps` of these scores, if computed."""
    if len(layout.blocks) != 1:
        return None
    (block,) = layout.blocks
    if maps is None:
        maps = block_maps(layout, token_scores, lam, sigma, use_denoise)
    canvas, covered = maps[0]
    return highlight(model_view(image, block), minmax(canvas, where=covered), alpha)


def _to_original(canvas: np.ndarray, covered: np.ndarray, block: ImageGrid, size: tuple[int, int]):
    """Carry a block's canvas map to the original image (nearest canvas pixel of each original pixel)."""
    w, h = size
    sx, sy, ox, oy = block.to_original
    xs = np.floor((np.arange(w) + 0.5 - ox) / sx).astype(int)
    ys = np.floor((np.arange(h) + 0.5 - oy) / sy).astype(int)
    ch, cw = canvas.shape
    inside = (ys[:, None] >= 0) & (ys[:, None] < ch) & (xs[None, :] >= 0) & (xs[None, :] < cw)
    yc, xc = np.clip(ys, 0, ch - 1), np.clip(xs, 0, cw - 1)
    values = canvas[yc[:, None], xc[None, :]]
    seen = covered[yc[:, None], xc[None, :]] & inside
    return np.where(seen, values, 0.0), seen


def block_map(
    block: ImageGrid, scores: np.ndarray, lam: float = 10.0, sigma: float = 0.5, use_denoise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 2-3 (before normalisation) for one block: (blurred canvas, coverage), both [H_in, W_in]."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size != block.rows * block.cols:
        raise ValueError(
            f"block {block.name!r} has {block.rows}x{block.cols} tokens, got {scores.size} scores"
        )
    grid = scores.reshape(block.rows, block.cols)
    if use_denoise:
        grid = denoise(grid, lam)
    w_in, h_in = block.input_size
    canvas, covered = paint(grid.ravel(), block.input_boxes, (round(float(h_in)), round(float(w_in))))
    return smooth(canvas, sigma), covered


def denoised_scores(layout: ImageLayout, token_scores: np.ndarray, lam: float = 10.0) -> np.ndarray:
    """Eq. 2 on each block's token grid, back in ``layout.positions`` order (tokens outside every block,
    e.g. LLaVA-NeXT's row ends, keep their score): the patch scores VEA's reference scores retrieval on."""
    out = np.asarray(token_scores, dtype=np.float64).copy()
    if out.ndim != 1 or len(out) != len(layout.positions):
        raise ValueError(f"expected one score per image token ({len(layout.positions)}), got {out.shape}")
    for block, idx in zip(layout.blocks, layout.block_slices, strict=True):
        out[idx] = denoise(out[idx].reshape(block.rows, block.cols), lam).ravel()
    return out


def block_maps(
    layout: ImageLayout,
    token_scores: np.ndarray,
    lam: float = 10.0,
    sigma: float = 0.5,
    use_denoise: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`block_map` of every block of ``layout`` (token scores in ``layout.positions`` order)."""
    token_scores = np.asarray(token_scores, dtype=np.float64)
    if token_scores.ndim != 1 or len(token_scores) != len(layout.positions):
        raise ValueError(
            f"an evidence map needs one score per image token ({len(layout.positions)}), "
            f"got shape {token_scores.shape}"
        )
    return [
        block_map(block, token_scores[idx], lam, sigma, use_denoise)
        for block, idx in zip(layout.blocks, layout.block_slices, strict=True)
    ]


def evidence_map(
    layout: ImageLayout,
    token_scores: np.ndarray,
    lam: float = 10.0,
    sigma: float = 0.5,
    use_denoise: bool = True,
    maps: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Eqs. 2-3 for one image: token scores (in ``layout.positions`` order) -> [H, W] map in [0, 1].
    ``maps``: :func:`block_maps` of these scores, if computed (VEA reuses them for the input highlight)."""
    if maps is None:
        maps = block_maps(layout, token_scores, lam, sigma, use_denoise)
    size = layout.original_size
    total = np.zeros((size[1], size[0]))
    weight = np.zeros((size[1], size[0]))
    for block, (canvas, covered) in zip(layout.blocks, maps, strict=True):
        values, seen = _to_original(canvas, covered, block, size)
        total += values
        weight += seen
    seen = weight > 0
    return minmax(np.where(seen, total / np.maximum(weight, 1), 0.0), where=seen)


def _union_cells(boxes: np.ndarray) -> np.ndarray:
    """The union of ``boxes`` ([m, 4]) as disjoint rectangles [k, 4]: the cells of the grid their edges
    span that some box covers, merged along y within each column."""
    xs, ys = np.unique(boxes[:, [0, 2]]), np.unique(boxes[:, [1, 3]])
    if len(xs) < 2 or len(ys) < 2:
        return np.zeros((0, 4))
    in_x = (boxes[:, 0, None] <= xs[None, :-1]) & (xs[None, 1:] <= boxes[:, 2, None])  # [m, columns]
    in_y = (boxes[:, 1, None] <= ys[None, :-1]) & (ys[None, 1:] <= boxes[:, 3, None])  # [m, rows]
    cells = (in_y[:, :, None] & in_x[:, None, :]).any(axis=0)  # [rows, columns]
    rects = []
    for c in range(cells.shape[1]):
        edges = np.diff(np.concatenate(([0], cells[:, c].astype(np.int8), [0])))
        for r0, r1 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            rects.append((xs[c], ys[r0], xs[c + 1], ys[r1]))
    return np.asarray(rects, dtype=np.float64).reshape(-1, 4)


def box_labels(layout: ImageLayout, boxes, rule: str = "any") -> np.ndarray:
    """Per image token (``layout.positions`` order): 1 if the evidence boxes cover its pixel box.

    ``boxes``: [x0, y0, x1, y1] in original pixels (one box or a list). The rules are applied to the UNION
    of the boxes, as VEA's reference does (ZhiningLiu1998/VEA c03e995c3c8d444a6e0835a0fdb023f6cbffd4c1,
    ``vea/evidence.py``: one pixel mask painted from every box, then ``_reduce_to_patches``): "any" part of
    the token covered (VEA's rule), at least "half" of its area, or "all" of it (a token tiled by two boxes
    counts). Areas are exact in continuous pixel coordinates (VEA counts the pixels of boxes truncated to
    integers on the model-input canvas). Tokens without a box (LLaVA-NeXT newlines) or with an empty one
    are 0.
    """
    if rule not in ("any", "half", "all"):
        raise ValueError(f"rule must be 'any', 'half' or 'all', got {rule!r}")
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size % 4 or (arr.ndim > 1 and arr.shape[-1] != 4):
        raise ValueError(f"boxes must be [x0, y0, x1, y1] (or a list of them), got shape {arr.shape}")
    arr = arr.reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError("an evidence box has a non-finite coordinate")
    if ((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])).any():
        raise ValueError("an evidence box has x1 < x0 or y1 < y0")
    tok = layout.token_boxes  # [n, 4], NaN rows for newline tokens
    labels = np.zeros(len(tok), dtype=bool)
    valid = ~np.isnan(tok).any(axis=1)
    t = tok[valid]
    area = np.maximum(t[:, 2] - t[:, 0], 0) * np.maximum(t[:, 3] - t[:, 1], 0)
    covered = np.zeros(len(t))
    rects = _union_cells(arr[(arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])])
    for chunk in range(0, len(rects), 256):
        r = rects[chunk : chunk + 256]
        ix = np.clip(
            np.minimum(t[:, 2, None], r[None, :, 2]) - np.maximum(t[:, 0, None], r[None, :, 0]), 0, None
        )
        iy = np.clip(
            np.minimum(t[:, 3, None], r[None, :, 3]) - np.maximum(t[:, 1, None], r[None, :, 1]), 0, None
        )
        covered += (ix * iy).sum(axis=1)
    tol = 1e-9 * area  # the union's area is a sum of products: allow its rounding
    if rule == "any":
        hit = covered > 0
    elif rule == "half":
        hit = covered >= 0.5 * area - tol
    else:
        hit = covered >= area - tol
    labels[valid] = hit & (area > 0)
    return labels


def compact_map(emap: np.ndarray, side: int = 32, digits: int = 3) -> dict[str, object]:
    """An evidence map [H, W] in [0, 1] shrunk for storage (area average, longer side <= ``side``,
    ``digits`` decimals): ``{"shape": [h, w], "values": [...]}`` (row-major), for :func:`expand_map`."""
    e = np.clip(np.nan_to_num(np.asarray(emap, dtype=np.float32)), 0, 1)
    h, w = e.shape
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(e, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float64)
    return {"shape": [size[1], size[0]], "values": np.round(small, digits).ravel().tolist()}


def expand_map(stored: dict, size: tuple[int, int]) -> np.ndarray:
    """A :func:`compact_map` back at image ``size`` (width, height), bilinear, clipped to [0, 1]."""
    h, w = (int(v) for v in stored["shape"])
    values = np.asarray(stored["values"], dtype=np.float32)
    if values.size != h * w:
        raise ValueError(f"stored evidence map: {values.size} values for shape {h}x{w}")
    grid = Image.fromarray(values.reshape(h, w), mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(grid, dtype=np.float64), 0, 1)
