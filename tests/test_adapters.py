"""Adapters: structure, unsupported models, and image-token -> pixel-box geometry through real processors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from seesay.engine.adapters import SUPPORTED_ARCHITECTURES, get_adapter
from seesay.engine.loading import build_inputs
from seesay.errors import ConfigError, NoImageTokensError, UnsupportedModelError
from tests.helpers import block_canvases


def test_structure(loaded):
    adapter = loaded.adapter
    assert adapter.num_layers == len(adapter.layers) == adapter.text_config.num_hidden_layers
    assert adapter.num_heads == 4 and adapter.num_kv_heads == 2
    assert adapter.vocab_size == loaded.model.config.get_text_config().vocab_size
    assert adapter.layers[0].self_attn.layer_idx == 0


def test_stacked_readout_is_the_heads_own_to_rounding_and_defers_to_a_hooked_head(loaded):
    """logits_from_rows computes several float32 readouts as W X^T (+ b) on the CPU: the head's own logits
    to float32 rounding; one row, more than STACKED_ROWS_MAX rows, bfloat16 and a hooked head go through
    the head itself (bit for bit)."""
    from seesay.engine.adapters.base import STACKED_ROWS_MAX

    adapter = loaded.adapter
    head = adapter.lm_head
    rows = torch.randn(5, head.weight.shape[1], generator=torch.Generator().manual_seed(0))
    own = adapter.logits_from_hidden(rows)
    stacked = adapter.logits_from_rows(rows)
    assert torch.equal(stacked, torch.matmul(head.weight, rows.T).T)  # the W X^T path was taken
    torch.testing.assert_close(stacked, own, rtol=1e-5, atol=1e-5)
    assert torch.equal(adapter.logits_from_rows(rows[:1]), adapter.logits_from_hidden(rows[:1]))
    many = rows.repeat(STACKED_ROWS_MAX // 5 + 1, 1)
    assert torch.equal(adapter.logits_from_rows(many), adapter.logits_from_hidden(many))
    assert head.bias is None
    head.bias = torch.nn.Parameter(torch.randn(head.weight.shape[0]))
    try:  # a head with a bias: W X^T + b
        torch.testing.assert_close(adapter.logits_from_rows(rows), adapter.logits_from_hidden(rows))
    finally:
        head.bias = None
    seen = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    try:
        assert torch.equal(adapter.logits_from_rows(rows), own) and seen == [own.shape]
    finally:
        handle.remove()
    head.to(torch.bfloat16)
    try:
        low = rows.to(torch.bfloat16)
        assert torch.equal(adapter.logits_from_rows(low), adapter.logits_from_hidden(low))
    finally:
        head.to(torch.float32)


def test_unsupported_model_names_class_and_supported():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
        )
    )
    with pytest.raises(UnsupportedModelError) as err:
        get_adapter(model)
    msg = str(err.value)
    assert "LlamaForCausalLM" in msg and all(a in msg for a in SUPPORTED_ARCHITECTURES)
    assert "\n" not in msg


def test_config_without_image_token_id():
    from types import SimpleNamespace

    from seesay.engine.adapters import LlavaAdapter

    fake = SimpleNamespace(config=SimpleNamespace(image_token_id=None, image_token_index=None))
    with pytest.raises(ConfigError, match="image_token_id"):
        LlavaAdapter(model=fake)


def test_prompt_without_image_tokens(loaded):
    from tests.conftest import images

    with pytest.raises(NoImageTokensError, match="no image tokens"):
        loaded.adapter.check_image_tokens(torch.tensor([[1, 2, 3]]))
    # A prompt without the placeholder cannot carry the image: the processor or our check says so.
    with pytest.raises(NoImageTokensError):
        build_inputs(loaded, images(1), ["what ?"], prompts=["what is the color ?"])


# ---- geometry -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,box", [((60, 40), (30, 0, 60, 40)), ((36, 72), (0, 36, 36, 72)), ((48, 48), (24, 0, 48, 24))]
)
def test_token_boxes_follow_the_processor(loaded, size, box):
    """Paint a white box on black; tokens whose mapped box lies inside it must be bright in pixel_values,
    tokens whose mapped box lies clearly outside must be dark. Exercises resize, crop, tiles, unpad, merge."""
    img = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    batch = build_inputs(loaded, [img], ["what is the color ?"])
    layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
    assert len(layouts) == 1 and len(layouts[0]) == 1
    layout = layouts[0][0]
    n_tokens = int(loaded.adapter.image_mask(batch.inputs["input_ids"]).sum())
    assert len(layout.positions) == n_tokens
    assert np.all(batch.inputs["input_ids"][0, layout.positions].numpy() == loaded.adapter.image_token_id)
    canvases = block_canvases(loaded, batch.inputs, layout)
    w, h = size
    checked_in = checked_out = 0
    for block, canvas in zip(layout.blocks, canvases, strict=True):
        bright = canvas.float().mean(0)
        lo, hi = bright.min().item(), bright.max().item()
        boxes = block.boxes
        assert np.all(boxes[:, [0, 2]] >= -1e-6) and np.all(boxes[:, [0, 2]] <= w + 1e-6)
        assert np.all(boxes[:, [1, 3]] >= -1e-6) and np.all(boxes[:, [1, 3]] <= h + 1e-6)
        for orig, inp in zip(boxes, block.input_boxes, strict=True):
            x0, y0, x1, y1 = (round(float(v)) for v in inp)
            value = bright[y0:y1, x0:x1].mean().item()
            level = (value - lo) / max(hi - lo, 1e-6)
            inside = orig[0] >= box[0] and orig[1] >= box[1] and orig[2] <= box[2] and orig[3] <= box[3]
            outside = orig[2] <= box[0] or orig[0] >= box[2] or orig[3] <= box[1] or orig[1] >= box[3]
            if inside and orig[2] - orig[0] > 0:
                assert level > 0.65, (block.name, orig, level)  # resampling blurs edges
                checked_in += 1
            elif outside:
                assert level < 0.35, (block.name, orig, level)
                checked_out += 1
    assert checked_in > 0 and checked_out > 0


def test_llava_crop_geometry_by_hand():
    """LLaVA-1.5: 40x24 image -> shortest edge 16 gives 26x16, centre crop 16x16 from x=5."""
    from tests.conftest import loaded_tiny

    adapter = loaded_tiny("llava").adapter
    grid = adapter.image_grid((40, 24))
    assert (grid.rows, grid.cols) == (4, 4)
    sx, sy = 40 / 26, 24 / 16
    np.testing.assert_allclose(grid.boxes[0], [5 * sx, 0, 9 * sx, 4 * sy])
    np.testing.assert_allclose(grid.boxes[-1], [17 * sx, 12 * sy, 21 * sx, 16 * sy])


def test_layouts_for_a_batch(loaded, batch3):
    layouts = loaded.adapter.image_layouts(batch3.inputs, batch3.original_sizes)
    mask = loaded.adapter.image_mask(batch3.inputs["input_ids"])
    for b, per_image in enumerate(layouts):
        assert len(per_image) == 1
        assert sorted(per_image[0].positions.tolist()) == mask[b].nonzero().flatten().tolist()
        boxes = per_image[0].token_boxes
        assert boxes.shape == (len(per_image[0].positions), 4)
