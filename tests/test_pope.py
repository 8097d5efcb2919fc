"""POPE: answer extraction per mode, corpus metrics against hand counts, the synthetic POPE's negative
sampling, the loader's refusals, and `seesay eval --bench pope` end to end."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from seesay.demo import synthetic
from seesay.demo.synthetic_pope import OBJECTS, VARIANTS, pope_records, training_stats, write_pope
from seesay.errors import DataError
from seesay.eval.metrics.yesno import extract_yes_no, pope_metrics, yes_no_scores
from seesay.eval.tasks import get_task


@pytest.mark.parametrize(
    ("text", "official", "lmms", "vlmeval"),
    [
        ("yes", "yes", "yes", "yes"),
        ("Yes.", "yes", "other", "yes"),
        ("No", "no", "no", "no"),
        (" no ", "no", "no", "no"),
        ("There is not a dog.", "no", "other", "other"),
        ("Yes, there is. No doubt.", "yes", "other", "other"),  # official: only the first sentence
        ("No, there is no dog", "no", "other", "no"),
        ("no,", "no", "other", "no"),  # official drops the commas before it splits
        ("I cannot tell", "yes", "other", "other"),  # official: no negation word -> yes
        ("yes and no", "no", "other", "other"),
        ("NO", "yes", "no", "no"),  # official's words are case-sensitive: "NO" is not among them
    ],
)
def test_extraction_modes(text, official, lmms, vlmeval):
    assert extract_yes_no(text, "official") == official
    assert extract_yes_no(text, "lmms-eval") == lmms
    assert extract_yes_no(text, "vlmevalkit") == vlmeval
    with pytest.raises(ValueError, match="unknown yes/no extraction mode"):
        extract_yes_no(text, "strict")


def test_pope_metrics_by_hand():
    # labels:      y  y  y  y  n  n  n  n  y
    # predictions: y  y  n  ?  y  n  n  n  y     (? = neither yes nor no, lmms-eval)
    labels = ["yes"] * 4 + ["no"] * 4 + ["yes"]
    preds = ["yes", "yes", "no", "maybe", "yes", "no", "no", "no", "yes"]
    rows = [yes_no_scores(p, lab, "lmms-eval") for p, lab in zip(preds, labels, strict=True)]
    got = pope_metrics(rows)
    tp, fp, fn = 3, 1, 1  # the "maybe" is wrong but no false negative (lmms-eval's recall)
    assert got["precision"] == pytest.approx(tp / (tp + fp))
    assert got["recall"] == pytest.approx(tp / (tp + fn))
    p, r = tp / (tp + fp), tp / (tp + fn)
    assert got["f1"] == pytest.approx(2 * p * r / (p + r))
    assert got["accuracy"] == pytest.approx(6 / 9)
    assert got["yes_ratio"] == pytest.approx(4 / 9)
    # official: "maybe" has no negation word, so it is a "yes" (here a true positive)
    official = pope_metrics([yes_no_scores(p, lab, "official") for p, lab in zip(preds, labels, strict=True)])
    assert official["recall"] == pytest.approx(4 / 5) and official["precision"] == pytest.approx(4 / 5)
    assert pope_metrics([yes_no_scores("no", "no")])["f1"] == 0.0  # undefined -> 0, as lmms-eval
    with pytest.raises(ValueError, match="must be 'yes' or 'no'"):
        yes_no_scores("yes", "maybe")


def test_synthetic_pope_is_balanced_and_samples_negatives_by_variant():
    freq, pairs = training_stats(0.9)
    for variant in VARIANTS:
        records = pope_records(variant, 40, seed=3)
        assert records == pope_records(variant, 40, seed=3)  # deterministic
        by_image: dict[str, list[dict]] = {}
        for r in records:
            by_image.setdefault(r["image"], []).append(r)
        for rows in by_image.values():
            scene = rows[0]["scene"]
            present = {f"{o.color} {o.shape}" for o in scene.objects}
            yes = [r["object"] for r in rows if r["label"] == "yes"]
            no = [r["object"] for r in rows if r["label"] == "no"]
            assert len(yes) == len(no) == min(3, len(present))
            assert set(yes) <= present and not set(no) & present and len(set(no)) == len(no)
            absent = [o for o in OBJECTS if o not in present]
            if variant == "popular":
                assert no == sorted(absent, key=lambda o: (-freq[o], o))[: len(no)]
            if variant == "adversarial":

                def together(o, present=present):
                    return sum(pairs[frozenset((o, p))] for p in present)

                best = sorted((together(o) for o in absent), reverse=True)[: len(no)]
                assert [together(o) for o in no] == best
        labels = Counter(r["label"] for r in records)
        assert labels["yes"] == labels["no"]
    # the statistics are the training split's, counted directly
    scenes = [r["scene"] for r in synthetic.generate("train", 200, seed=0, prior=0.9)]
    direct = Counter(o for s in scenes for o in {f"{x.color} {x.shape}" for x in s.objects})
    assert training_stats(0.9, 200)[0] == direct
    with pytest.raises(ValueError, match="unknown POPE variant"):
        pope_records("hard", 2)


def test_pope_loader_reads_the_official_format_and_refuses_bad_records(tmp_path):
    task = get_task("pope")
    path = tmp_path / "coco_pope_random.json"
    rows = [
        {"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?",
         "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a cat in the image?",
         "label": "no"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # POPE's .json files hold JSON lines
    path = path.rename(tmp_path / "coco_pope_random.jsonl")
    samples = task.load(path, tmp_path / "val2014")
    assert [s.answers for s in samples] == [("yes",), ("no",)]
    assert samples[0].image == tmp_path / "val2014" / "COCO_val2014_000000000001.jpg"
    assert samples[1].question == "Is there a cat in the image?"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "label": "maybe"}) + "\n")
    with pytest.raises(DataError, match="label 'maybe', not 'yes' or 'no'"):
        task.load(bad, None)
    bad.write_text(json.dumps({"question_id": 1, "image": "x.jpg", "label": "yes"}) + "\n")
    with pytest.raises(DataError, match="has no 'text'"):
        task.load(bad, None)
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        task.load(bad, None)


def test_eval_pope_base_and_dualpd(tmp_path, capsys):
    from seesay.cli import main

    data = write_pope(tmp_path / "pope", "adversarial", 12, seed=5)
    out = tmp_path / "run"
    args = ["eval", "--bench", "pope", "--data", str(data), "--methods", "base,dualpd", "--out", str(out),
            "--batch-size", "16"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "recall" in printed and "yes_ratio" in printed
    summary = json.loads((out / "summary.json").read_text())["pope"]
    for method in ("base", "dualpd"):
        rows = [json.loads(x) for x in (out / "pope" / method / "predictions.jsonl").open()]
        labels = [r["references"][0] for r in rows]
        preds = [extract_yes_no(r["prediction"], "official") for r in rows]
        tp = sum(p == "yes" and lab == "yes" for p, lab in zip(preds, labels, strict=True))
        fp = sum(p == "yes" and lab == "no" for p, lab in zip(preds, labels, strict=True))
        fn = sum(p == "no" and lab == "yes" for p, lab in zip(preds, labels, strict=True))
        assert summary[method]["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert summary[method]["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert summary[method]["yes_ratio"] == pytest.approx(preds.count("yes") / len(preds))
        assert not [k for k in summary[method] if k.startswith("_")]  # bookkeeping stays per question
    assert summary["dualpd"]["vs_base.metric"] == "accuracy" and summary["dualpd"]["vs_base.n"] == len(rows)
