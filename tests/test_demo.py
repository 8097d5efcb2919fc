"""The bundled demo model and `seesay demo`."""

from __future__ import annotations

import json

import pytest

from seesay.demo import answer_first_words, demo_model_path, heldout, run_demo

pytestmark = pytest.mark.skipif(demo_model_path() is None, reason="no bundled demo model in this checkout")


def test_bundled_model_is_small_and_loads_like_a_hub_model():
    from transformers import AutoModelForImageTextToText

    path = demo_model_path()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size <= 25 * 2**20
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert model.config.get_text_config().num_hidden_layers >= 8
    assert str(model.dtype) == "torch.float32"


def test_bundled_model_answers_90_percent_of_iid_questions():
    """The issue's bar, on 300 held-out in-distribution questions (the demo's seed, never trained on)."""
    from seesay import load_model
    from seesay.methods import get_method

    loaded = load_model(demo_model_path())
    records = heldout("iid", 300)
    answers = answer_first_words(loaded, get_method("base"), records, batch_size=100)
    accuracy = sum(a == r["answer"] for a, r in zip(answers, records, strict=True)) / len(records)
    assert accuracy >= 0.90
    # ... and the question types are learned, not only the ones the colour prior gives away. Left / right
    # is not (the model answers "right" to every "where" question; see docs/demo.md).
    for qtype in ("color", "shape", "exists", "count"):
        picked = [a == r["answer"] for a, r in zip(answers, records, strict=True) if r["qtype"] == qtype]
        assert len(picked) >= 30 and sum(picked) / len(picked) >= 0.75, qtype


def test_demo_reports_every_part(tmp_path):
    report = run_demo(24, out_png=tmp_path / "demo.png", batch_size=24)
    assert set(report.accuracy) == {"base", "dualpd", "vea"}
    assert all(set(v) == {"iid", "counterfactual"} for v in report.accuracy.values())
    assert report.accuracy["base"]["iid"] >= 0.8  # the trained model answers most usual-colour questions
    assert len(report.layer_auroc) == 8 and all(0 <= a <= 1 for a in report.layer_auroc)
    assert set(report.saw_right_said_wrong) == {"iid", "counterfactual"}
    assert all(report.saw_right_said_wrong[s] <= report.wrong_rate[s] for s in ("iid", "counterfactual"))
    assert (tmp_path / "demo.png").stat().st_size > 1000


def test_ask_uses_the_demo_model_by_default(capsys):
    from pathlib import Path

    from seesay.cli import main

    image = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
    assert main(["ask", "-i", str(image), "-q", "what is the color of the circle ?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"].endswith("demo_model") and payload["answer"] == "red"
