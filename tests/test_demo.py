"""The bundled demo model and `seesay demo`."""

from __future__ import annotations

import json

import pytest

from seesay.demo.run import demo_model_path, run_demo

pytestmark = pytest.mark.skipif(demo_model_path() is None, reason="no bundled demo model in this checkout")


def test_bundled_model_is_small_and_loads_like_a_hub_model():
    from transformers import AutoModelForImageTextToText

    path = demo_model_path()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size <= 25 * 2**20
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    text = model.config.get_text_config()
    assert text.num_hidden_layers >= 12 and text.num_attention_heads >= 8  # issue 14's organism
    assert str(model.dtype) == "torch.float32"


def test_demo_reports_every_part(tmp_path):
    report = run_demo(24, out_png=tmp_path / "demo.png", layers_png=tmp_path / "layers.png", batch_size=24)
    assert set(report.accuracy) == {"base", "dualpd", "vea"}
    assert all(set(v) == {"iid", "counterfactual"} for v in report.accuracy.values())
    acc, low, high = report.accuracy["base"]["iid"]
    assert acc >= 0.8 and low <= acc <= high  # the trained model answers most usual-colour questions
    assert sum(report.correct["base"]["iid"]) / 24 == pytest.approx(acc)
    assert set(report.paired) == {"dualpd", "vea"}
    d = report.paired["dualpd"]["counterfactual"]
    base_cf, dual_cf = report.correct["base"]["counterfactual"], report.correct["dualpd"]["counterfactual"]
    assert d.diff == pytest.approx((sum(dual_cf) - sum(base_cf)) / 24) and d.low <= d.diff <= d.high
    assert 0 <= d.p_value <= 1
    counts = [report.per_type["iid"]["base"][q][1] for q in report.per_type["iid"]["base"]]
    assert sum(counts) == 24
    assert len(report.layer_auroc) == 12 and all(0 <= a <= 1 for a in report.layer_auroc)
    assert (
        len(report.lens_accuracy) == 12 and report.shallow == [0, 1, 2] and report.deep == list(range(6, 12))
    )
    assert len(report.profiled_layers) == 3 and set(report.believing) == {"right", "wrong"}
    for split in ("iid", "counterfactual"):
        hits, errors, chance = report.saw_right[split]
        assert errors == 0 or 0 < chance <= 1
        assert hits <= errors == round(24 * report.wrong_rate[split])
        assert report.saw_right_said_wrong[split] <= report.wrong_rate[split]
        at_layer, errors_again, chance_one = report.saw_right_at_layer[split]
        assert errors_again == errors and at_layer <= hits  # one layer hits only where some layer does
        assert errors == 0 or 0.2 <= chance_one <= 0.5  # 1/k of the question types (2 to 5 answers)
    assert 0 <= report.saw_right_layer < 11
    usual, colour_errors = report.prior_errors
    assert 0 <= usual <= colour_errors
    assert report.heads_suppressed == 1  # 8 heads: floor(0.15 x 8) = 1
    assert report.head_filter_share == 1.0  # ... on every decode step
    assert (tmp_path / "demo.png").stat().st_size > 1000 and (tmp_path / "layers.png").stat().st_size > 1000


def test_chance_of_a_lens_hit():
    from seesay.demo.run import chance_of_a_lens_hit

    assert chance_of_a_lens_hit("exists", 1) == 0.5
    assert chance_of_a_lens_hit("color", 2) == pytest.approx(1 - 0.75**2)


def test_ask_uses_the_demo_model_by_default(capsys):
    from pathlib import Path

    from seesay.cli import main

    image = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
    assert main(["ask", "-i", str(image), "-q", "what is the color of the circle ?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"].endswith("demo/model") and payload["answer"] == "red"


def test_every_answer_word_is_one_token():
    """The demo decodes one new token per question: exact only while every answer word is one token."""
    from transformers import AutoTokenizer

    from seesay.demo.run import ANSWER_WORDS

    tok = AutoTokenizer.from_pretrained(demo_model_path())
    for words in ANSWER_WORDS.values():
        for word in words:
            ids = tok(word, add_special_tokens=False).input_ids
            assert len(ids) == 1 and tok.decode(ids).strip() == word, word


def test_base_readout_answers_are_plain_greedy():
    """The demo reads base's lens and attention in base's own pass: the tap and the hidden-state hooks
    change no answer (and the readouts have one row per question and layer)."""
    import numpy as np

    from seesay import load_model
    from seesay.demo.run import answer_first_words, base_readout, heldout
    from seesay.methods import get_method

    loaded = load_model(demo_model_path(), dtype="float32")
    records = heldout("counterfactual", 150)
    readout = base_readout(loaded, records, batch_size=50)
    assert readout.answers == answer_first_words(loaded, get_method("base"), records, batch_size=50)
    layers = loaded.adapter.num_layers
    assert readout.tops.shape == (150, layers) and readout.auroc.shape == (150, layers)
    assert np.isfinite(readout.auroc).mean() > 0.9


def test_demo_seed_selects_the_questions_and_is_recorded(tmp_path, capsys):
    """`--seed` measures another split (the dev seed, where recipes are chosen); the default stays the
    held-out seed, and the run says which it used."""
    from seesay.cli import main
    from seesay.demo import synthetic
    from seesay.demo.run import DEV_SEED, HELDOUT_SEED, heldout

    assert heldout("iid", 3) == synthetic.generate("iid", 3, seed=HELDOUT_SEED)
    assert heldout("iid", 3, DEV_SEED) != heldout("iid", 3)
    out = tmp_path / "dev.json"
    args = ["demo", "--n", "8", "--seed", str(DEV_SEED), "--batch-size", "8", "--json", str(out)]
    args += ["--png", str(tmp_path / "d.png"), "--layers-png", str(tmp_path / "l.png")]
    assert main(args) == 0
    assert "8 dev questions per split" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["seed"] == DEV_SEED and payload["n"] == 8


def test_vea_map_from_the_readout_rows_equals_its_own_attribution_pass():
    """The demo builds VEA's map from the attention rows base's pass recorded (the same prompt, image and
    plain forward, run as a cached decode step instead of a cache-less forward, so equal to float32
    rounding): the maps, the highlighted images and the answers equal VEA's own two passes."""
    import numpy as np

    from seesay import load_model
    from seesay.demo.run import _build, demo_methods, heldout, method_first_words, readout_batch
    from seesay.engine.decoding import GenerationSettings

    loaded = load_model(demo_model_path(), dtype="float32")
    records = heldout("counterfactual", 40)
    batch = _build(loaded, records)
    vea = demo_methods()["vea"]
    readout = readout_batch(loaded, batch, records)
    layers = vea.config.resolve_layers(loaded)
    ours = vea.evidence_from_rows(loaded, batch, readout.rows[:, list(layers)], layers)
    theirs = vea.evidence(loaded, batch.images, batch.questions)
    for a, b in zip(ours, theirs, strict=True):
        assert np.allclose(a[0].emap, b[0].emap, rtol=0, atol=1e-5) and a[0].layers == b[0].layers
        pixels = np.asarray(a[0].highlighted, dtype=int) - np.asarray(b[0].highlighted, dtype=int)
        assert np.abs(pixels).max() <= 1 and (pixels != 0).mean() < 0.01
    plan = vea.plan_from_maps(loaded, batch, ours, passes_before=0)
    out = vea.execute(loaded, batch, plan, GenerationSettings(max_new_tokens=1))
    assert out.forward_calls == 1  # the answer pass only
    expected = vea.generate(loaded, batch, GenerationSettings(max_new_tokens=1))
    assert expected.forward_calls == 2 and out.new_tokens.tolist() == expected.new_tokens.tolist()
    assert method_first_words(loaded, vea, batch, readout) == method_first_words(loaded, vea, batch)
