"""What seesay needs to know about a loaded vision-language model, family by family.

An adapter finds the language model's decoder layers, final norm and lm_head, the layer/head counts,
the image-token positions of each sample, and the geometry that maps each image token back to a pixel
box in the original image (through the processor's resize / crop / tiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import ConfigError, NoImageTokensError
from ...registry import Registry

STACKED_ROWS_MAX = 64  # logits_from_rows: W X^T up to this many rows (measured faster up to 64 on CPU)


@dataclass(frozen=True)
class ImageGrid:
    """One block of image tokens laid out on a regular grid (a whole image, or one tile / view).

    Token ``k`` of the block (raster order, row-major) covers ``input_boxes[k]`` = (x0, y0, x1, y1) on the
    model-input canvas the block was cut from (``input_size`` = (width, height)), and ``boxes[k]`` in pixels
    of the ORIGINAL image (clipped to it). ``to_original`` = (sx, sy, ox, oy) maps canvas to original
    pixels: x_orig = sx * x + ox, y_orig = sy * y + oy. ``rows x cols`` is the grid shape; ``name`` says
    what the block is ("image", "base", "anyres", "tile 0,1", "thumbnail").
    """

    name: str
    rows: int
    cols: int
    input_size: tuple[int, int]
    input_boxes: np.ndarray  # [rows*cols, 4] float, model-input canvas pixels
    to_original: tuple[float, float, float, float]
    original_size: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        return self.rows * self.cols

    @property
    def boxes(self) -> np.ndarray:
        """[rows*cols, 4] boxes in original-image pixels, clipped to the image."""
        w, h = self.original_size
        out = affine_boxes(self.input_boxes, *self.to_original)
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
        return out


@dataclass(frozen=True)
class ImageLayout:
    """Where one image's tokens are in the sequence and which pixels each one sees.

    ``positions``: absolute (padded) sequence positions of ALL this image's image tokens, in order.
    ``blocks``: grids in sequence order; ``block_slices[i]`` = the indices into ``positions`` of block i.
    Tokens not in any block (e.g. LLaVA-NeXT row-newline tokens) have ``token_boxes`` rows of NaN.
    ``original_size`` = (width, height).
    """

    positions: np.ndarray
    blocks: tuple[ImageGrid, ...]
    block_slices: tuple[np.ndarray, ...]
    original_size: tuple[int, int]

    @property
    def token_boxes(self) -> np.ndarray:
        """[n_tokens, 4] original-image box of every image token (NaN for tokens that see no patch)."""
        boxes = np.full((len(self.positions), 4), np.nan)
        for block, idx in zip(self.blocks, self.block_slices, strict=True):
            boxes[idx] = block.boxes
        return boxes


def grid_boxes(rows: int, cols: int, width: float, height: float) -> np.ndarray:
    """Boxes of a rows x cols raster over a width x height canvas, [rows*cols, 4] (x0, y0, x1, y1)."""
    ys = np.linspace(0.0, height, rows + 1)
    xs = np.linspace(0.0, width, cols + 1)
    y0, x0 = np.meshgrid(ys[:-1], xs[:-1], indexing="ij")
    y1, x1 = np.meshgrid(ys[1:], xs[1:], indexing="ij")
    return np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4)


def affine_boxes(boxes: np.ndarray, scale_x: float, scale_y: float, off_x: float, off_y: float) -> np.ndarray:
    """Map boxes by x -> x * scale_x + off_x, y -> y * scale_y + off_y."""
    out = boxes.astype(float).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * scale_x + off_x
    out[:, [1, 3]] = out[:, [1, 3]] * scale_y + off_y
    return out


ADAPTER_REGISTRY: Registry[type[ModelAdapter]] = Registry("model adapter")


def register_adapter(family: str):
    """``@register_adapter("family")`` on a :class:`ModelAdapter` subclass (sets its ``family``)."""

    def decorate(cls):
        cls.family = family
        return ADAPTER_REGISTRY.add(family, cls)

    return decorate


@dataclass
class ModelAdapter:
    """Family-independent access to a loaded model's language model and image tokens.

    Subclasses set ``family``, ``architectures`` and implement :meth:`image_layouts`.
    """

    model: torch.nn.Module
    processor: Any = None
    family: ClassVar[str] = "base"
    architectures: ClassVar[tuple[str, ...]] = ()
    # whether an image token attends only to the tokens before it (else bidirectionally within its image:
    # a chunked prefill then keeps each image in one chunk)
    causal_image_attention: ClassVar[bool] = True
    image_token_id: int = field(init=False)

    def __post_init__(self) -> None:
        config = self.model.config
        token_id = getattr(config, "image_token_id", None)
        if token_id is None:
            token_id = getattr(config, "image_token_index", None)
        if token_id is None:
            raise ConfigError(
                f"{type(self.model).__name__} config has no image_token_id / image_token_index: "
                "cannot tell image tokens from text"
            )
        self.image_token_id = int(token_id)

    # ---- structure -------------------------------------------------------------------------------------
    @property
    def base_model(self) -> torch.nn.Module:
        """The model without its lm_head (returns ``last_hidden_state``, final-normed)."""
        return self.model.model

    @property
    def language_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.language_model.layers

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.language_model.norm

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.model.lm_head

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return int(self.text_config.num_attention_heads)

    @property
    def num_kv_heads(self) -> int:
        cfg = self.text_config
        return int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)

    @property
    def vocab_size(self) -> int:
        return int(self.lm_head.weight.shape[0])

    def logits_from_hidden(self, normed_hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits from a final-normed hidden state, exactly as the model computes them."""
        return self.lm_head(normed_hidden)

    def logits_from_rows(self, normed_rows: torch.Tensor) -> torch.Tensor:
        """:meth:`logits_from_hidden` of several stacked readouts [N, d] (final, lens and branch rows).

        On the CPU a plain ``Linear`` head runs as z^T = W X^T (+ b): there ``F.linear`` with 2-16 rows
        takes 2-3x the time of one row while W X^T takes about one row's time (hidden 512, vocab 32,000,
        2 threads: 12.8 ms for 2 rows against 3.8 ms; the same to float32 rounding, ~4e-5). Only in
        float32 and up to :data:`STACKED_ROWS_MAX` rows (at 400 rows W X^T was slower, in bfloat16 no
        faster); elsewhere, and for a head that is hooked, wrapped or not a plain ``Linear``, the head.
        """
        head = self.lm_head
        plain_head = (
            type(head) is torch.nn.Linear
            and type(head.weight) is torch.nn.Parameter  # not a quantized tensor subclass
            and "forward" not in vars(head)  # not wrapped (accelerate's offload hooks replace forward)
            and not head._forward_hooks
            and not head._forward_pre_hooks
            and type(self).logits_from_hidden is ModelAdapter.logits_from_hidden
        )
        if (
            1 < normed_rows.shape[0] <= STACKED_ROWS_MAX
            and plain_head
            and head.weight.device.type == "cpu"
            and head.weight.dtype == normed_rows.dtype == torch.float32
        ):
            out = torch.matmul(head.weight, normed_rows.transpose(0, 1)).transpose(0, 1).contiguous()
            return out if head.bias is None else out + head.bias
        return self.logits_from_hidden(normed_rows)

    # ---- inputs ----------------------------------------------------------------------------------------
    def image_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Bool [B, T]: which sequence positions hold image tokens."""
        return input_ids == self.image_token_id

    def check_image_tokens(self, input_ids: torch.Tensor) -> None:
        """Raise :class:`NoImageTokensError` if a sample has no image token."""
        counts = self.image_mask(input_ids).sum(-1)
        missing = (counts == 0).nonzero().flatten().tolist()
        if missing:
            raise NoImageTokensError(
                f"sample(s) {missing} have no image tokens (id {self.image_token_id}) after processing: "
                "the prompt must contain the image placeholder (use the chat template or seesay.build_inputs)"
            )

    def position_inputs(
        self, inputs: dict[str, torch.Tensor], state: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Prefill ``position_ids`` as ``generate()`` builds them (left padding aware).

        ``state`` is a per-generation dict the adapter may fill for :meth:`next_position_inputs`.
        """
        mask = inputs["attention_mask"]
        return {"position_ids": (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)}

    def next_position_inputs(self, attention_mask: torch.Tensor, state: dict[str, Any]) -> dict[str, Any]:
        """Decode-step ``position_ids`` for one new token, given the mask that includes it."""
        return {"position_ids": attention_mask.long().cumsum(-1)[:, -1:] - 1}

    def image_layouts(
        self, inputs: dict[str, Any], original_sizes: list[list[tuple[int, int]]]
    ) -> list[list[ImageLayout]]:
        """Per sample, per image: the image tokens' positions and pixel boxes. Family specific."""
        raise NotImplementedError(f"{type(self).__name__} does not map image tokens to pixels yet")
