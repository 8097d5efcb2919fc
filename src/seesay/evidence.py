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
pixels the model sees. The highlight is applied to the original image, which the model then resizes,
crops or tiles exactly as before, so the map stays aligned with its patch grid.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .adapters.base import ImageGrid, ImageLayout


def mean_over_layers(rows: np.ndarray) -> np.ndarray:
    """Eq. 1: [n_layers, n_tokens] attention -> [n_tokens] evidence scores."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows.mean(axis=0) if rows.ndim == 2 else rows


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
    return sigma * min(canvas_hw) if sigma <= 1 else sigma


def paint(values: np.ndarray, boxes: np.ndarray, canvas_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paint one value per box onto a canvas; returns (canvas, coverage mask)."""
    h, w = canvas_hw
    canvas = np.zeros((h, w), dtype=np.float64)
    covered = np.zeros((h, w), dtype=bool)
    for value, (x0, y0, x1, y1) in zip(values, np.rint(boxes).astype(int), strict=True):
        canvas[max(y0, 0) : y1, max(x0, 0) : x1] = value
        covered[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return canvas, covered


def smooth(canvas: np.ndarray, sigma: float) -> np.ndarray:
    """Eq. 3's blur (reflecting edges); sigma as in :func:`pixel_sigma`, 0 turns it off."""
    if sigma <= 0:
        return canvas.astype(np.float64, copy=True)
    return gaussian_filter(canvas.astype(np.float64), sigma=pixel_sigma(sigma, canvas.shape))


def minmax(x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise to [0, 1] (over ``where`` if given, 0 elsewhere); a constant map becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    sel = x if where is None else x[where]
    if sel.size == 0:
        return np.zeros_like(x)
    lo, hi = float(sel.min()), float(sel.max())
    out = np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)
    if where is not None:
        out = np.where(where, out, 0.0)
    return np.clip(out, 0.0, 1.0)


def highlight(image: Image.Image, emap: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Eq. 4: scale every channel by alpha + (1 - alpha) E."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    arr = np.asarray(image.convert("RGB"), dtype=np.float64)
    if emap.shape != arr.shape[:2]:
        raise ValueError(f"evidence map {emap.shape} does not match the image {arr.shape[:2]}")
    gain = (alpha + (1 - alpha) * emap)[..., None]
    return Image.fromarray(np.clip(np.rint(arr * gain), 0, 255).astype(np.uint8))


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
    grid = np.asarray(scores, dtype=np.float64).reshape(block.rows, block.cols)
    if use_denoise:
        grid = denoise(grid, lam)
    w_in, h_in = block.input_size
    canvas, covered = paint(grid.ravel(), block.input_boxes, (round(float(h_in)), round(float(w_in))))
    return smooth(canvas, sigma), covered


def evidence_map(
    layout: ImageLayout,
    token_scores: np.ndarray,
    lam: float = 10.0,
    sigma: float = 0.5,
    use_denoise: bool = True,
) -> np.ndarray:
    """Eqs. 2-3 for one image: token scores (in ``layout.positions`` order) -> [H, W] map in [0, 1]."""
    size = layout.original_size
    total = np.zeros((size[1], size[0]))
    weight = np.zeros((size[1], size[0]))
    for block, idx in zip(layout.blocks, layout.block_slices, strict=True):
        canvas, covered = block_map(block, np.asarray(token_scores)[idx], lam, sigma, use_denoise)
        values, seen = _to_original(canvas, covered, block, size)
        total += values
        weight += seen
    seen = weight > 0
    return minmax(np.where(seen, total / np.maximum(weight, 1), 0.0), where=seen)


def box_labels(layout: ImageLayout, boxes, rule: str = "any") -> np.ndarray:
    """Per image token (``layout.positions`` order): 1 if its pixel box overlaps an evidence box.

    ``boxes``: [x0, y0, x1, y1] in original pixels. Rules: "any" overlap (VEA's), "half" of the token's
    area, or "all" of it inside one box. Tokens without a box (LLaVA-NeXT newlines) are 0.
    """
    if rule not in ("any", "half", "all"):
        raise ValueError(f"rule must be 'any', 'half' or 'all', got {rule!r}")
    tok = layout.token_boxes  # [n, 4], NaN rows for newline tokens
    labels = np.zeros(len(tok), dtype=bool)
    valid = ~np.isnan(tok).any(axis=1)
    area = np.maximum(tok[:, 2] - tok[:, 0], 0) * np.maximum(tok[:, 3] - tok[:, 1], 0)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        ix = np.clip(np.minimum(tok[:, 2], x1) - np.maximum(tok[:, 0], x0), 0, None)
        iy = np.clip(np.minimum(tok[:, 3], y1) - np.maximum(tok[:, 1], y0), 0, None)
        inter = np.nan_to_num(ix * iy)
        if rule == "any":
            hit = inter > 0
        elif rule == "half":
            hit = inter >= 0.5 * np.nan_to_num(area)
        else:
            hit = (inter >= np.nan_to_num(area)) & (np.nan_to_num(area) > 0)
        labels |= hit & valid
    return labels
