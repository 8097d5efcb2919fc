"""scripts/train_demo_model.py: a few steps of a shrunken model, reproducible from the seed, loadable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
SMALL = [
    "--steps", "3", "--train-samples", "24", "--batch-size", "4", "--warmup", "1",
    "--eval-every", "3", "--eval-samples", "6",
    "--hidden", "32", "--heads", "2", "--vision-hidden", "32", "--vision-layers", "1",
    "--threads", "1",
]  # fmt: skip


def _train(out: Path, seed: int = 0, extra: tuple[str, ...] = ()) -> Path:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--seed", str(seed), *SMALL, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("demo") / "model")


def test_saves_a_hub_style_llava_with_processor(trained):
    from seesay import load_model
    from seesay.engine.loading import build_inputs

    loaded = load_model(trained)  # float32, like the bundled model
    assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert loaded.model.dtype == torch.float32
    assert loaded.adapter.num_layers == 12  # the default depth (issue 14: 12+ layers)
    assert json.loads((trained / "config.json").read_text())["dtype"] == "float32"
    assert loaded.info["prompt_suffix"] == ""  # seesay.json: eval asks it bare questions, as trained
    log = json.loads((trained / "training_log.json").read_text())
    assert log["steps"] == 3 and log["log"][-1]["step"] == 3
    assert {"iid", "counterfactual"} <= set(log["log"][-1])
    from safetensors.torch import load_file

    saved = load_file(trained / "model.safetensors")
    assert not [k for k in saved if "aux" in k]  # the auxiliary head is training-only
    assert {t.dtype for t in saved.values()} == {torch.float16}  # half the bytes in the package

    from PIL import Image

    batch = build_inputs(loaded, [Image.new("RGB", (64, 64), "white")], ["is there a red circle ?"])
    assert batch.inputs["input_ids"].shape[1] > 64  # 64 image tokens + the question


def test_same_seed_same_weights_other_seed_other_weights(trained, tmp_path):
    assert _digest(_train(tmp_path / "again")) == _digest(trained)
    assert _digest(_train(tmp_path / "other", seed=1)) != _digest(trained)


def test_stop_at_step_replays_a_run_the_time_budget_stopped(trained, tmp_path):
    """A zero-minute budget stops after step 1 of a 5-step schedule; --stop-at-step 1 gives the same bytes
    on any machine (as the bundled model's 2,667 of 3,000 steps). Stopping at 3 of 5 is not the 3-step
    schedule (``trained``): the lr still spans --steps."""
    budget = _train(tmp_path / "budget", extra=("--steps", "5", "--max-minutes", "0"))
    replay = _train(tmp_path / "replay", extra=("--steps", "5", "--stop-at-step", "1", "--max-minutes", "99"))
    assert json.loads((budget / "training_log.json").read_text())["steps"] == 1
    assert json.loads((replay / "training_log.json").read_text())["steps"] == 1
    assert _digest(replay) == _digest(budget)
    three_of_five = _train(tmp_path / "three", extra=("--steps", "5", "--stop-at-step", "3"))
    assert json.loads((three_of_five / "training_log.json").read_text())["steps"] == 3
    assert _digest(three_of_five) != _digest(trained)


def test_later_stages_continue_a_model_and_keep_its_log(trained, tmp_path):
    """The bundled model's stages 2 and 3 (scripts/train_organism.sh): --init-from continues the weights,
    the new log keeps the earlier one under ``init_from``, and --hue-jitter changes what is trained."""
    stage = ("--init-from", str(trained), "--steps", "2", "--warmup", "1", "--lr", "6e-4")
    plain = _train(tmp_path / "plain", extra=stage)
    hue = _train(tmp_path / "hue", extra=(*stage, "--hue-jitter", "40"))
    look = _train(
        tmp_path / "look",
        extra=(
            "--init-from", str(hue), "--steps", "0", "--look-images", "2", "--look-lens-weight", "0",
            "--look-steps", "2", "--look-warmup", "1", "--hue-jitter", "40",
        ),
    )  # fmt: skip
    first = json.loads((trained / "training_log.json").read_text())
    logs = [json.loads((m / "training_log.json").read_text()) for m in (plain, hue, look)]
    assert logs[0]["init_from"] == first and logs[1]["init_from"] == first
    assert logs[2]["init_from"] == logs[1] and logs[2]["steps"] == 2 and logs[2]["first_stage_steps"] == 0
    digests = {_digest(m) for m in (trained, plain, hue, look)}
    assert len(digests) == 4


def test_packed_turns_match_the_chat_template():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_demo_model as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from seesay.demo import synthetic

    tok = script.build_tokenizer()
    processor = script.build_processor(tok)
    encoder = script.Encoder(processor)
    records = synthetic.generate("train", 20, seed=3)
    script.extra_questions(records, 4, seed=3)
    for r in records:
        turns = [(r["question"], r["answer"]), *r["extra"]]
        assert len({q for q, _ in turns}) == len(turns) == 4 == len(r["extra_boxes"]) + 1
        messages = []
        for k, (q, a) in enumerate(turns):
            content = ([{"type": "image"}] if k == 0 else []) + [{"type": "text", "text": q}]
            messages += [
                {"role": "user", "content": content},
                {"role": "assistant", "content": [{"type": "text", "text": a}]},
            ]
        ids = tok(processor.apply_chat_template(messages, tokenize=False), add_special_tokens=False)
        ids = ids["input_ids"]
        image = tok.convert_tokens_to_ids("<image>")
        at = ids.index(image)
        ids = ids[:at] + [image] * 64 + ids[at + 1 :]
        batch = encoder.batch([r])
        assert batch["input_ids"][0].tolist() == ids
        answers = [t for t in batch["labels"][0].tolist() if t >= 0]
        expected = []
        for _, a in turns:
            expected += tok(" " + a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert answers == expected
        # the first turn is exactly the single-turn prompt the model is asked with at inference
        assert ids[: len(encoder.prompt_ids(r["question"]))] == encoder.prompt_ids(r["question"])

    hits = []
    for r in synthetic.generate("train", 300, seed=3):
        shape, color, side = script.patch_labels(r["scene"]).T
        assert shape.shape == (64,)
        assert set(shape.tolist()) - {0} <= {1, 2, 3} and set(color.tolist()) - {0} <= {1, 2, 3, 4}
        assert (shape > 0).tolist() == (color > 0).tolist() == (side > 0).tolist()
        for o in r["objects"]:  # the patch under an object's centre describes that object
            x0, y0, x1, y1 = o["box"]
            k = (y0 + y1) // 2 // 8 * 8 + (x0 + x1) // 2 // 8
            offset = (x0 + x1) / 2 - 32
            expected_side = 3 if abs(offset) < 6 else (1 if offset < 0 else 2)  # left 1, right 2, centre 3
            expected = (synthetic.SHAPES.index(o["shape"]) + 1, synthetic.COLORS.index(o["color"]) + 1)
            hits.append((shape[k], color[k], side[k]) == (*expected, expected_side))
    assert sum(hits) >= 0.99 * len(hits)  # (a thin triangle's centre patch can be mostly background)


def _script():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_demo_model as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return script


def test_darkening_is_a_highlight_like_gain_truncated_to_uint8():
    script = _script()
    images = torch.randint(0, 256, (64, 64, 64, 3), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(script.darken(images, gen, 0.0), images)
    out = script.darken(images, torch.Generator().manual_seed(0), 1.0)
    assert out.dtype == torch.uint8 and (out <= images).all()
    ratio = out.float() / images.float().clamp_min(1)
    bright = images >= 100
    assert ratio[bright].min() >= 0.3 - 0.01  # the gain never goes below lo >= 0.3
    assert (ratio[bright] > 0.99).any()  # ... and reaches 1 where the map peaks
    # per image, the gain is smooth: neighbouring pixels' gains differ little (a 8-px patch grid upsampled)
    flat = torch.full((4, 64, 64, 3), 200, dtype=torch.uint8)
    gain = script.darken(flat, torch.Generator().manual_seed(1), 1.0).float() / 200
    assert (gain[:, :, 1:] - gain[:, :, :-1]).abs().max() <= 0.2
    half = script.darken(images, torch.Generator().manual_seed(2), 0.5)
    changed = (half != images).flatten(1).any(1).float().mean()
    assert 0.25 <= changed <= 0.75


def test_hue_jitter_rotates_colours_about_the_grey_axis():
    """Rodrigues' rotation about (1, 1, 1)/sqrt(3): greys stay, lengths and the grey component are
    kept, a rotation by 120 degrees permutes the channels (r, g, b) -> (b, r, g), and sigma 0 is the
    identity; the angle field is smooth (a 4 x 4 grid upsampled), so one object gets about one shift."""
    import math

    script = _script()
    images = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(script.hue_jitter(images, torch.Generator().manual_seed(0), 0.0), images)
    grey = torch.full((2, 64, 64, 3), 211, dtype=torch.uint8)
    assert torch.equal(script.hue_jitter(grey, torch.Generator().manual_seed(0), 40.0), grey)

    colour = torch.tensor([200.0, 60.0, 20.0])
    turned = script.rotate_hue(colour, torch.tensor([math.radians(120)]))
    assert torch.allclose(turned, torch.tensor([20.0, 200.0, 60.0]), atol=1e-3)
    back = script.rotate_hue(turned, torch.tensor([math.radians(-120)]))
    assert torch.allclose(back, colour, atol=1e-3)
    # the script's rotation keeps each pixel's grey component and (away from clipping) its length
    mid = torch.randint(90, 166, (4, 64, 64, 3), dtype=torch.uint8)
    out = script.hue_jitter(mid, torch.Generator().manual_seed(1), 20.0).float()
    assert (out.mean(-1) - mid.float().mean(-1)).abs().max() <= 1.0
    assert ((out.norm(dim=-1) - mid.float().norm(dim=-1)).abs() <= 2.0).float().mean() > 0.99
    assert (out != mid.float()).any()
    # smooth field: on a flat colour, neighbouring pixels hardly differ
    flat = torch.zeros(4, 64, 64, 3, dtype=torch.uint8)
    flat[..., 0], flat[..., 1], flat[..., 2] = 150, 110, 100
    shifted = script.hue_jitter(flat, torch.Generator().manual_seed(2), 40.0).float()
    assert (shifted[:, :, 1:] - shifted[:, :, :-1]).abs().max() <= 8.0  # of up to ~100 across objects


def test_evidence_patches_follow_vea_any_rule(trained):
    from seesay import load_model
    from seesay.engine.loading import build_inputs
    from seesay.methods.vea.evidence import box_labels

    script = _script()
    loaded = load_model(trained)
    from seesay.demo import synthetic

    records = synthetic.generate("iid", 40, seed=5)
    batch = build_inputs(
        loaded, [synthetic.render(r["scene"]) for r in records], [r["question"] for r in records]
    )
    layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
    for r, layout in zip(records, layouts, strict=True):
        assert script.evidence_patches(r["bboxs"]).tolist() == box_labels(layout[0], r["bboxs"]).tolist()


def test_attention_guide_rows_equal_the_tap_rows(trained):
    """The training-only guide's explicit rows equal seesay's tap (itself checked against eager)."""
    from transformers import AttentionInterface

    from seesay import load_model
    from seesay.demo import synthetic
    from seesay.engine.loading import build_inputs
    from seesay.methods.vea.attribution import attention_rows

    script = _script()
    loaded = load_model(trained)
    records = synthetic.generate("iid", 3, seed=6)
    images = [synthetic.render(r["scene"]) for r in records]
    batch = build_inputs(loaded, images, ["what is the color of the circle ?"] * 3)  # one length: no padding
    layers = list(range(loaded.adapter.num_layers))
    expected = attention_rows(loaded, batch, layers)
    ids = batch.inputs["input_ids"]
    assert (batch.inputs["attention_mask"] == 1).all()
    guide = script.AttentionGuide(layers)
    AttentionInterface.register(script.AttentionGuide.NAME, guide)
    loaded.model.set_attn_implementation({"text_config": script.AttentionGuide.NAME})
    try:
        guide.rows = torch.full((ids.shape[0],), ids.shape[1] - 1)
        with torch.no_grad():
            loaded.adapter.base_model(**batch.inputs, use_cache=False)
    finally:
        loaded.model.set_attn_implementation({"text_config": "sdpa"})
    for li in layers:
        got = guide.probs[li].mean(1).numpy()
        np.testing.assert_allclose(got, expected[:, li], atol=1e-5)


def test_question_first_template_puts_the_question_before_the_image():
    script = _script()
    tok = script.build_tokenizer()
    encoder = script.Encoder(script.build_processor(tok, "question-first"))
    ids = encoder.prompt_ids("is there a red circle ?")
    tokens = tok.convert_ids_to_tokens(ids)
    first_image = tokens.index("<image>")
    assert tokens[:first_image] == ["<s>", "USER", ":", "is", "there", "a", "red", "circle", "?"]
    assert tokens[first_image : first_image + 64] == ["<image>"] * 64
    assert tokens[first_image + 64 :] == ["ASSISTANT", ":"]


def test_fixed_sincos_positions_are_frozen_and_saved(trained):
    """The vision tower's positions: 2-D sine-cosine (MAE's form), zero for the class token, one code per
    patch, frozen (no gradient, not in the optimiser) and saved with the weights."""
    script = _script()
    table = script.sincos_positions(8, 32)
    assert table.shape == (65, 32) and torch.all(table[0] == 0)
    assert torch.allclose(table[1:].pow(2).mean(), torch.tensor(0.5), atol=1e-6)  # rms 0.71
    assert torch.cdist(table[1:], table[1:]).add(torch.eye(64)).min() > 0.1  # every patch its own code
    # row r, column c: the first half codes r, the second half c (patch 1 + r * 8 + c)
    assert torch.equal(table[1 + 2 * 8 + 5, :16], table[1 + 2 * 8 + 0, :16])
    assert torch.equal(table[1 + 2 * 8 + 5, 16:], table[1 + 7 * 8 + 5, 16:])
    from seesay import load_model

    loaded = load_model(trained, dtype="float32")
    weight = loaded.model.model.vision_tower.embeddings.position_embedding.weight
    assert torch.allclose(weight, script.sincos_positions(8, weight.shape[1]), atol=1e-3)  # fp16 storage
    import argparse

    model = script.build_model(
        script.build_tokenizer(),
        argparse.Namespace(vision_hidden=32, vision_layers=1, hidden=32, layers=2, heads=2,
                           position_embedding="sincos"),
    )  # fmt: skip
    assert not model.model.vision_tower.embeddings.position_embedding.weight.requires_grad


def test_the_bundled_model_is_what_train_organism_sh_runs():
    """Each stage's options in scripts/train_organism.sh are the ones the bundled model's nested
    training_log.json recorded (``--stop-at-step N``: the stage ran N steps)."""
    import shlex

    from seesay.demo.run import demo_model_path

    bundled = demo_model_path()
    if bundled is None:
        pytest.skip("no bundled demo model in this checkout")
    log = json.loads((Path(bundled) / "training_log.json").read_text())
    stages = [log["init_from"]["init_from"], log["init_from"], log]
    assert "init_from" not in stages[0]  # stage 1 is from scratch
    text = (SCRIPT.parent / "train_organism.sh").read_text().replace("\\\n", " ")
    commands = [shlex.split(line)[1:] for line in text.splitlines() if line.startswith('"${train[@]}"')]
    assert len(commands) == 3
    for command, stage in zip(commands, stages, strict=True):
        options = dict(zip(command[::2], command[1::2], strict=False))
        assert command[-1] == "$@"
        for flag, value in options.items():
            if flag in ("--out", "--init-from", "$@"):
                continue
            if flag == "--stop-at-step":
                assert stage["steps"] == int(value), flag
                continue
            recorded = stage["args"][flag[2:].replace("-", "_")]
            assert float(recorded) == float(value), (flag, recorded, value)
