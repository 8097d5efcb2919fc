"""Tiny random-weight vision-language models of six families, built offline for tests and smoke runs.

Every family gets a model from its transformers config (fp32, eval mode, sdpa attention, weights fixed by
the seed; text model: hidden 32, 4 query heads over 2 key-value heads, head_dim 8) and a real processor of
its transformers class with a PIL-backend image processor, so nothing needs torchvision or a network.
Image geometry (sizes are width x height; "image tokens" are ``input_ids == model.config.image_token_id``):

* ``llava`` -- `LlavaProcessor` + `CLIPImageProcessorPil`: resize the shortest edge to 16, centre-crop
  16x16 (a non-square image loses its margins), CLIP patch 4 -> 4x4 grid, CLS dropped: 16 tokens, row-major.
* ``llava_next`` -- `LlavaNextProcessor` + `LlavaNextImageProcessorPil`, anyres with pinpoints
  16x16, 16x32, 32x16, 32x32 (height x width) and 16x16 tiles: a base view (16 tokens) followed by the
  best pinpoint's tiles as one grid of 4 features per tile side, unpadded to the image's aspect ratio, with
  one newline feature after each row. 16x16 -> 16 + 4x4 + 4 = 36; 20x36 -> 16 + 8x4 + 8 = 56;
  40x24 -> 16 + 4x8 + 4 = 52. The newline features are image tokens too.
* ``qwen2_vl`` / ``qwen2_5_vl`` -- `Qwen2VLProcessor` / `Qwen2_5_VLProcessor` (image-only, see below) +
  `Qwen2VLImageProcessorPil`: resized to multiples of 28 px within 56x56..112x112 px area, patch 14,
  2x2 patches merged per token: 20x36 -> 56x84 px -> 6x4 patches -> 3x2 tokens (rows x columns);
  40x24 -> 2x3 tokens; 16x16 -> 2x2. Between ``<|vision_start|>`` and ``<|vision_end|>``; M-RoPE.
* ``gemma3`` -- `Gemma3Processor` + `Gemma3ImageProcessorPil`: resize to 16x16 (no crop), SigLIP patch 4
  -> 4x4, average-pooled to 2x2: 4 tokens between ``<start_of_image>`` and ``<end_of_image>``. Text layers
  alternate sliding (window 6) and full attention: sliding, sliding, sliding, full, ...; last layer full.
* ``internvl`` -- `InternVLProcessor` (image-only) + `GotOcr2ImageProcessorPil` with crop_to_patches:
  the image is cut into 1-4 tiles of 16x16 on the best grid, plus a 16x16 thumbnail when there is more than
  one tile; each tile gives 4x4 patches, pixel-shuffled to 2x2 = 4 tokens. 16x16 -> 4 tokens; 40x24 ->
  2 tiles + thumbnail = 12; 64x16 -> 4 tiles + thumbnail = 20. All between ``<img>`` and ``</img>``.

"Image-only" processors come from `seesay.engine.processing.image_only_processor_class`: the stock Qwen2-VL,
Qwen2.5-VL and InternVL processors demand a video processor, which needs torchvision. They are saved
under the stock class name; reload them with `seesay.engine.processing.load_processor`
(``AutoProcessor`` raises without torchvision).

Each processor has a Jinja chat template that renders a ``{"type": "image"}`` item as the family's
placeholder (``<image>\\n``, ``<|vision_start|><|image_pad|><|vision_end|>``, ``<start_of_image>``,
``<IMG_CONTEXT>\\n``), which the processor expands into the image tokens the model consumes. Gemma3's
processor needs the images nested per prompt (``images=[[a], [b]]``); the others also take a flat list.
The vocabulary is a word-level tokenizer (whitespace and punctuation split, unknown words -> ``<unk>``,
left padding) over the family's special tokens and `WORDS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedModel, PreTrainedTokenizerFast
from transformers.processing_utils import ProcessorMixin

from seesay.engine.processing import image_only_processor_class

__all__ = ["FAMILIES", "WORDS", "TinyVLM", "build_tiny_vlm", "tiny_image"]

FAMILIES: tuple[str, ...] = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "internvl")

_WORD_LIST = """
what is the color shape of cat dog a an red blue green yellow circle square triangle yes no one two three
four how many are there in this image picture question answer directly based on only use words from
highlighted region especially if does not contain any relevant evidence output i cannot given
left right top bottom user assistant system model USER ASSISTANT
. , ? : ' " 0 1 2 3 4 5
"""
# The vocabulary besides special tokens (whitespace-separated words; punctuation marks are separate tokens).
WORDS: tuple[str, ...] = tuple(dict.fromkeys(_WORD_LIST.split()))

# Text model shared by all families: 4 query heads over 2 key-value heads (GQA), head_dim 8.
HIDDEN_SIZE = 32
INTERMEDIATE_SIZE = 64
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = 8
MAX_POSITIONS = 512
VISION_LAYERS = 2

_UNK, _PAD = "<unk>", "<pad>"


@dataclass
class TinyVLM:
    """A tiny model with its processor; ``path`` is where both were saved, if they were."""

    family: str
    model: PreTrainedModel
    processor: ProcessorMixin
    path: Path | None


def tiny_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image of ``width`` x ``height`` pixels, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def build_tiny_vlm(
    family: str, *, seed: int = 0, num_layers: int = 4, save_to: Path | None = None
) -> TinyVLM:
    """Build the tiny model and processor of ``family`` (one of `FAMILIES`).

    The weights depend only on ``family``, ``seed`` and ``num_layers`` (the global torch RNG is left as it
    was). With ``save_to``, model and processor are saved there, loadable with
    ``AutoModelForImageTextToText.from_pretrained`` and `seesay.engine.processing.load_processor`.
    """
    builder = _BUILDERS.get(family)
    if builder is None:
        raise ValueError(f"unknown tiny VLM family {family!r}; expected one of {', '.join(FAMILIES)}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    spec = _TOKENS[family]
    tokenizer = _build_tokenizer(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = builder(tokenizer, num_layers)
    model = model.to(torch.float32).eval()
    model.set_attn_implementation("sdpa")
    _set_generation_ids(model, tokenizer)
    processor.chat_template = _chat_template(spec)
    path = None
    if save_to is not None:
        path = Path(save_to)
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return TinyVLM(family=family, model=model, processor=processor, path=path)


# ---------------------------------------------------------------------------------------------------------
# Vocabulary and chat templates
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TokenSpec:
    """Special tokens of one family and the pieces of its chat template."""

    bos: str
    eos: str
    # Model-specific tokens the processor reads as tokenizer attributes (tokenizer.image_token, ...).
    named: dict[str, str]
    # Further special tokens (chat markup).
    markup: tuple[str, ...]
    # role -> (text before, text after) the message content.
    turns: dict[str, tuple[str, str]]
    image: str  # what a {"type": "image"} content item renders as
    generation_prompt: str
    prefix: str = ""  # rendered once before the first message

    @property
    def specials(self) -> list[str]:
        tokens = [_UNK, _PAD, self.bos, self.eos, *self.named.values(), *self.markup]
        return list(dict.fromkeys(tokens))


def _chatml(image: str, named: dict[str, str]) -> _TokenSpec:
    return _TokenSpec(
        bos="<s>",
        eos="<|im_end|>",
        named=named,
        markup=("<|im_start|>",),
        turns={role: (f"<|im_start|>{role}\n", "<|im_end|>\n") for role in ("system", "user", "assistant")},
        image=image,
        generation_prompt="<|im_start|>assistant\n",
    )


_QWEN_NAMED = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}

_TOKENS: dict[str, _TokenSpec] = {
    # llava-1.5 style: "USER: <image>\n... ASSISTANT:"
    "llava": _TokenSpec(
        bos="<s>",
        eos="</s>",
        named={"image_token": "<image>"},
        markup=(),
        turns={"system": ("", "\n"), "user": ("USER: ", " "), "assistant": ("ASSISTANT: ", "</s> ")},
        image="<image>\n",
        generation_prompt="ASSISTANT:",
        prefix="<s>",
    ),
    # llava-v1.6-mistral style: "[INST] <image>\n... [/INST]"
    "llava_next": _TokenSpec(
        bos="<s>",
        eos="</s>",
        named={"image_token": "<image>"},
        markup=("[INST]", "[/INST]"),
        turns={"system": ("", "\n"), "user": ("[INST] ", " [/INST]"), "assistant": (" ", "</s>")},
        image="<image>\n",
        generation_prompt="",
        prefix="<s>",
    ),
    "qwen2_vl": _chatml("<|vision_start|><|image_pad|><|vision_end|>", _QWEN_NAMED),
    "qwen2_5_vl": _chatml("<|vision_start|><|image_pad|><|vision_end|>", _QWEN_NAMED),
    # Gemma3 style: "<bos><start_of_turn>user\n<start_of_image>...<end_of_turn>\n<start_of_turn>model\n"
    "gemma3": _TokenSpec(
        bos="<bos>",
        eos="<end_of_turn>",
        named={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
        markup=("<start_of_turn>",),
        turns={
            "system": ("<start_of_turn>user\n", "<end_of_turn>\n"),
            "user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
            "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n"),
        },
        image="<start_of_image>",
        generation_prompt="<start_of_turn>model\n",
        prefix="<bos>",
    ),
    # InternVL3-hf style: ChatML with "<IMG_CONTEXT>\n" per image
    "internvl": _chatml(
        "<IMG_CONTEXT>\n",
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    ),
}


def _build_tokenizer(spec: _TokenSpec) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: special tokens get the first ids, then `WORDS`; unknown words -> ``<unk>``."""
    vocab: dict[str, int] = {}
    for token in (*spec.specials, *WORDS):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=_UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=_UNK,
        pad_token=_PAD,
        bos_token=spec.bos,
        eos_token=spec.eos,
        extra_special_tokens=dict(spec.named),  # a dict: also sets tokenizer.image_token etc.
        padding_side="left",  # a constructor argument, so that it is saved
    )
    if spec.markup:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": list(spec.markup)}, replace_extra_special_tokens=False
        )
    return tokenizer


def _literal(text: str) -> str:
    """A Jinja expression printing ``text`` (JSON string escapes are valid Jinja string escapes)."""
    return "{{ " + json.dumps(text) + " }}"


def _chat_template(spec: _TokenSpec) -> str:
    """Jinja chat template: turns wrapped per role, images rendered in place as the family's placeholder."""
    turn_open = "".join(
        ("{%- if" if i == 0 else "{%- elif") + f" message['role'] == '{role}' -%}}{_literal(before)}"
        for i, (role, (before, _)) in enumerate(spec.turns.items())
    )
    turn_close = "".join(
        ("{%- if" if i == 0 else "{%- elif") + f" message['role'] == '{role}' -%}}{_literal(after)}"
        for i, (role, (_, after)) in enumerate(spec.turns.items())
    )
    lines = [
        _literal(spec.prefix) if spec.prefix else "",
        "{%- for message in messages -%}",
        turn_open + "{%- endif -%}",
        "{%- if message['content'] is string -%}{{ message['content'] }}",
        "{%- else -%}{%- for item in message['content'] -%}",
        "{%- if item['type'] == 'image' -%}" + _literal(spec.image),
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}",
        "{%- endif -%}{%- endfor -%}{%- endif -%}",
        turn_close + "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}" + _literal(spec.generation_prompt) + "{%- endif -%}",
    ]
    return "\n".join(line for line in lines if line)


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def _set_generation_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    """Make generate() stop on the tokenizer's eos and pad finished rows with its pad token."""
    ids = _token_ids(tokenizer)
    for name, value in ids.items():
        setattr(model.generation_config, name, value)
        if hasattr(model.config, name):  # composite configs keep them on text_config only
            setattr(model.config, name, value)


def _text_config(tokenizer: PreTrainedTokenizerFast, num_layers: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": num_layers,
        "num_attention_heads": NUM_HEADS,
        "num_key_value_heads": NUM_KV_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "dtype": "float32",
        **_token_ids(tokenizer),
    }
    config.update(overrides)
    return config


def _clip_vision_config(image_size: int, patch_size: int) -> dict[str, Any]:
    return {
        "model_type": "clip_vision_model",
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": VISION_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": HIDDEN_SIZE,
    }


# ---------------------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------------------
_Built = tuple[PreTrainedModel, ProcessorMixin]

LLAVA_IMAGE_SIZE = 16
LLAVA_PATCH_SIZE = 4
LLAVA_NEXT_PINPOINTS = ((16, 16), (16, 32), (32, 16), (32, 32))  # (height, width) of anyres grids
QWEN_PATCH_SIZE = 14
QWEN_MERGE_SIZE = 2
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 112 * 112
GEMMA3_IMAGE_SIZE = 16
GEMMA3_PATCH_SIZE = 4
GEMMA3_TOKENS_PER_IMAGE = 4
GEMMA3_SLIDING_WINDOW = 6
INTERNVL_TILE_SIZE = 16
INTERNVL_PATCH_SIZE = 4
INTERNVL_TOKENS_PER_TILE = 4
INTERNVL_MAX_TILES = 4


def _build_llava(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    grid = LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE
    config = LlavaConfig(
        vision_config=_clip_vision_config(LLAVA_IMAGE_SIZE, LLAVA_PATCH_SIZE),
        text_config=_text_config(tokenizer, num_layers, model_type="llama", head_dim=HEAD_DIM),
        image_token_index=tokenizer.image_token_id,
        image_seq_length=grid * grid,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    # Resize the shortest edge to 16 px, then crop the centre 16x16: a non-square image loses its margins.
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": LLAVA_IMAGE_SIZE},
        crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        image_token=tokenizer.image_token,
    )
    return model, processor


def _build_llava_next(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    grid = LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE
    config = LlavaNextConfig(
        vision_config=_clip_vision_config(LLAVA_IMAGE_SIZE, LLAVA_PATCH_SIZE),
        text_config=_text_config(tokenizer, num_layers, model_type="llama", head_dim=HEAD_DIM),
        image_token_index=tokenizer.image_token_id,
        image_grid_pinpoints=[list(p) for p in LLAVA_NEXT_PINPOINTS],
        image_seq_length=grid * grid,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": LLAVA_IMAGE_SIZE},
        crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
        image_grid_pinpoints=[list(p) for p in LLAVA_NEXT_PINPOINTS],
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=tokenizer.image_token,
    )
    return model, processor


def _qwen_processor(base: type, tokenizer: PreTrainedTokenizerFast) -> ProcessorMixin:
    from transformers import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH_SIZE,
        merge_size=QWEN_MERGE_SIZE,
        temporal_patch_size=2,
        size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
    )
    return image_only_processor_class(base)(image_processor=image_processor, tokenizer=tokenizer)


def _qwen_config_kwargs(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> dict[str, Any]:
    # M-RoPE splits the 4 rotary frequency pairs of head_dim 8 over (time, height, width).
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    return {
        "text_config": _text_config(tokenizer, num_layers, rope_parameters=rope),
        "image_token_id": tokenizer.image_token_id,
        "video_token_id": tokenizer.video_token_id,
        "vision_start_token_id": tokenizer.vision_start_token_id,
        "vision_end_token_id": tokenizer.vision_end_token_id,
    }


def _build_qwen2_vl(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    vision = {
        "depth": VISION_LAYERS,
        "embed_dim": HIDDEN_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "num_heads": NUM_HEADS,
        "mlp_ratio": 2,
        "patch_size": QWEN_PATCH_SIZE,
        "spatial_merge_size": QWEN_MERGE_SIZE,
        "temporal_patch_size": 2,
    }
    config = Qwen2VLConfig(vision_config=vision, **_qwen_config_kwargs(tokenizer, num_layers))
    return Qwen2VLForConditionalGeneration(config), _qwen_processor(Qwen2VLProcessor, tokenizer)


def _build_qwen2_5_vl(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    vision = {
        "depth": VISION_LAYERS,
        "hidden_size": HIDDEN_SIZE,
        "out_hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_heads": NUM_HEADS,
        "patch_size": QWEN_PATCH_SIZE,
        "spatial_merge_size": QWEN_MERGE_SIZE,
        "temporal_patch_size": 2,
        "window_size": 2 * QWEN_PATCH_SIZE * QWEN_MERGE_SIZE,
        "fullatt_block_indexes": [VISION_LAYERS - 1],
    }
    config = Qwen2_5_VLConfig(vision_config=vision, **_qwen_config_kwargs(tokenizer, num_layers))
    return Qwen2_5_VLForConditionalGeneration(config), _qwen_processor(Qwen2_5_VLProcessor, tokenizer)


def _gemma3_layer_types(num_layers: int) -> list[str]:
    """Sliding, sliding, sliding, full, ...; the last layer is always full, so 2+ layers have both kinds."""
    return [
        "full_attention" if (i + 1) % 4 == 0 or i == num_layers - 1 else "sliding_attention"
        for i in range(num_layers)
    ]


def _build_gemma3(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    text = _text_config(
        tokenizer,
        num_layers,
        head_dim=HEAD_DIM,
        query_pre_attn_scalar=HEAD_DIM,
        sliding_window=GEMMA3_SLIDING_WINDOW,
        layer_types=_gemma3_layer_types(num_layers),
    )
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": VISION_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "image_size": GEMMA3_IMAGE_SIZE,
        "patch_size": GEMMA3_PATCH_SIZE,
    }
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=GEMMA3_TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    model = Gemma3ForConditionalGeneration(config)
    image_processor = Gemma3ImageProcessorPil(
        size={"height": GEMMA3_IMAGE_SIZE, "width": GEMMA3_IMAGE_SIZE}, do_pan_and_scan=False
    )
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=GEMMA3_TOKENS_PER_IMAGE
    )
    return model, processor


def _build_internvl(tokenizer: PreTrainedTokenizerFast, num_layers: int) -> _Built:
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
    )

    vision = {
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": VISION_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "image_size": [INTERNVL_TILE_SIZE, INTERNVL_TILE_SIZE],
        "patch_size": [INTERNVL_PATCH_SIZE, INTERNVL_PATCH_SIZE],
    }
    config = InternVLConfig(
        vision_config=vision,
        text_config=_text_config(tokenizer, num_layers, model_type="qwen2"),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=INTERNVL_TOKENS_PER_TILE,
        downsample_ratio=0.5,  # pixel shuffle: 4x4 patches -> 2x2 tokens per tile
    )
    model = InternVLForConditionalGeneration(config)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": INTERNVL_TILE_SIZE, "width": INTERNVL_TILE_SIZE},
        crop_to_patches=True,
        min_patches=1,
        max_patches=INTERNVL_MAX_TILES,
    )
    processor = image_only_processor_class(InternVLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=INTERNVL_TOKENS_PER_TILE
    )
    return model, processor


_BUILDERS: dict[str, Callable[[PreTrainedTokenizerFast, int], _Built]] = {
    "llava": _build_llava,
    "llava_next": _build_llava_next,
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": _build_qwen2_5_vl,
    "gemma3": _build_gemma3,
    "internvl": _build_internvl,
}


def load_tiny_random(family: str, *, device: str | None = None, name: str | None = None, dtype: Any = None):
    """The model source behind ``load_model("tiny-random:FAMILY")`` (entry point
    ``seesay.model_sources``): the seeded random tiny model of ``family``, as a LoadedModel, in
    ``dtype`` when one is given (a torch dtype or its name; "auto" / None: float32, as built)."""
    from seesay.engine.adapters import get_adapter
    from seesay.engine.loading import LoadedModel
    from seesay.errors import ModelLoadError

    if family not in FAMILIES:
        raise ModelLoadError(f"unknown tiny-random family {family!r}; choose from {', '.join(FAMILIES)}")
    tiny = build_tiny_vlm(family)
    model = tiny.model if device is None else tiny.model.to(device)
    if dtype not in (None, "auto"):
        from seesay.engine.loading import _resolve_dtype  # "bf16", "bfloat16", torch.bfloat16, ...

        model = model.to(_resolve_dtype(dtype))
    return LoadedModel(
        model,
        tiny.processor,
        get_adapter(model, tiny.processor),
        name=name or f"tiny-random:{family}",
        info={"random_weights": True, "dtype": str(model.dtype)},
    )
