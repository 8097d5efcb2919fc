"""The bundled demo model and `seesay demo`."""

from __future__ import annotations

import json

import pytest

from seesay.demo import demo_model_path, run_demo

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


def test_demo_reports_every_part(tmp_path):
    report = run_demo(24, out_png=tmp_path / "demo.png", batch_size=24)
    assert set(report.accuracy) == {"base", "dualpd", "vea"}
    assert all(set(v) == {"iid", "counterfactual"} for v in report.accuracy.values())
    assert report.accuracy["base"]["iid"] >= 0.7  # the trained model answers most usual-colour questions
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
