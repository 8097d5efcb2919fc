"""ViCrop: the crop box against the official algorithm written out as utils.py does it, the relative
attention against eager attention, the two-view answer against ``generate()``, all six families,
batching and ``seesay ask``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seesay.engine.decoding import GenerationSettings
from seesay.engine.loading import build_inputs
from seesay.errors import ConfigError
from seesay.methods import ViCrop, ViCropConfig
from seesay.methods.vicrop import adaptive_box, grid_average
from seesay.testing.tiny import FAMILIES
from tests.conftest import QUESTIONS, images, loaded_tiny
from tests.helpers import assert_batch_equals_alone

SETTINGS = GenerationSettings(max_new_tokens=4)


def _official_box(att_map: np.ndarray, image_size: tuple[int, int], bbox_size: int):
    """bbox_from_att_image_adaptive as the official utils.py loops (x outer, y inner, first maximum)."""
    ratios = [1, 1.2, 1.4, 1.6, 1.8, 2]
    poses, diffs, nums = [], [], []
    block = image_size[0] / att_map.shape[1], image_size[1] / att_map.shape[0]
    for ratio in ratios:
        num = (min(int(bbox_size * ratio / block[0]), att_map.shape[1]),
               min(int(bbox_size * ratio / block[1]), att_map.shape[0]))  # fmt: skip
        if att_map.shape[1] - num[0] < 1 and att_map.shape[0] - num[1] < 1:
            if ratio == 1:
                return 0, 0, image_size[0], image_size[1]
            continue
        nums.append(num)
        sliding = np.zeros((att_map.shape[0] - num[1] + 1, att_map.shape[1] - num[0] + 1))
        best, pos = -np.inf, (0, 0)
        for x in range(att_map.shape[1] - num[0] + 1):
            for y in range(att_map.shape[0] - num[1] + 1):
                att = att_map[y : y + num[1], x : x + num[0]].sum()
                sliding[y, x] = att
                if att > best:
                    best, pos = att, (x, y)
        adj = []
        if pos[0] > 0:
            adj.append(sliding[pos[1], pos[0] - 1])
        if pos[0] < sliding.shape[1] - 1:
            adj.append(sliding[pos[1], pos[0] + 1])
        if pos[1] > 0:
            adj.append(sliding[pos[1] - 1, pos[0]])
        if pos[1] < sliding.shape[0] - 1:
            adj.append(sliding[pos[1] + 1, pos[0]])
        diffs.append((best - np.mean(adj)) / (num[0] * num[1]))
        poses.append(pos)
    k = int(np.argmax(diffs))
    pos, num, size = poses[k], nums[k], bbox_size * ratios[k]
    xc = int(pos[0] * block[0] + block[0] * num[0] / 2)
    yc = int(pos[1] * block[1] + block[1] * num[1] / 2)
    xc = size // 2 if xc < size // 2 else xc
    yc = size // 2 if yc < size // 2 else yc
    xc = image_size[0] - size // 2 if xc > image_size[0] - size // 2 else xc
    yc = image_size[1] - size // 2 if yc > image_size[1] - size // 2 else yc
    return (max(0, xc - size // 2), max(0, yc - size // 2), min(image_size[0], xc + size // 2),
            min(image_size[1], yc + size // 2))  # fmt: skip


@pytest.mark.parametrize("image_size", [(640, 480), (1024, 768), (500, 1200), (336, 336)])
def test_adaptive_box_equals_the_official_algorithm(image_size):
    rng = np.random.default_rng(sum(image_size))
    for _ in range(5):
        grid = rng.random((24, 24)) ** 4
        grid[rng.integers(0, 24), rng.integers(0, 24)] += 5.0  # a peak somewhere
        want = tuple(int(v) for v in _official_box(grid, image_size, 336))
        assert adaptive_box(grid, image_size, 336) == want


def test_grid_average_of_a_painted_grid_is_the_grid():
    grid = np.arange(12, dtype=float).reshape(3, 4)
    emap = np.kron(grid, np.ones((5, 7)))  # each cell painted on 5 x 7 pixels
    assert np.allclose(grid_average(emap, 3, 4), grid)


def test_relative_attention_equals_eager_attention():
    """r_i = a_i(question) / a_i(general), the layer's last row averaged over heads, from the tap on sdpa
    against transformers' eager attention with output_attentions (a reference only the test uses)."""
    loaded = loaded_tiny("llava")
    model = loaded.model
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    method = ViCrop(ViCropConfig(layer=1))
    ours = method.relative_scores(loaded, batch)
    general = build_inputs(loaded, batch.images, [ViCropConfig().general_prompt] * 2)
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            a = model(**batch.inputs, output_attentions=True).attentions[1][:, :, -1].mean(1)
            g = model(**general.inputs, output_attentions=True).attentions[1][:, :, -1].mean(1)
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    mask, gmask = (loaded.adapter.image_mask(x.inputs["input_ids"]) for x in (batch, general))
    for b in range(2):
        want = (a[b][mask[b]] / g[b][gmask[b]]).float().numpy()
        assert np.allclose(ours[b], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_vicrop_answers_from_the_image_and_its_crop(family):
    """On every family: the crop lies in the image, and the answer is plain greedy decoding of the
    prompt with the two views (original, crop)."""
    loaded = loaded_tiny(family)
    batch = build_inputs(loaded, images(3), QUESTIONS)
    method = ViCrop()
    boxes = method.crops(loaded, batch)
    for (x0, y0, x1, y1), imgs in zip(boxes, batch.images, strict=True):
        w, h = imgs[0].size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    out = method.generate(loaded, batch, SETTINGS)
    views = [[imgs[0], imgs[0].crop(box)] for imgs, box in zip(batch.images, boxes, strict=True)]
    two = build_inputs(loaded, views, QUESTIONS)
    plain = loaded.model.generate(**two.inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(out.sequences, plain)
    assert out.forward_passes == out.new_tokens.shape[1] + 2  # + the two attention passes


@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_vicrop_batch_equals_one_at_a_time(family):
    assert_batch_equals_alone(family, "vicrop", SETTINGS)


def test_vicrop_config_and_cli(tmp_path, capsys):
    from seesay.cli import main

    for bad in ({"layer": -1}, {"general_prompt": " "}, {"crop_size": 0}):
        with pytest.raises(ConfigError):
            ViCropConfig(**bad)
    assert ViCropConfig().resolve_layer(32) == 14
    with pytest.raises(ConfigError, match="past the model's"):
        ViCropConfig(layer=9).resolve_layer(4)
    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:internvl", "--image", str(image), "--question", "what ?",
            "--method", "vicrop", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "vicrop (internvl)" in capsys.readouterr().out
