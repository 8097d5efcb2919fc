"""VEA's evidence labels, ZhiningLiu1998/VEA at c03e995c3c8d444a6e0835a0fdb023f6cbffd4c1.

``vea/evidence.py``: ``build_evidence_labels`` paints every in-bounds projected box into ONE pixel mask of
the model-input image (``pixel_mask[y0:y1, x0:x1] = True``) and ``_reduce_to_patches`` counts the covered
pixels of each patch: "any" > 0, "half" >= patch area / 2, "all" == patch area (so the rules see the union
of the boxes). ``vea/adapters.py``: ``_clip_box`` (truncate to int, clamp to [0, W-1] x [0, H-1]) and
``_is_out_of_bounds``.
"""

import numpy as np

OVERLAP_RULES = ("any", "half", "all")


def _clip_box(box, width, height):
    x0, y0, x1, y1 = box
    return [
        int(max(0, min(width - 1, x0))),
        int(max(0, min(height - 1, y0))),
        int(max(0, min(width - 1, x1))),
        int(max(0, min(height - 1, y1))),
    ]


def _is_out_of_bounds(box, width, height):
    x0, y0, x1, y1 = box
    return x1 < 0 or x0 >= width or y1 < 0 or y0 >= height


def _reduce_to_patches(pixel_mask, patch_h, patch_w, rule):
    height, width = pixel_mask.shape
    tiles = pixel_mask.reshape(height // patch_h, patch_h, width // patch_w, patch_w)
    covered = tiles.sum(axis=(1, 3))
    if rule == "any":
        return (covered > 0).flatten()
    if rule == "all":
        return (covered == patch_h * patch_w).flatten()
    if rule == "half":
        return (covered >= (patch_h * patch_w) / 2).flatten()
    raise ValueError(f"rule must be one of {OVERLAP_RULES}, got {rule!r}")


def patch_labels(boxes, image_hw, patch_size, rule="any"):
    """``build_evidence_labels(...).patch_mask`` for boxes already in model-input pixels (identity
    projection: the adapters' ``project_boxes`` with scale 1 and no crop)."""
    height, width = image_hw
    projected = [_clip_box(b, width, height) for b in boxes]
    out_of_bounds = [_is_out_of_bounds(b, width, height) for b in boxes]
    pixel_mask = np.zeros((height, width), dtype=bool)
    for (x0, y0, x1, y1), oob in zip(projected, out_of_bounds, strict=True):
        if not oob:
            pixel_mask[y0:y1, x0:x1] = True
    patch_h, patch_w = patch_size
    return _reduce_to_patches(pixel_mask, patch_h, patch_w, rule)
