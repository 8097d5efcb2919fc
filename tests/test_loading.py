"""Loading from disk, inputs through the chat template, and bad input: one clear line each."""

from __future__ import annotations

import json

import pytest
import torch

from seesay.engine.loading import build_inputs, load_image, load_model
from seesay.errors import ImageError, ModelLoadError, NoImageTokensError, SeesayError, UnsupportedModelError
from seesay.testing.tiny import build_tiny_vlm, tiny_image


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every family saved to disk once."""
    from seesay.testing.tiny import FAMILIES

    root = tmp_path_factory.mktemp("saved")
    return {f: build_tiny_vlm(f, save_to=root / f).path for f in FAMILIES}


def test_load_from_disk_matches_built_model(family, saved):
    loaded = load_model(saved[family], dtype="float32")
    built = build_tiny_vlm(family)
    assert loaded.family == family
    batch = build_inputs(loaded, [tiny_image(24, 40)], ["what is the color ?"])
    with torch.no_grad():
        a = loaded.model(**batch.inputs).logits
        b = built.model(**batch.inputs).logits
    assert torch.equal(a, b)
    assert not loaded.model.training


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_unsupported_architecture(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(
        UnsupportedModelError, match=r"LlamaForCausalLM.*supported: LlavaForConditionalGeneration"
    ):
        load_model(tmp_path)


def test_config_without_image_token_id(tmp_path, saved):
    import shutil

    target = tmp_path / "broken"
    shutil.copytree(saved["internvl"], target)
    config = json.loads((target / "config.json").read_text())
    config["image_token_id"] = None
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(SeesayError) as err:
        load_model(target)
    assert "image_token_id" in str(err.value)
    assert "\n" not in str(err.value)


def test_remote_code_is_refused(tmp_path, saved):
    import shutil

    target = tmp_path / "remote"
    shutil.copytree(saved["llava"], target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig"}
    config["model_type"] = "x_remote"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        load_model(target)


def test_image_errors(tmp_path):
    with pytest.raises(ImageError, match="image file not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ImageError, match="cannot decode image"):
        load_image(bad)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    good = tmp_path / "good.png"
    tiny_image(10, 12).save(good)
    assert load_image(good).size == (10, 12)


def test_prompt_without_image_placeholder_is_refused():
    from tests.conftest import loaded_tiny

    for family in ("qwen2_vl", "gemma3", "llava"):
        loaded = loaded_tiny(family)
        with pytest.raises(NoImageTokensError, match="no image placeholder") as err:
            build_inputs(loaded, [tiny_image(20, 20)], ["q"], prompts=["what is the color ?"])
        assert "\n" not in str(err.value)


def test_chat_template_prompt_and_left_padding(loaded, batch3):
    ids, mask = batch3.inputs["input_ids"], batch3.inputs["attention_mask"]
    assert ids.shape[0] == 3
    assert (mask[:, -1] == 1).all()  # left padded: every row ends with a real token
    assert (mask.sum(1) < ids.shape[1]).any()  # and the rows differ in length
    assert batch3.original_sizes == [[(20, 36)], [(40, 24)], [(32, 32)]]


def test_max_pixels_caps_qwen_inputs_and_is_refused_elsewhere():
    """The VEA reference's 512 x 512 budget for Qwen2.5-VL models with published presets; any cap on
    request for a Qwen-family model; an error for other families. Recorded for the run manifest."""
    from PIL import Image

    from seesay.engine.loading import VEA_MAX_PIXELS, apply_max_pixels, build_inputs, load_model
    from seesay.errors import ConfigError

    loaded = load_model("tiny-random:qwen2_5_vl")  # no published preset in its name: nothing changes
    assert "max_pixels" not in loaded.info
    image = Image.new("RGB", (224, 168), "white")
    before = build_inputs(loaded, [image], ["q ?"]).inputs["image_grid_thw"][0].tolist()
    capped = apply_max_pixels(load_model("tiny-random:qwen2_5_vl"), 56 * 56 * 2)
    after = build_inputs(capped, [image], ["q ?"]).inputs["image_grid_thw"][0].tolist()
    assert capped.info["max_pixels"] == 56 * 56 * 2
    assert after[1] * after[2] * 14 * 14 <= 56 * 56 * 2 < before[1] * before[2] * 14 * 14
    with pytest.raises(ConfigError, match="below the processor's minimum"):
        apply_max_pixels(load_model("tiny-random:qwen2_5_vl"), 100)
    preset = load_model("tiny-random:qwen2_5_vl")
    preset.name = "Qwen/Qwen2.5-VL-7B-Instruct"  # a name with a published VEA preset
    assert apply_max_pixels(preset).info["max_pixels"] == VEA_MAX_PIXELS == 512 * 512
    assert "max_pixels" not in apply_max_pixels(load_model("tiny-random:qwen2_5_vl"), None).info
    with pytest.raises(ConfigError, match="applies to Qwen2-VL"):
        load_model("tiny-random:llava", max_pixels=1000)
    with pytest.raises(ConfigError, match="positive number"):
        load_model("tiny-random:qwen2_vl", max_pixels=0)


def test_parse_max_pixels():
    from seesay.cli import parse_max_pixels
    from seesay.errors import ConfigError

    assert parse_max_pixels("preset") == "preset" and parse_max_pixels("None") is None
    assert parse_max_pixels("262144") == parse_max_pixels("512x512") == parse_max_pixels("512*512") == 262144
    for bad in ("", "abc", "512x", "0", "1x2x3"):
        with pytest.raises(ConfigError):
            parse_max_pixels(bad)
