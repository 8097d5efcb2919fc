"""Input variants for the engine's branches (:class:`seesay.engine.decoding.Branch`): the batch without its
image (PAI, M3ID), the batch with other prompts (ICD's disturbed instruction).

``text_only``: every image token position is dropped from ``input_ids`` and from every per-token tensor
(attention mask, ``token_type_ids``), the rows are left-padded again, and the image tensors
(``pixel_values``, ``image_sizes``, ``image_grid_thw``, ...) are left out. The model reads the same
prompt with no image features; a family's image wrapper tokens (Qwen's ``<|vision_start|>``, Gemma3's
``<start_of_image>``, InternVL's ``<img>``) stay, as text. For LLaVA-1.5 this is exactly the prompt
without ``<image>`` that PAI's code builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import ConfigError
from .adapters.base import ModelAdapter
from .loading import LoadedModel, PreparedBatch, build_inputs

IMAGE_KEYS = ("pixel", "image")  # input names holding the image, by substring


def text_only(
    adapter: ModelAdapter, inputs: Mapping[str, torch.Tensor], pad_id: int
) -> dict[str, torch.Tensor]:
    """``inputs`` without the image: image token positions dropped, rows left-padded again."""
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    keep = ~adapter.image_mask(ids) & (mask > 0)
    lengths = keep.sum(-1)
    width = int(lengths.max())
    per_token = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.shape == ids.shape}
    per_token["attention_mask"] = mask
    out: dict[str, torch.Tensor] = {}
    for name, tensor in per_token.items():
        fill = pad_id if name == "input_ids" else 0
        rows = tensor.new_full((ids.shape[0], width), fill)
        for b in range(ids.shape[0]):
            kept = tensor[b][keep[b]]
            rows[b, width - kept.shape[0] :] = kept
        out[name] = rows
    out["attention_mask"] = (torch.arange(width, device=ids.device)[None] >= width - lengths[:, None]).to(
        mask.dtype
    )
    for name, value in inputs.items():
        if name not in out and not any(k in name for k in IMAGE_KEYS):
            out[name] = value
    return out


def text_only_for(loaded: LoadedModel, batch: PreparedBatch) -> dict[str, torch.Tensor]:
    """:func:`text_only` of ``batch`` with the model's pad id (generation config, else tokenizer, else 0:
    the filler of left padding, masked and never read)."""
    pad = getattr(loaded.model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(getattr(loaded.processor, "tokenizer", loaded.processor), "pad_token_id", None)
    return text_only(loaded.adapter, batch.inputs, 0 if pad is None else int(pad))


def with_prompts(
    loaded: LoadedModel, batch: PreparedBatch, prompts: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The batch's images with other ready prompts (each with the image placeholder), processed alike."""
    if len(prompts) != len(batch):
        raise ConfigError(f"got {len(prompts)} prompts for a batch of {len(batch)}")
    return build_inputs(loaded, batch.images, list(batch.questions or batch.prompts), prompts=prompts).inputs


def insert_before_question(batch: PreparedBatch, text: str) -> list[str]:
    """The batch's prompts with ``text`` put right before each question (its first occurrence)."""
    questions = batch.questions or []
    if len(questions) != len(batch):
        raise ConfigError("this method needs the batch's questions (seesay.build_inputs records them)")
    out = []
    for prompt, question in zip(batch.prompts, questions, strict=True):
        at = prompt.find(question)
        if not question or at < 0:
            raise ConfigError(f"question {question!r} is not in its prompt: cannot place the instruction")
        out.append(prompt[:at] + text + prompt[at:])
    return out
