"""Visual-CoT's `vea` metric mode: the VEA reference's answer rules (qa-metrics 0.2.42), offline."""

from __future__ import annotations

import pytest

from seesay.eval.metrics.vea_qa import lemma, normalize, vea_exact_match, vea_f1, vea_scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Red Car.", "red car"),
        ("  an   apple, a pear!  ", "apple pear"),
        ("“Stop” sign", "stop sign"),  # Unicode quotes are punctuation (category P)
        ("theory of the atom", "theory of atom"),  # articles on word boundaries only
        ("rock-n-roll", "rocknroll"),
        ("it’s 5 $", "its 5"),  # ’ is punctuation too; $ is ASCII punctuation
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_exact_match_is_containment_of_any_reference():
    assert vea_exact_match("the car is red", ["red"]) == 1.0
    assert vea_exact_match("It is bored.", ["red"]) == 1.0  # a substring, as the reference counts it
    assert vea_exact_match("blue", ["red", "Blue!"]) == 1.0
    assert vea_exact_match("red", ["red car"]) == 0.0  # the reference must be inside the prediction
    assert vea_exact_match("", ["red"]) == 0.0  # qa-metrics: an empty prediction never matches
    with pytest.raises(ValueError):
        vea_exact_match("red", [])


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("cars", "car"),
        ("buses", "bus"),
        ("children", "child"),
        ("leaves", "leaf"),
        ("glasses", "glass"),
        ("running", "run"),
        ("walked", "walk"),
        ("went", "go"),
        ("is", "be"),
        ("bigger", "big"),
        ("red", "red"),
        ("xyzzy", "xyzzy"),  # unknown words stay as they are
    ],
)
def test_lemmas_of_lone_words(word, expected):
    assert lemma(word) == expected


def test_f1_over_sets_of_lemmas_best_reference():
    assert vea_f1("two cars", "2 car") == pytest.approx(2 * 1 / (2 + 2))  # "car" shared of 2 + 2 words
    assert vea_f1("red red car", "red car") == 1.0  # sets: repeated words count once
    assert vea_f1("the dogs running", "dog runs") == 1.0  # lemmas: dog, run on both sides
    assert vea_f1("", "red") == 0.0
    scores = vea_scores("a large white building", ["building", "tall white tower"])
    # best reference by F1: "building" -> 2*1/(1+3) = 0.5; "tall white tower" -> 2*1/(3+3) = 0.333
    assert scores == {"exact_match": 1.0, "token_f1": 0.5, "f1_match": 0.0}  # f1m needs f1 > 0.5
    assert vea_scores("white building", ["building"])["f1_match"] == 1.0  # 2/3 > 0.5


def test_visual_cot_task_offers_the_vea_mode(tmp_path):
    from seesay.demo import synthetic
    from seesay.eval.tasks import get_task

    task = get_task("visual_cot")
    assert "vea" in task.modes
    path = synthetic.write_split(tmp_path, "iid", 2, seed=1)
    sample = task.load(path, None)[0]
    got = task.score(f"it is {sample.answers[0]}", sample, "vea")
    assert got["exact_match"] == 1.0 and set(got) == {"exact_match", "token_f1", "f1_match"}
    assert task.score(f"it is {sample.answers[0]}", sample, "official")["exact_match"] == 0.0


def test_agrees_with_qa_metrics_where_it_can_run():
    """The reference package itself, where it and its nltk data are installed (not on CI: it downloads)."""
    pytest.importorskip("qa_metrics")
    em = pytest.importorskip("qa_metrics.em")
    f1 = pytest.importorskip("qa_metrics.f1")
    cases = [("the car is red", ["red"]), ("two cars", ["2 car"]), ("dogs running", ["dog runs"])]
    for pred, refs in cases:
        assert vea_exact_match(pred, refs) == float(em.em_match(refs, pred))
        assert vea_f1(pred, refs[0]) == pytest.approx(f1.f1_score_with_precision_recall(refs[0], pred)["f1"])
