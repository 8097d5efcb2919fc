"""VEA: Eqs. 1-4 on hand-made grids, box labels per family, attribution, profiling, the method, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.errors import ConfigError, DataError
from seesay.eval.data import load_visual_cot
from seesay.methods import VEA, VEAConfig
from seesay.methods.vea import preset_layers, vea_prompt
from seesay.methods.vea.attribution import attention_rows, find_subsequence, rapt
from seesay.methods.vea.evidence import (
    box_labels,
    denoise,
    evidence_map,
    highlight,
    minmax,
    pixel_sigma,
    smooth,
)
from seesay.methods.vea.profiling import LayerProfile, choose_layers, profile_layers
from seesay.methods.vea.retrieval import auprc, auroc, auroc_rows, ndcg
from tests.helpers import block_canvases

# ---- Eqs. 2-4 on hand-computed grids ------------------------------------------------------------------


def test_denoise_removes_a_spike_and_keeps_a_non_spike():
    grid = np.ones((5, 5))
    grid[2, 2] = 100.0  # > 10 x max(neighbours) = 10: replaced by the neighbours' mean
    grid[1, 3] = 2.0  # a neighbour of the spike, itself no spike (2 < 10 x 100)
    out = denoise(grid, lam=10)
    assert out[2, 2] == pytest.approx((7 * 1.0 + 2.0) / 8)
    assert out[1, 3] == 2.0
    assert grid[2, 2] == 100.0  # the input is not modified
    just_below = np.ones((5, 5))
    just_below[2, 2] = 10.0  # not > 10 x 1: kept
    assert denoise(just_below, lam=10)[2, 2] == 10.0
    cluster = np.ones((5, 5))
    cluster[1:3, 1:3] = 50.0  # a cluster is evidence, not a spike
    np.testing.assert_array_equal(denoise(cluster, lam=10), cluster)
    # Edges are padded by replication, so a border cell has copies of itself among its neighbours: a border
    # spike is never "isolated" and stays (as in the reference implementation).
    border = np.ones((5, 5))
    border[0, 2] = 100.0
    assert denoise(border, lam=10)[0, 2] == 100.0
    np.testing.assert_array_equal(denoise(np.array([[1.0, 99.0]])), [[1.0, 99.0]])  # smaller than 3x3


def test_sigma_fraction_and_pixels():
    assert pixel_sigma(0.5, (100, 60)) == 30.0
    assert pixel_sigma(3.0, (100, 60)) == 3.0
    delta = np.zeros((50, 50))
    delta[25, 25] = 1.0
    np.testing.assert_allclose(smooth(delta, 0.1), smooth(delta, 5.0))
    assert not np.allclose(smooth(delta, 0.1), smooth(delta, 3.0))
    np.testing.assert_array_equal(smooth(delta, 0), delta)
    assert smooth(delta, 0.1).sum() == pytest.approx(1.0)  # reflecting edges keep the mass


def test_minmax_and_alpha_floor():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 6.0])), [0, 0.5, 1])
    np.testing.assert_array_equal(minmax(np.full(4, 3.0)), np.zeros(4))
    np.testing.assert_allclose(
        minmax(np.array([5.0, 1.0, 3.0]), where=np.array([True, False, True])), [1, 0, 0]
    )
    image = Image.new("RGB", (4, 2), (200, 100, 50))
    emap = np.array([[0.0, 1.0, 0.5, 0.25], [0.0, 0.0, 1.0, 1.0]])
    out = np.asarray(highlight(image, emap, alpha=0.5), dtype=float)
    assert tuple(out[0, 0]) == (100, 50, 25)  # e = 0: the alpha floor
    assert tuple(out[0, 1]) == (200, 100, 50)  # e = 1: unchanged
    assert tuple(out[0, 2]) == (150, 75, 37)  # 0.75 x, truncated to uint8 as the reference (37.5 -> 37)
    np.testing.assert_array_equal(np.asarray(highlight(image, emap, alpha=1.0)), np.asarray(image))
    with pytest.raises(ValueError):
        highlight(image, np.zeros((3, 3)))


# ---- box -> patch labels through every family's geometry ------------------------------------------------


@pytest.mark.parametrize("size,box", [((60, 40), (30, 0, 60, 40)), ((36, 72), (6, 40, 30, 66))])
def test_box_labels_land_on_the_right_tokens(loaded, size, box):
    """The evidence box, painted white, must be visible in exactly the labelled tokens' pixels."""
    img = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    batch = build_inputs(loaded, [img], ["what is the color ?"])
    layout = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)[0][0]
    labels = box_labels(layout, [box])
    assert labels.any() and not labels.all()
    checked = 0
    for block, idx, canvas in zip(
        layout.blocks, layout.block_slices, block_canvases(loaded, batch.inputs, layout), strict=True
    ):
        bright = canvas.float().mean(0)
        lo, hi = bright.min().item(), bright.max().item()
        for label, inp in zip(labels[idx], block.input_boxes, strict=True):
            x0, y0, x1, y1 = (round(float(v)) for v in inp)
            region = (bright[y0:y1, x0:x1] - lo) / max(hi - lo, 1e-6)
            if label:
                assert region.max().item() > 0.5  # some of the box is in this token's pixels
            else:
                assert region.mean().item() < 0.35  # none of it (resampling may bleed a little)
            checked += 1
    assert checked == len(labels[labels | ~labels]) - int(np.isnan(layout.token_boxes).any(axis=1).sum())


def test_box_label_rules():
    from seesay.engine.adapters.base import ImageGrid, ImageLayout, grid_boxes

    block = ImageGrid("image", 2, 2, (20, 20), grid_boxes(2, 2, 20, 20), (1.0, 1.0, 0.0, 0.0), (20, 20))
    layout = ImageLayout(np.arange(4), (block,), (np.arange(4),), (20, 20))
    box = [(5, 0, 20, 10)]  # 3/4 of token 0? no: token 0 is x 0-10, the box covers x 5-10 of it (half)
    assert box_labels(layout, box, "any").tolist() == [True, True, False, False]
    assert box_labels(layout, box, "half").tolist() == [True, True, False, False]
    assert box_labels(layout, box, "all").tolist() == [False, True, False, False]
    with pytest.raises(ValueError):
        box_labels(layout, box, "most")


def test_evidence_map_peaks_on_the_evidence(loaded):
    img = Image.new("RGB", (48, 48), (90, 90, 90))
    batch = build_inputs(loaded, [img], ["what ?"])
    layout = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)[0][0]
    box = (24, 0, 48, 24)
    scores = box_labels(layout, [box]).astype(float)
    emap = evidence_map(layout, scores, sigma=0.0, use_denoise=False)
    assert emap.shape == (48, 48) and emap.min() >= 0 and emap.max() == pytest.approx(1.0)
    inside = emap[2:22, 26:46].mean()
    outside = emap[30:46, 2:22].mean()
    assert inside > 0.6 and outside < 0.1
    blurred = evidence_map(layout, scores, sigma=0.25)
    y, x = np.unravel_index(blurred.argmax(), blurred.shape)
    assert x >= 20 and y <= 28


# ---- attribution, RAPT, metrics -----------------------------------------------------------------------


def test_attention_rows_equal_eager_last_row(loaded, batch3):
    rows = attention_rows(loaded, batch3, range(loaded.adapter.num_layers))
    model = loaded.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            eager = model(**batch3.inputs, output_attentions=True).attentions
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    for layer, att in enumerate(eager):
        np.testing.assert_allclose(rows[:, layer], att[:, :, -1].float().mean(1).numpy(), atol=1e-5)


def test_rapt_and_subsequence():
    row = np.array([0.1, 0.2, 0.3, 0.4])
    got = rapt(
        row, {"late": np.array([False, False, True, True]), "none": np.zeros(4, bool)}, np.ones(4, bool)
    )
    assert got["late"] == pytest.approx(0.35 / 0.25)
    assert math.isnan(got["none"])
    assert find_subsequence([5, 1, 2, 3, 1, 2], [1, 2]) == 4
    assert find_subsequence([5, 1, 2], [9]) == -1


def test_retrieval_metrics_by_hand():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(scores, labels) == pytest.approx(0.75)
    assert auprc(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    assert ndcg(scores, labels) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert auroc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)  # ties count one half
    assert math.isnan(auroc([1, 2], [1, 1])) and math.isnan(auprc([1, 2], [0, 0]))
    assert ndcg([3, 2, 1], [1, 0, 0]) == 1.0
    assert choose_layers([0.5, 0.9, float("nan"), 0.7], 0.5) == (1, 3)


def test_auroc_rows_equals_the_pairwise_definition_row_by_row():
    """One ranking of [layers, tokens] rows equals P(s_pos > s_neg) + P(tie) / 2 of each row, ties kept."""
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 4, size=(2, 5, 9)).astype(float)  # few distinct values: many ties
    labels = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0], bool)
    got = auroc_rows(rows, labels)
    assert got.shape == (2, 5)
    for idx in np.ndindex(2, 5):
        pos, neg = rows[idx][labels], rows[idx][~labels]
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        assert got[idx] == pytest.approx(pairs.mean()) == pytest.approx(auroc(rows[idx], labels))
    assert np.isnan(auroc_rows(rows, np.ones(9, bool))).all()
    with pytest.raises(ValueError, match="differ in size"):
        auroc_rows(rows, labels[:-1])


# ---- records, profiling, the method -------------------------------------------------------------------


def _records(tmp_path, n=6):
    rows = []
    for i in range(n):
        w, h = 48 + 8 * (i % 3), 40 + 8 * (i % 2)
        img = Image.new("RGB", (w, h), (20, 20, 20))
        box = [4 + 2 * i, 4, 4 + 2 * i + w // 2, 4 + h // 2]
        ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(230, 40, 40))
        img.save(tmp_path / f"img{i}.png")
        rows.append(
            {
                "question_id": f"q{i}",
                "question": "what is the color of the square ?",
                "answer": "red",
                "image": f"img{i}.png",
                "width": w,
                "height": h,
                "bboxs": [box],
                "dataset": "synthetic",
            }
        )
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_visual_cot_loader_and_errors(tmp_path):
    path = _records(tmp_path, 3)
    recs = load_visual_cot(path)
    assert [r.id for r in recs] == ["q0", "q1", "q2"] and recs[0].answers == ("red",)
    assert recs[0].image == tmp_path / "img0.png" and len(recs[0].boxes) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q", "image": "a.png", "answer": "x", "bboxs": [[1, 2, 3]]}]))
    with pytest.raises(DataError, match=r"bad\.json: record 0: every box"):
        load_visual_cot(bad)
    bad.write_text(json.dumps([{"image": "a.png", "answer": "x", "bboxs": []}]))
    with pytest.raises(DataError, match="record 0 has no 'question'"):
        load_visual_cot(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q"}\n{not json\n')
    with pytest.raises(DataError, match="line 2"):
        load_visual_cot(broken)
    with pytest.raises(DataError, match="not found"):
        load_visual_cot(tmp_path / "missing.json")


def test_profile_layers_and_roundtrip(tmp_path):
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    recs = load_visual_cot(_records(tmp_path))
    prof = profile_layers(loaded, recs, n=6, batch_size=4)
    assert prof.num_layers == 4 and len(prof.auroc) == 4 and prof.n_samples + prof.n_skipped == 6
    assert prof.layers == choose_layers(prof.auroc) and len(prof.layers) == 1  # ceil(10% of 4)
    assert set(prof.rapt) == {"image", "question", "evidence", "non_evidence"}
    assert all(0 <= a <= 1 for a in prof.auroc if not math.isnan(a))
    prof.save(tmp_path / "p.json")
    assert LayerProfile.load(tmp_path / "p.json").layers == prof.layers


def test_vea_runs_on_every_family(loaded, batch3):
    method = VEA(VEAConfig(layer_set="second_half"), trace=True)
    out = method.generate(loaded, batch3, GenerationSettings(max_new_tokens=4))
    assert out.new_tokens.shape[0] == 3
    assert out.forward_passes == out.new_tokens.shape[1] + 1
    for sample, imgs in zip(out.evidence, batch3.images, strict=True):
        result = sample[0]
        if len(result.layout.blocks) == 1:  # highlighted as the model sees it (highlight_on="input")
            expected = tuple(round(v) for v in result.layout.blocks[0].input_size)
        else:
            expected = imgs[0].size
        assert result.highlighted.size == expected
        assert result.emap.shape == (imgs[0].size[1], imgs[0].size[0])
        assert result.layers == tuple(range(loaded.adapter.num_layers // 2, loaded.adapter.num_layers))
    assert out.trace[0][0]["layers"] == list(out.evidence[0][0].layers)


def test_vea_with_alpha_one_is_plain_decoding_of_the_vea_prompt(loaded, batch3):
    out = VEA(VEAConfig(alpha=1.0, layer_set="all")).generate(
        loaded, batch3, GenerationSettings(max_new_tokens=4)
    )
    plain = build_inputs(loaded, batch3.images, [vea_prompt(q) for q in batch3.questions])
    ref = decode(
        loaded.model, plain.inputs, adapter=loaded.adapter, settings=GenerationSettings(max_new_tokens=4)
    )
    assert torch.equal(out.sequences, ref.sequences)


def test_vea_delegate_and_saved_maps(tmp_path):
    from tests.conftest import QUESTIONS, images, loaded_tiny

    answerer, mapper = loaded_tiny("qwen2_vl"), loaded_tiny("llava_next")
    batch = build_inputs(answerer, images(2), QUESTIONS[:2])
    method = VEA(VEAConfig(layers=(2, 3), save_maps=str(tmp_path / "maps")), delegate=mapper)
    out = method.generate(answerer, batch, GenerationSettings(max_new_tokens=3))
    assert out.new_tokens.shape[0] == 2
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "0_heatmap.png",
        "0_highlighted.png",
        "1_heatmap.png",
        "1_highlighted.png",
    ]
    assert Image.open(tmp_path / "maps" / "0_heatmap.png").size == batch.images[0][0].size


def test_layer_resolution():
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("gemma3")
    assert preset_layers("llava-hf/llava-1.5-7b-hf") == (14, 15, 17, 19)
    assert preset_layers("Qwen/Qwen2.5-VL-7B-Instruct") == (18, 22, 24)
    assert preset_layers("google/gemma-3-4b-it") == (17, 19, 21, 23)
    assert VEAConfig().resolve_layers(loaded) == (2, 3)  # auto: no preset for a tiny model -> second half
    with pytest.raises(ConfigError, match="seesay profile"):
        VEAConfig(layer_set="profiled").resolve_layers(loaded)
    with pytest.raises(ConfigError, match="out of range"):
        VEAConfig(layers=(9,)).resolve_layers(loaded)
    assert VEAConfig(layer_set="first_half").resolve_layers(loaded) == (0, 1)


def test_cli_profile_then_vea(tmp_path, capsys):
    from seesay.cli import main
    from seesay.testing.tiny import build_tiny_vlm

    model = build_tiny_vlm("llava", save_to=tmp_path / "m").path
    records = _records(tmp_path)
    prof = tmp_path / "profile.json"
    assert main(["profile", "-m", str(model), "--data", str(records), "--n", "6", "--out", str(prof)]) == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "L_VG" in printed
    assert json.loads(prof.read_text())["num_layers"] == 4
    code = main(
        [
            "ask",
            "-m",
            str(model),
            "-i",
            str(tmp_path / "img0.png"),
            "-q",
            "what is the color ?",
            "--method",
            "vea",
            "--set",
            f"profile={prof}",
            "--set",
            f"save_maps={tmp_path / 'maps'}",
            "--max-new-tokens",
            "3",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["method"] == "vea"
    assert (tmp_path / "maps" / "0_highlighted.png").exists()


def test_vea_batch_equals_one_at_a_time():
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    imgs = images(3)
    method = VEA(VEAConfig(layer_set="second_half"))
    settings = GenerationSettings(max_new_tokens=4)
    batched = method.generate(loaded, build_inputs(loaded, imgs, QUESTIONS), settings)
    batched_maps = [m[0].emap for m in batched.evidence]
    for i in range(3):
        alone = method.generate(loaded, build_inputs(loaded, [imgs[i]], [QUESTIONS[i]]), settings)
        n = alone.new_tokens.shape[1]
        assert torch.equal(batched.new_tokens[i, :n], alone.new_tokens[0])
        np.testing.assert_allclose(batched_maps[i], alone.evidence[0][0].emap, atol=1e-5)


def test_prompts_follow_the_reference_table():
    """The hint comes before `Question: {q}`; the abstention string has typographic quotes."""
    from seesay.methods.vea import VEA_HINT, qa_prompt

    vea, qa = vea_prompt("what is it ?"), qa_prompt("what is it ?")
    assert vea.endswith(f"{VEA_HINT} Question: what is it ?")
    assert "output \u201cI cannot answer based on the given image.\u201d" in qa and '"' not in qa
    assert vea.replace(VEA_HINT + " ", "") == qa  # the hint is the only difference ("Inst" control)


def test_highlight_truncates_to_uint8_as_the_reference():
    from PIL import Image

    from seesay.methods.vea.evidence import highlight

    image = Image.new("RGB", (2, 1), (101, 255, 3))
    out = np.asarray(highlight(image, np.array([[0.5, 0.0]]), alpha=0.5))
    assert out[0, 0].tolist() == [75, 191, 2]  # 101 * 0.75 = 75.75 -> 75 (rounding would give 76)
    assert out[0, 1].tolist() == [50, 127, 1]  # 101 * 0.5 = 50.5 -> 50


def test_retrieval_is_scored_on_the_denoised_patch_scores(tmp_path):
    """Eq. 2 replaces an attention sink by its neighbours' mean; the VEA map's AUROC / AUPRC / NDCG in an
    eval are computed on those denoised scores, as VEA's attribution script does."""
    from seesay.eval.runner import evidence_scores
    from seesay.methods import VEA, VEAConfig
    from seesay.methods.vea.evidence import box_labels, denoise, denoised_scores
    from seesay.methods.vea.retrieval import auprc, auroc
    from seesay.testing.tiny import tiny_image
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    result = VEA(VEAConfig(layer_set="all", prompt="question")).evidence(
        loaded, [[tiny_image(32, 32)]], ["q ?"]
    )
    res = result[0][0]
    layout = res.layout
    block, idx = layout.blocks[0], layout.block_slices[0]
    want = denoise(np.asarray(res.token_scores)[idx].reshape(block.rows, block.cols), 10.0).ravel()
    np.testing.assert_allclose(denoised_scores(layout, res.token_scores)[idx], want)
    np.testing.assert_allclose(res.retrieval_scores, denoised_scores(layout, res.token_scores))
    # a sink: one token 1000x its neighbours is flattened by Eq. 2, so it no longer ranks first
    spiked = np.full(len(layout.positions), 1.0)
    spiked[idx[block.cols + 1]] = 1000.0  # an interior token (edges are padded by replication)
    assert denoised_scores(layout, spiked).max() < 1000.0
    w, h = layout.original_size
    boxes = [[0, 0, w / 2, h / 2]]
    labels = box_labels(layout, boxes)
    got = evidence_scores(res, boxes)
    assert got["evidence_auroc"] == pytest.approx(auroc(res.retrieval_scores, labels))
    assert got["evidence_auprc"] == pytest.approx(auprc(res.retrieval_scores, labels))


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "llava_next", "internvl"])
def test_highlight_on_the_image_the_model_sees(family):
    """highlight_on="input": one-block families highlight the image as resized / cropped for the model
    (the reference's processed image) with the canvas map; the processor keeps that image's geometry.
    Families with several blocks (tiles, views) highlight the original."""
    from PIL import Image

    from seesay.engine.loading import build_inputs
    from seesay.methods import VEA, VEAConfig
    from seesay.methods.vea.evidence import block_map, highlight, minmax, model_view
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny(family)
    yy, xx = np.mgrid[0:24, 0:40]
    smooth = np.stack([xx * 6, yy * 10, 255 - xx * 3], axis=-1).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(smooth)  # smooth, so two resamplings of it can be compared
    cfg = VEAConfig(layer_set="all", prompt="question", alpha=0.3)
    res = VEA(cfg).evidence(loaded, [[image]], ["q ?"])[0][0]
    original = VEA(VEAConfig(layer_set="all", prompt="question", alpha=0.3, highlight_on="original"))
    res_original = original.evidence(loaded, [[image]], ["q ?"])[0][0]
    assert res_original.highlighted.size == image.size
    np.testing.assert_array_equal(res.token_scores, res_original.token_scores)  # same attribution pass
    if len(res.layout.blocks) > 1:
        assert res.highlighted.size == image.size
        assert np.array_equal(np.asarray(res.highlighted), np.asarray(res_original.highlighted))
        return
    (block,) = res.layout.blocks
    view = model_view(image, block)
    assert res.highlighted.size == view.size == tuple(round(v) for v in block.input_size)
    canvas, covered = block_map(block, res.token_scores, cfg.lam, cfg.sigma, cfg.denoise)
    expected = highlight(view, minmax(canvas, where=covered), cfg.alpha)
    assert np.array_equal(np.asarray(res.highlighted), np.asarray(expected))
    # the model-view image keeps the token grid: same number of image tokens, same layout geometry
    a = build_inputs(loaded, [image], ["q ?"])
    b = build_inputs(loaded, [view], ["q ?"])
    assert a.inputs["input_ids"].shape == b.inputs["input_ids"].shape
    grid_b = loaded.adapter.image_layouts(b.inputs, b.original_sizes)[0][0].blocks[0]
    assert (grid_b.rows, grid_b.cols) == (block.rows, block.cols)
    assert tuple(round(v) for v in grid_b.input_size) == view.size
    # ... and shows what the processor shows: its pixels are close to those of the original
    pa, pb = a.inputs["pixel_values"].float(), b.inputs["pixel_values"].float()
    assert pa.shape == pb.shape
    assert (pa - pb).abs().mean() < 0.1 * pa.std()
