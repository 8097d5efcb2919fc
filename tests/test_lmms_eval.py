"""seesay inside lmms-eval: ``lmms-eval --model seesay`` found through the ``lmms_eval.models`` entry point,
run by lmms-eval's own CLI offline on the bundled model with a local task (``--include_path``), gives the
predictions ``seesay eval`` gives on the same questions; its refusals and its reading of lmms-eval's
generation kwargs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seesay.demo.run import demo_model_path
from seesay.demo.synthetic_pope import write_pope


def _lmms_eval_or_skip() -> None:
    """lmms-eval's CLI, or a skip; in CI (``CI`` set) its absence is a failure."""
    if importlib.util.find_spec("lmms_eval") is None or importlib.util.find_spec("loguru") is None:
        if os.environ.get("CI"):
            pytest.fail("the lmms-eval test needs lmms-eval's CLI (bash scripts/install_harnesses.sh)")
        pytest.skip("lmms-eval is not installed (bash scripts/install_harnesses.sh)")


TASK_YAML = """\
task: seesay_pope
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: label
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

TASK_UTILS = """\
from pathlib import Path

from PIL import Image

ROOT = Path({root!r})


def doc_to_visual(doc):
    return [Image.open(ROOT / doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["text"]


def process_results(doc, results):
    return {{"exact_match": float(results[0].strip().lower() == doc["label"])}}
"""


def _lmms_eval_command() -> list[str]:
    exe = shutil.which("lmms-eval", path=str(Path(sys.executable).parent)) or shutil.which("lmms-eval")
    return [exe] if exe else [sys.executable, "-m", "lmms_eval"]


def test_lmms_eval_cli_runs_seesay_and_matches_seesay_eval(tmp_path):
    _lmms_eval_or_skip()
    from seesay.cli import main

    model = demo_model_path()
    assert model is not None
    data = write_pope(tmp_path / "pope", "adversarial", 5, seed=11)  # about 20 questions
    # seesay's own harness: the same questions, the same method options
    out = tmp_path / "seesay_run"
    args = ["eval", "--bench", "pope", "--data", str(data), "--methods", "base,dualpd", "--set",
            "dualpd.rho=0.2", "--out", str(out), "--batch-size", "3"]  # fmt: skip
    assert main(args) == 0
    ours = {r["id"]: r["prediction"] for r in map(json.loads, (out / "pope/dualpd/predictions.jsonl").open())}
    base = {r["id"]: r["prediction"] for r in map(json.loads, (out / "pope/base/predictions.jsonl").open())}

    task = tmp_path / "lmms_task"
    task.mkdir()
    (task / "seesay_pope.yaml").write_text(TASK_YAML.format(data=json.dumps(str(data))))
    (task / "utils.py").write_text(TASK_UTILS.format(root=str(data.parent)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("WORLD_SIZE", None)
    command = [*_lmms_eval_command(), "--model", "seesay", "--model_args",
               f"pretrained={model},method=dualpd,rho=0.2", "--tasks", "seesay_pope", "--include_path",
               str(task), "--batch_size", "4", "--device", "cpu", "--output_path", str(tmp_path / "lmms_out"),
               "--log_samples"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    samples = list((tmp_path / "lmms_out").glob("*/*_samples_seesay_pope.jsonl"))
    assert len(samples) == 1, list((tmp_path / "lmms_out").rglob("*"))
    ids = [json.loads(line)["question_id"] for line in data.open()]
    theirs = {str(ids[r["doc_id"]]): r["filtered_resps"] for r in map(json.loads, samples[0].open())}
    theirs = {k: v[0] if isinstance(v, list) else v for k, v in theirs.items()}
    assert len(theirs) == len(ids) == len(ours)
    assert (
        theirs == ours
    )  # lmms-eval's CLI with seesay's DualPD == seesay eval's DualPD, question by question
    assert set(theirs.values()) <= {"yes", "no"}
    counts = [json.loads(line)["token_counts"][0] for line in samples[0].open()]
    assert all(c["output_tokens"] >= 1 and c["input_tokens"] > 16 for c in counts)  # image tokens included
    # the model's own text reached lmms-eval's metric (lmms-eval's prompt: the question alone, no suffix)
    results = json.loads(next((tmp_path / "lmms_out").glob("*/*_results.json")).read_text())
    labels = [json.loads(line)["label"] for line in data.open()]
    expected = sum(theirs[str(i)] == lab for i, lab in zip(ids, labels, strict=True)) / len(ids)
    assert results["results"]["seesay_pope"]["exact_match,none"] == pytest.approx(expected)
    assert base.keys() == ours.keys()


def test_lmms_eval_registry_and_refusals(tmp_path):
    _lmms_eval_or_skip()
    from lmms_eval.models import get_model

    from seesay.errors import ConfigError, SeesayError
    from seesay.integrations.lmms import SeesayLMM, cut_at_stops, generation_settings

    assert get_model("seesay") is SeesayLMM  # through the entry point group lmms_eval.models
    lm = SeesayLMM.create_from_arg_string(
        "pretrained=tiny-random:llava,method=dualpd,rho=0.3", {"batch_size": 2, "device": "cpu"}
    )
    assert lm.runner.name == "dualpd" and lm.runner.config.rho == 0.3 and lm.batch_size == 2
    with pytest.raises(SeesayError, match=r"loglikelihood tasks .* are not supported"):
        lm.loglikelihood([])
    with pytest.raises(ConfigError, match="has no option"):
        SeesayLMM.create_from_arg_string("pretrained=tiny-random:llava,method=dualpd,rh=0.3")
    with pytest.raises(ConfigError, match="no 'auto'"):
        SeesayLMM(pretrained="tiny-random:llava", batch_size="auto")

    settings, until = generation_settings({"max_new_tokens": 7, "temperature": 0, "until": "\n\n"})
    assert settings.max_new_tokens == 7 and not settings.do_sample and until == ["\n\n"]
    settings, _ = generation_settings({"temperature": 0.7, "top_p": 0.9, "do_sample": True})
    assert settings.do_sample and settings.temperature == 0.7 and settings.top_p == 0.9
    assert settings.max_new_tokens == 1024  # lmms-eval's HF models' default
    with pytest.raises(ConfigError, match="num_beams"):
        generation_settings({"num_beams": 4})
    assert cut_at_stops("red.\n\nQuestion: blue", ["\n\n", "Question:"]) == "red."


def test_lmms_eval_model_needs_images(tmp_path):
    _lmms_eval_or_skip()
    from lmms_eval.api.instance import Instance

    from seesay.errors import SeesayError
    from seesay.integrations.lmms import SeesayLMM

    lm = SeesayLMM(pretrained="tiny-random:llava", device="cpu")
    lm.task_dict = {"t": {"test": [{"q": "what ?"}]}}
    request = Instance(
        request_type="generate_until",
        arguments=("what ?", {"max_new_tokens": 2}, lambda doc: [], 0, "t", "test"),
        idx=0,
        metadata={"task": "t", "doc_id": 0, "repeats": 1},
    )
    with pytest.raises(SeesayError, match="need one or more images per question, got none"):
        lm.generate_until([request])
