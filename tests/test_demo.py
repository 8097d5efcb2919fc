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
    assert "accuracy on dev questions, 8 per split" in " ".join(capsys.readouterr().out.split())
    payload = json.loads(out.read_text())
    assert payload["seed"] == DEV_SEED and payload["n"] == {"iid": 8, "counterfactual": 8}


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


def test_questions_for_is_the_smallest_size_whose_wilson_interval_is_within_3_points():
    """Hand-computed: at p = 1/2, n = 1000 gives +-3.09 points and n = 1100 gives +-2.95 (Wilson), so a
    dev accuracy within 10 points of 50% plans 1,100; every planned size meets the target and the size
    one step below does not; the planning is symmetric in right and wrong."""
    from seesay.demo.run import CI_TARGET, PLAN_STEP, ci_half_width, questions_for

    assert ci_half_width(500, 1000) == pytest.approx(0.03093, abs=1e-5)
    assert ci_half_width(550, 1100) == pytest.approx(0.02950, abs=1e-5)
    assert ci_half_width(360, 400) == pytest.approx(0.03331, abs=1e-5)  # the far side: p - low at p = 0.9
    assert questions_for(0.5) == questions_for(0.6) == questions_for(0.4) == 1100
    for accuracy in (0.0, 0.13, 0.5, 0.71, 0.8, 0.93, 0.97, 1.0):
        n = questions_for(accuracy)
        p = max(0.5, accuracy - 0.1) if accuracy >= 0.5 else min(0.5, accuracy + 0.1)
        assert n % PLAN_STEP == 0 and ci_half_width(round(p * n), n) <= CI_TARGET
        assert n == PLAN_STEP or ci_half_width(round(p * (n - PLAN_STEP)), n - PLAN_STEP) > CI_TARGET
        assert questions_for(1 - accuracy) == n
    assert questions_for(0.97) < questions_for(0.7)  # a surer model needs fewer questions
    with pytest.raises(ValueError, match="accuracy"):
        questions_for(1.2)
    with pytest.raises(ValueError, match="target"):
        questions_for(0.9, target=0)


def test_default_sizes_are_planned_on_the_dev_split(tmp_path, capsys, monkeypatch):
    """Without --n the test sizes come from base's dev accuracy (here planned to 6 and 10 questions so the
    test is quick); the run records and prints what they came from, and says when a CI misses +-3."""
    from seesay.cli import main
    from seesay.demo import run

    planned: list[float] = []

    def small(accuracy: float) -> int:
        planned.append(accuracy)
        return 6 if len(planned) == 1 else 10

    monkeypatch.setattr(run, "questions_for", small)
    out = tmp_path / "run.json"
    args = ["demo", "--batch-size", "16", "--json", str(out)]
    args += ["--png", str(tmp_path / "d.png"), "--layers-png", str(tmp_path / "l.png")]
    assert main(args) == 0
    text = " ".join(capsys.readouterr().out.split())
    payload = json.loads(out.read_text())
    assert payload["n"] == {"iid": 6, "counterfactual": 10}
    assert sum(count for _, count in payload["per_type"]["iid"]["base"].values()) == 6
    assert list(payload["planned_from"].values()) == pytest.approx(planned[:2])  # then the CLI's hint
    assert planned[0] >= 0.8 > planned[1] >= 0.5  # iid is easier than counterfactual on the dev split
    assert "accuracy on held-out questions, iid 6, counterfactual 10" in text
    assert f"base's accuracy there: iid {100 * planned[0]:.0f}%" in text
    assert "over the +-3 target: run with --n" in text  # 6 and 10 questions give wide intervals


def test_demo_runs_on_one_question_per_split(tmp_path):
    """--n 1: the heatmap panel shows the questions there are (it indexed two per split)."""
    report = run_demo(1, out_png=tmp_path / "demo.png", layers_png=tmp_path / "layers.png", batch_size=4)
    assert report.n == {"iid": 1, "counterfactual": 1}
    assert (tmp_path / "demo.png").stat().st_size > 1000
