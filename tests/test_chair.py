"""CHAIR: object words of hand-written captions, CHAIR_s / CHAIR_i / recall by hand, the official file
formats (generated captions, MSCOCO annotation files), the ``chair`` benchmark's corpus metrics, and
``seesay chair``."""

from __future__ import annotations

import json

import pytest

from seesay.errors import DataError
from seesay.eval.metrics.chair import (
    caption_objects,
    categories,
    chair,
    coco_ground_truth,
    read_captions,
    read_ground_truth,
    score_caption,
    synonyms,
)
from seesay.eval.tasks import get_task


def _objects(caption: str) -> list[tuple[str, str]]:
    return [(m.word, m.category) for m in caption_objects(caption)]


def test_synonym_list_is_the_papers():
    table = synonyms()
    assert len(set(table.values())) == 80  # the MSCOCO categories
    assert table["puppy"] == "dog" and table["sofa"] == "couch" and table["laptop computer"] == "laptop"
    assert table["people"] == "person" and table["desk"] == "dining table" and table["knive"] == "knife"
    # read as the paper's code reads it: an entry after a double space keeps its space, so never matches
    assert " motor bike" in table and "motor bike" not in table and "iPhone" in table


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A man riding a motorbike next to two dogs.", [("man", "person"), ("motorbike", "motorcycle"),
                                                        ("dog", "dog")]),
        ("Teddy bears on a table beside a hot dog.", [("teddy bear", "teddy bear"), ("table", "dining table"),
                                                      ("hot dog", "hot dog")]),
        ("The seat of the toilet is up.", [("toilet", "toilet")]),  # "toilet seat" rule: no chair
        ("A chair and a stool.", [("chair", "chair"), ("stool", "chair")]),
        ("A baby bird near a passenger jet.", [("bird", "bird"), ("jet", "airplane")]),  # not persons
        ("Wine glasses, knives and forks.", [("wine glass", "wine glass"), ("knife", "knife"),
                                             ("fork", "fork")]),
        ("Children and people watch giraffes.", [("children", "person"), ("people", "person"),
                                                 ("giraffe", "giraffe")]),
        ("A cell phone, a bow tie, a bow.", [("cell phone", "cell phone"), ("tie", "tie"), ("bow", "tie")]),
        ("An iPhone and a cheesecake.", []),  # the list's quirks, as in the paper's code
        ("Nothing but sky and grass.", []),
        ("A dog's tail near a man's bike.", [("dog", "dog"), ("man", "person"), ("bike", "bicycle")]),
    ],
)  # fmt: skip
def test_caption_objects_by_hand(caption, expected):
    assert _objects(caption) == expected


def test_chair_by_hand():
    truth = {"1": {"person", "dog"}, "2": {"cat", "couch", "tv"}, "3": {"pizza"}}
    captions = [
        ("1", "A man and a woman walk a dog. A frisbee lies on the grass."),  # 4 mentions, frisbee wrong
        ("2", "A kitten sleeps on the sofa."),  # 2 mentions, none wrong
        ("3", "A pizza next to a pizza and a knife and a fork."),  # 4 mentions, knife and fork wrong
    ]
    totals, scores = chair(captions, truth)
    assert [len(s.mentions) for s in scores] == [4, 2, 4]
    assert [[m.word for m in s.hallucinated] for s in scores] == [["frisbee"], [], ["knife", "fork"]]
    assert totals["chair_s"] == pytest.approx(2 / 3)
    assert totals["chair_i"] == pytest.approx(3 / 10)  # every mention counts, the two pizzas too
    assert totals["recall"] == pytest.approx((2 + 2 + 1) / (2 + 3 + 1))  # tv never named
    assert scores[0].to_dict()["metrics"] == {"CHAIRs": 1.0, "CHAIRi": 0.25}
    with pytest.raises(DataError, match="1 captioned image\\(s\\) have no ground-truth objects: 9"):
        chair([("9", "a dog")], truth)
    assert score_caption("", {"dog"}).mentions == []


@pytest.fixture
def coco(tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}]
    instances = {
        "categories": cats,
        "images": [{"id": 7}, {"id": 8}],
        "annotations": [{"image_id": 7, "category_id": 1}, {"image_id": 7, "category_id": 18},
                        {"image_id": 8, "category_id": 62}],
    }  # fmt: skip
    (folder / "instances_val2014.json").write_text(json.dumps(instances))
    caps = {"annotations": [{"image_id": 8, "caption": "A cat on a wooden chair."}]}
    (folder / "captions_val2014.json").write_text(json.dumps(caps))
    return folder


def test_official_formats(coco, tmp_path):
    truth = coco_ground_truth(coco)
    assert truth == {"7": {"person", "dog"}, "8": {"chair", "cat"}}  # segments + reference captions
    assert read_ground_truth(coco) == truth
    (tmp_path / "gt.json").write_text(json.dumps({"7": ["people", "puppy"]}))
    assert read_ground_truth(tmp_path / "gt.json") == {"7": {"person", "dog"}}
    records = [{"image_id": 7, "caption": "a dog"}, {"image_id": 8, "caption": "a cat"}]
    (tmp_path / "caps.json").write_text(json.dumps(records))
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    evaluated = {"overall": {}, "imgToEval": {str(r["image_id"]): r for r in records}}
    (tmp_path / "eval.json").write_text(json.dumps(evaluated))
    expected = [("7", "a dog"), ("8", "a cat")]
    for name in ("caps.json", "caps.jsonl", "eval.json"):
        assert read_captions(tmp_path / name) == expected
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1}]))
    with pytest.raises(DataError, match="record 0 needs 'image_id' and 'caption'"):
        read_captions(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no MSCOCO instances"):
        coco_ground_truth(tmp_path)
    with pytest.raises(DataError, match="'spaceship' is not an MSCOCO object name"):
        categories(["spaceship"])


def test_chair_benchmark_aggregates_like_the_scorer(tmp_path):
    task = get_task("chair")
    records = [
        {"image_id": 1, "image": "a.png", "objects": ["person", "dogs"]},
        {"image_id": 2, "image": "b.png", "objects": ["pizza"], "question": "Describe the picture."},
    ]
    path = tmp_path / "chair.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    samples = task.load(path, None)
    assert (
        samples[0].answers == ("dog", "person")
        and samples[0].question == "Please describe this image in detail."
    )
    assert samples[1].question == "Describe the picture." and task.max_new_tokens == 512
    preds = ["A woman walks her dog past a bench.", "A pizza on a plate."]
    rows = [{"id": s.id, "score": task.score(p, s, "official")} for p, s in zip(preds, samples, strict=True)]
    totals, _ = chair(
        [(s.id, p) for p, s in zip(preds, samples, strict=True)], {"1": {"dog", "person"}, "2": {"pizza"}}
    )
    got = task.aggregate(rows)
    for key in ("chair_s", "chair_i", "recall"):
        assert got[key] == pytest.approx(totals[key])
    assert got == pytest.approx({"chair_s": 0.5, "chair_i": 1 / 4, "recall": 1.0})
    path.write_text(json.dumps({"image_id": 1, "image": "a.png", "objects": ["unicorn"]}) + "\n")
    with pytest.raises(DataError, match="record 0: 'unicorn' is not an MSCOCO object name"):
        task.load(path, None)


def test_seesay_chair_command(coco, tmp_path, capsys):
    from seesay.cli import main

    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"image_id": 7, "caption": "A man with his dog and a cat."},
                                {"image_id": 8, "caption": "A cat on a chair."}]))  # fmt: skip
    out = tmp_path / "chair_out.json"
    assert main(["chair", str(caps), "--annotations", str(coco), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "50.0%" in printed and "20.0%" in printed  # CHAIR_s 1/2, CHAIR_i 1/5
    saved = json.loads(out.read_text())
    assert saved["overall_metrics"]["chair_i"] == pytest.approx(0.2)
    assert saved["sentences"][0]["mscoco_hallucinated_words"] == [["cat", "cat"]]
    assert main(["chair", str(tmp_path / "missing.json"), "--annotations", str(coco)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_eval_bench_chair_end_to_end(tmp_path):
    from seesay.cli import main

    example = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
    records = [{"image_id": i, "image": str(example), "objects": ["person"]} for i in (1, 2)]
    data = tmp_path / "chair.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "run"
    args = ["eval", "--bench", "chair", "--data", str(data), "--image-root", "/", "--methods", "base,dualpd",
            "--out", str(out), "--max-new-tokens", "4", "--allow-images-outside-root"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())["chair"]
    rows = [json.loads(x) for x in (out / "chair" / "base" / "predictions.jsonl").open()]
    scores = chair([(r["id"], r["prediction"]) for r in rows], {"1": {"person"}, "2": {"person"}})[0]
    assert summary["base"]["chair_i"] == pytest.approx(scores["chair_i"])
    assert summary["dualpd"]["vs_base.metric"] == "chair_s"
