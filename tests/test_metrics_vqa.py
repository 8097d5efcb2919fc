"""Answer metrics on hand-made cases, including the edge cases of EVALUATION.md."""

from __future__ import annotations

import pytest

from seesay.metrics.vqa import (
    anls,
    exact_match,
    gqa_exact_match,
    levenshtein,
    process_digit_article,
    process_punctuation,
    token_f1,
    vizwiz_accuracy,
    vqa_accuracy,
)


def test_unanimous_answers_are_compared_raw_in_official_mode():
    answers = ["Yes."] * 10
    assert vqa_accuracy("Yes.", answers) == 1.0
    assert vqa_accuracy("yes", answers) == 0.0  # not normalised: "Yes." != "yes"
    assert vqa_accuracy("yes", answers, mode="lmms-eval") == 1.0  # lmms-eval always normalises


def test_period_and_number_rules():
    answers = ["5", "5", "5", "5.", "five", "5", "5", "5", "5", "6"]
    # not unanimous -> the prediction "5." loses its period, matches the "5"s
    assert vqa_accuracy("5.", answers) == pytest.approx(vqa_accuracy("5", answers))
    assert vqa_accuracy("5", answers) == 1.0
    assert process_punctuation("5.") == "5" and process_punctuation("2.5") == "2.5"
    mixed = ["2 dogs"] * 5 + ["two dogs"] * 4 + ["3 dogs"]
    assert process_digit_article("two dogs") == "2 dogs"
    assert vqa_accuracy("two dogs", mixed) == vqa_accuracy("2 dogs", mixed) == 1.0


def test_vqa_accuracy_counts_matches_among_the_other_nine():
    answers = ["red"] * 2 + ["blue"] * 8
    # each "red" answer sees 1 other red (1/3), each "blue" sees 2 reds (2/3): (2 x 1/3 + 8 x 2/3) / 10
    assert vqa_accuracy("red", answers) == pytest.approx((2 / 3 + 16 / 3) / 10)
    assert vqa_accuracy("green", answers) == 0.0
    assert vqa_accuracy("The red", answers) == pytest.approx(vqa_accuracy("red", answers))  # article dropped
    assert vqa_accuracy("red\n", answers) == pytest.approx(vqa_accuracy("red", answers))
    assert vqa_accuracy("Red?", answers, mode="lmms-eval", lowercase_strip=True) == pytest.approx(
        vqa_accuracy("red", answers, mode="lmms-eval")
    )


def test_punctuation_rule():
    assert process_punctuation("hello, world") == "hello world"  # mark next to a space: deleted
    assert process_punctuation("a/b") == "a b"  # otherwise a space
    assert process_punctuation("1,000") == "1000"  # digit,digit: every mark deleted
    assert process_digit_article("dont stop") == "don't stop"


def test_vizwiz_normalises_only_the_prediction():
    answers = ["unanswerable"] * 6 + ["Unanswerable."] * 4
    assert vizwiz_accuracy("Unanswerable.", answers) == 1.0  # the prediction is normalised, 6 raw matches
    assert vizwiz_accuracy("unanswerable", ["Unanswerable."] * 10) == 0.0


def test_gqa_modes():
    assert gqa_exact_match("yes", "yes") == 1.0
    assert gqa_exact_match("Yes.", "yes") == 0.0
    assert gqa_exact_match("Yes.", "yes", mode="llava") == 1.0
    assert gqa_exact_match("Ye,s!", "yes", mode="lmms-eval") == 1.0


def test_anls_threshold_edge():
    assert levenshtein("kitten", "sitting") == 3
    assert anls("abcd", ["abcd"]) == 1.0
    # distance 2 over length 4 = exactly 0.5: official drops it, lmms-eval keeps 0.5
    assert anls("abxy", ["abcd"]) == 0.0
    assert anls("abxy", ["abcd"], mode="lmms-eval") == 0.5
    assert anls("ABC  d", ["abc d"]) == 1.0  # lowercased, whitespace collapsed
    assert anls("abce", ["zzzz", "abcd"]) == pytest.approx(0.75)  # best reference


def test_exact_match_and_token_f1():
    assert exact_match("The Red Car.", ["red car"]) == 1.0
    assert exact_match("red", ["blue"]) == 0.0
    assert token_f1("red car", ["a red bus"]) == pytest.approx(0.5)
    assert token_f1("red car", ["blue", "red car"]) == 1.0
