"""Attention of the last prompt token over the prompt, layer by layer, from ONE ordinary forward pass.

VEA's reference code runs eager attention with ``output_attentions`` (every layer's T x T matrix, which does
not fit LLaVA-NeXT or InternVL3.5 in 80 GB). Here the tap computes, on top of sdpa, only the last row of
each asked layer, averaged over heads and not renormalised:

    a^(l)_j = mean_h softmax(Q_h K_h^T * scale + mask)[T-1, j]        j = 0 .. T-1 (prompt positions)

Extra memory: O(layers x tokens). The pass runs the base model (no lm_head) without a KV cache.

RAPT (relative attention per token) of a segment S of the prompt:
    RAPT(S) = mean_{j in S} a_j / mean_{j in prompt} a_j
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...engine.loading import LoadedModel, PreparedBatch
from ...engine.tap import AttentionTap, attention_tap


@torch.no_grad()
def attention_rows(loaded: LoadedModel, batch: PreparedBatch, layers: Sequence[int]) -> np.ndarray:
    """[B, len(layers), T] float32: last-row attention over the (padded) prompt positions per layer."""
    layers = list(layers)
    tap = AttentionTap(layers=layers, record="mean")
    with attention_tap(loaded.model, tap):
        loaded.adapter.base_model(**batch.inputs, use_cache=False, return_dict=True)
    t = batch.inputs["input_ids"].shape[1]
    rows = [tap.records[layer].probs[:, 0, -1, :t] for layer in layers]
    return torch.stack(rows, dim=1).float().cpu().numpy()


def rapt(row: np.ndarray, segments: dict[str, np.ndarray], prompt: np.ndarray) -> dict[str, float]:
    """RAPT of each segment (bool masks over positions) relative to the whole ``prompt`` mask."""
    row = np.asarray(row, dtype=np.float64)
    prompt = np.asarray(prompt, dtype=bool)
    for name, mask in {"prompt": prompt, **segments}.items():
        if np.shape(mask) != row.shape:
            raise ValueError(f"RAPT: the {name} mask has shape {np.shape(mask)}, the row {row.shape}")
    base = row[prompt].mean() if prompt.any() else float("nan")
    return {
        name: float(row[mask].mean() / base) if mask.any() and base > 0 else float("nan")
        for name, mask in segments.items()
    }


def find_subsequence(haystack: Sequence[int], needle: Sequence[int]) -> int:
    """Start of the last occurrence of ``needle`` in ``haystack`` (-1 if absent)."""
    n = len(needle)
    if n == 0:
        return -1
    for start in range(len(haystack) - n, -1, -1):
        if list(haystack[start : start + n]) == list(needle):
            return start
    return -1


def question_mask(loaded: LoadedModel, input_ids: torch.Tensor, question: str) -> np.ndarray:
    """Positions of the question's tokens in one sample's ids (all False if they cannot be found)."""
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    ids = input_ids.tolist()
    mask = np.zeros(len(ids), dtype=bool)
    for text in (question, " " + question):
        needle = tokenizer(text, add_special_tokens=False)["input_ids"]
        start = find_subsequence(ids, needle)
        if start >= 0:
            mask[start : start + len(needle)] = True
            break
    return mask
