"""Prefill passes and the KV cache: the one place that knows the transformers cache API.

:func:`prefill` runs a prompt in one pass, or in chunks of at most ``chunk_size`` tokens against the
growing KV cache (what ``generate()`` does with ``prefill_chunk_size``): the pass then holds one chunk's
activations, not the whole prompt's. A branch's prompt is prefilled this way beside the batch's KV cache,
so that a two-branch method's peak memory is about one KV cache more than plain decoding.

Chunks and images: the images are encoded once (the model's ``get_image_features``) and each chunk gets
the feature rows of the image tokens it holds through the model's ``mm_encoder_outputs`` input (rows in
placeholder order over (batch, sequence), as the models consume them). When a family's image tokens attend
to each other in both directions (Gemma3), no chunk boundary falls inside a run of image tokens: a token
cannot see keys that are not yet in the cache. Inputs that this cannot split (videos, unknown per-sample
tensors, a model without ``mm_encoder_outputs``) are prefilled in one pass.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from typing import Any

import torch

from .adapters.base import ModelAdapter

# per-token inputs that the models read by position from the sequence start (the mask's rule)
_FROM_START = ("attention_mask", "token_type_ids", "mm_token_type_ids")
# encoder output fields a chunk can do without: the pooled features (split per chunk) and what the language
# model does not read (the vision tower's own states)
_ENCODER_TRACE = ("pooler_output", "last_hidden_state", "hidden_states", "attentions")


@torch.no_grad()
def cached_forward(adapter: ModelAdapter, inputs: dict[str, Any], cache: Any) -> tuple[Any, Any]:
    """One pass of the base model with a KV cache (``cache``; None at prefill) -> (output, new cache).

    With :func:`join_caches`, the one place the transformers cache API is used (5.x: the ``cache``
    argument and output field).
    """
    out = adapter.base_model(**inputs, cache=cache, use_cache=True, return_dict=True)
    return out, out.cache


def prefill(
    adapter: ModelAdapter, inputs: Mapping[str, torch.Tensor], chunk_size: int | None = None
) -> tuple[torch.Tensor, Any, dict[str, Any], int]:
    """Prefill ``inputs`` (processor outputs, left padded): (the last position's hidden state [B, d], a
    copy rather than a view that keeps [B, T, d] alive; the KV cache; the adapter's position state; the
    model calls made). In chunks of ``chunk_size`` tokens where the prompt is longer and the inputs can be
    split (see the module docstring), else in one pass."""
    state: dict[str, Any] = {}
    full = {**inputs, **adapter.position_inputs(dict(inputs), state)}
    plan = _chunk_plan(adapter, full, chunk_size)
    per_chunk_features = None if plan is None else _chunk_features(adapter, *plan)
    if plan is None or per_chunk_features is None:
        out, cache = cached_forward(adapter, full, None)
        return out.last_hidden_state[:, -1].clone(), cache, state, 1
    bounds, _, encoder_kwargs = plan
    rest = {k: v for k, v in full.items() if k not in encoder_kwargs}
    cache = None
    for (start, end), features in zip(itertools.pairwise(bounds), per_chunk_features, strict=True):
        chunk: dict[str, Any] = {}
        for key, value in rest.items():
            if value is not None and key in _FROM_START:
                value = value[..., :end]
            elif value is not None and key in ("input_ids", "position_ids"):
                value = value[..., start:end]
            chunk[key] = value
        if features is not None:
            chunk["mm_encoder_outputs"] = {"image": features}
        out, cache = cached_forward(adapter, chunk, cache)
    return out.last_hidden_state[:, -1].clone(), cache, state, len(bounds) - 1


def _chunk_plan(
    adapter: ModelAdapter, inputs: Mapping[str, Any], chunk_size: int | None
) -> tuple[list[int], torch.Tensor, dict[str, Any]] | None:
    """(chunk boundaries [0, ..., T], the image-token mask [B, T], the image encoder's inputs) or None
    for one pass."""
    ids = inputs["input_ids"]
    length = ids.shape[1]
    if chunk_size is None or length <= chunk_size:
        return None
    base = adapter.base_model
    encoder = getattr(base, "get_image_features", None)
    if encoder is None or "mm_encoder_outputs" not in inspect.signature(base.forward).parameters:
        return None
    encoder_params = inspect.signature(encoder).parameters
    encoder_kwargs = {k: v for k, v in inputs.items() if k in encoder_params and v is not None}
    for key, value in inputs.items():
        if key in encoder_kwargs or value is None:
            continue
        if "video" in key or key not in ("input_ids", "position_ids", *_FROM_START):
            return None  # a tensor we do not know how to split by position
    image = adapter.image_mask(ids)
    if bool(image.any()) != ("pixel_values" in encoder_kwargs):
        return None
    whole = not adapter.causal_image_attention
    return chunk_bounds(image, chunk_size, keep_images_whole=whole), image, encoder_kwargs


def chunk_bounds(image_mask: torch.Tensor, chunk_size: int, keep_images_whole: bool = False) -> list[int]:
    """Boundaries ``[0, b_1, ..., T]`` of chunks of at most ``chunk_size`` positions; with
    ``keep_images_whole`` no boundary lies between two image tokens of any row (a chunk then ends before
    the image run, or after it when the run alone is longer than ``chunk_size``)."""
    length = image_mask.shape[1]
    inside = (image_mask[:, :-1] & image_mask[:, 1:]).any(0).tolist()  # inside[p - 1]: p splits a run
    bounds = [0]
    while bounds[-1] < length:
        start = bounds[-1]
        end = min(length, start + chunk_size)
        if keep_images_whole and end < length:
            back = end
            while back > start and inside[back - 1]:
                back -= 1
            if back > start:
                end = back
            else:  # the run is longer than a chunk: end after it
                while end < length and inside[end - 1]:
                    end += 1
        bounds.append(end)
    return bounds


def _chunk_features(
    adapter: ModelAdapter, bounds: list[int], image: torch.Tensor, encoder_kwargs: dict[str, Any]
) -> list[Any] | None:
    """Per chunk, the image encoder's output holding the rows of the chunk's image tokens (None for a
    chunk without images); None when the encoder's output has fields we cannot split."""
    if not encoder_kwargs:
        return [None] * (len(bounds) - 1)
    with torch.no_grad():
        encoded = adapter.base_model.get_image_features(**encoder_kwargs, return_dict=True)
    kind = type(encoded)  # a transformers ModelOutput; the chunks get the same type, pooled rows only
    if not isinstance(encoded, Mapping):  # not a ModelOutput: nothing we know how to split
        return None
    pooled = encoded.get("pooler_output")
    # the models read the pooled features only; another field (e.g. Qwen3-VL's deepstack features) would
    # have to be split too
    others = [k for k, v in encoded.items() if v is not None and k not in _ENCODER_TRACE]
    if pooled is None or others:
        return None
    as_tensor = isinstance(pooled, torch.Tensor)
    parts = [pooled] if as_tensor else list(pooled)
    rows = torch.cat([p.reshape(-1, p.shape[-1]) for p in parts])
    del encoded, pooled, parts
    if int(image.sum()) != rows.shape[0]:
        return None  # the model's own check would fail the same way; let the one pass raise its error
    order = image.flatten().cumsum(0).view_as(image) - 1  # feature row of each image token
    out: list[Any] = []
    for start, end in itertools.pairwise(bounds):
        held = image[:, start:end]
        if not bool(held.any()):
            out.append(None)
            continue
        picked = rows[order[:, start:end][held]]
        # the container the models read: a batch of one, or a one-item list
        out.append(kind(pooler_output=picked[None] if as_tensor else [picked]))
    return out


def join_caches(caches: list[Any]) -> bool:
    """Join the KV caches of row groups prefilled to one length into ``caches[0]`` (their rows in order).

    Layer by layer, releasing the other caches' tensors as it goes, so the join holds at most one layer's
    joined keys and values more than the caches themselves. Only ``DynamicCache`` of full and sliding-window
    dynamic layers (every family seesay supports): for anything else it returns False and changes nothing
    (the caller then prefills the rows as one batch).
    """
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
    except ImportError:  # pragma: no cover - a transformers without these classes
        return False
    first = caches[0]
    if any(type(c) is not DynamicCache or c.offloading or len(c.layers) != len(first.layers) for c in caches):
        return False
    for layers in zip(*(c.layers for c in caches), strict=True):
        kind = type(layers[0])
        if kind not in (DynamicLayer, DynamicSlidingWindowLayer) or any(type(x) is not kind for x in layers):
            return False
        if len({x.is_initialized for x in layers}) != 1:
            return False
        if (
            layers[0].is_initialized
            and len({(x.keys.shape[1:], x.keys.dtype, getattr(x, "cumulative_length", 0)) for x in layers})
            != 1
        ):
            return False
    for layers in zip(*(c.layers for c in caches), strict=True):
        if not layers[0].is_initialized:
            continue
        layers[0].keys = torch.cat([x.keys for x in layers], dim=0)
        layers[0].values = torch.cat([x.values for x in layers], dim=0)
        for x in layers[1:]:
            x.keys = x.values = None
    return True
