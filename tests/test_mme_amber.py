"""MME and AMBER's discriminative part: answer parsing and corpus metrics against hand counts, and
their official file formats."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from seesay.errors import DataError
from seesay.eval.metrics.yesno import amber_metrics, amber_scores, mme_answer, mme_metrics
from seesay.eval.tasks import get_task


@pytest.mark.parametrize(
    ("text", "official", "lmms"),
    [
        ("Yes", "yes", "yes"),
        ("no", "no", "no"),
        ("Yes.", "yes", "yes"),  # "yes" within the first 4 characters
        ("No, it is not", "no", "no"),
        (" yes", "yes", "yes"),
        ("   yes", "other", "yes"),  # official does not strip: "yes" falls outside the first 4
        ("Not sure", "no", "no"),  # "no" in "not " (as MME's rule has it)
        ("I think yes", "other", "other"),
        ("no.", "no", "no"),
    ],
)
def test_mme_answer(text, official, lmms):
    assert mme_answer(text, "official") == official
    assert mme_answer(text, "lmms-eval") == lmms


def _row(qid: str, right: bool) -> dict:
    return {"id": qid, "score": {"accuracy": float(right)}}


def test_mme_metrics_by_hand():
    rows = [
        _row("existence/a.jpg/0", True), _row("existence/a.jpg/1", True),  # both right: acc+
        _row("existence/b.jpg/0", True), _row("existence/b.jpg/1", False),
        _row("code_reasoning/c.png/0", False), _row("code_reasoning/c.png/1", False),
    ]  # fmt: skip
    got = mme_metrics(rows)
    assert got["score_existence"] == pytest.approx(3 / 4 + 1 / 2)  # acc 75 + acc+ 50 = 125 points
    assert got["score_code_reasoning"] == 0.0
    assert got["score_perception"] == pytest.approx(1.25) and got["score_cognition"] == 0.0
    assert got["accuracy"] == pytest.approx(3 / 6) and got["acc_plus"] == pytest.approx(1 / 3)


def test_mme_release_folder(tmp_path):
    root = tmp_path / "MME_Benchmark_release_version"
    (root / "existence").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "existence" / "000.jpg")
    (root / "existence" / "000.txt").write_text(
        "Is there a dog in this image? Please answer yes or no.\tYes\n"
        "Is there a cat in this image? Please answer yes or no.\tNo\n"
    )
    (root / "artwork" / "images").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN").mkdir()
    Image.new("RGB", (8, 8)).save(root / "artwork" / "images" / "10.png")
    (root / "artwork" / "questions_answers_YN" / "10.txt").write_text("Q1?\tYes\nQ2?\tNo\n")
    samples = get_task("mme").load(root, None)
    assert [s.id for s in samples] == ["artwork/10.png/0", "artwork/10.png/1", "existence/000.jpg/0",
                                       "existence/000.jpg/1"]  # fmt: skip
    assert samples[2].answers == ("yes",) and samples[3].image == root / "existence" / "000.jpg"
    (root / "existence" / "001.txt").write_text("Q?\tMaybe\n")
    Image.new("RGB", (8, 8)).save(root / "existence" / "001.jpg")
    with pytest.raises(DataError, match="answer 'Maybe' is not Yes or No"):
        get_task("mme").load(root, None)
    with pytest.raises(DataError, match="release folder or lmms-lab's parquet"):
        get_task("mme").load(root / "existence" / "000.txt", None)


def test_amber_scores_and_metrics_by_hand():
    # (prediction, truth, type): "no" is AMBER's positive class
    cases = [
        ("No", "no", "discriminative-hallucination"),
        ("Yes", "no", "discriminative-hallucination"),
        ("No", "yes", "discriminative-attribute-state"),
        ("Yes", "yes", "discriminative-attribute-number"),
        ("yes", "yes", "discriminative-relation"),  # official: exactly "Yes" or "No" -> wrong
    ]
    rows = [{"id": str(i), "score": amber_scores(p, t, k)} for i, (p, t, k) in enumerate(cases)]
    got = amber_metrics(rows)
    assert got["accuracy"] == pytest.approx(2 / 5)
    precision, recall = 0.5, 0.5  # right "No": 1 of 2 "No" answers; 1 of 2 "no" truths
    assert got["precision"] == precision and got["recall"] == recall
    assert got["f1"] == pytest.approx(2 * 0.25 / (1 + 1e-4))
    assert got["accuracy_existence"] == 0.5 and got["recall_existence"] == 0.5
    assert got["f1_existence"] == pytest.approx(2 * 0.5 * 1.0 / (1.5 + 1e-3))  # P = 1/1, R = 1/2
    assert got["accuracy_relation"] == 0.0 and got["accuracy_attribute"] == 0.5
    lenient = amber_metrics([{"id": "0", "score": amber_scores("yes", "yes", "relation", "vlmevalkit")}])
    assert lenient["accuracy"] == 1.0
    # the official script rounds P and R to 0.1% before F1
    third = [
        {"id": str(i), "score": amber_scores(p, "no", "relation")} for i, p in enumerate(["No", "Yes", "Yes"])
    ]
    assert amber_metrics(third)["recall"] == pytest.approx(0.333)


def test_amber_files(tmp_path):
    (tmp_path / "data" / "query").mkdir(parents=True)
    notes = [
        {"id": 1, "type": "generative", "truth": ["dog"], "hallu": ["cat"]},
        {"id": 2, "type": "discriminative-hallucination", "truth": "no"},
        {"id": 3, "type": "discriminative-attribute-state", "truth": "yes"},
    ]
    (tmp_path / "data" / "annotations.json").write_text(json.dumps(notes))
    query = tmp_path / "data" / "query" / "query_all.json"
    query.write_text(json.dumps([{"id": i, "image": f"AMBER_{i}.jpg", "query": f"q{i}?"} for i in (1, 2, 3)]))
    samples = get_task("amber").load(query, tmp_path / "image")
    assert [(s.id, s.answers, s.meta["type"]) for s in samples] == [
        ("2", ("no",), "discriminative-hallucination"), ("3", ("yes",), "discriminative-attribute-state")
    ]  # fmt: skip
    assert samples[0].image == tmp_path / "image" / "AMBER_2.jpg"
    (tmp_path / "data" / "annotations.json").unlink()
    with pytest.raises(DataError, match=r"annotations\.json is neither beside it nor one folder up"):
        get_task("amber").load(query, None)
