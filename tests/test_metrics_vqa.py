"""Answer metrics on hand-made cases, including the edge cases of EVALUATION.md."""

from __future__ import annotations

import pytest

from seesay.eval.metrics.vqa import (
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


def test_official_normalises_both_sides_only_when_not_unanimous():
    # issue 13: master (a013f00) runs punctuation AND digits/articles on every answer when they differ
    assert vqa_accuracy("2", ["Two"] * 3 + ["2"] + ["three"] * 6) == 1.0
    assert vqa_accuracy("yes", ["yes?"] * 8 + ["no"] * 2) == 1.0  # "yes " loses its space in the split
    # the 2016 file (458a8b2): only the punctuation rule on the answers, the prediction always normalised
    assert vqa_accuracy("2", ["Two"] * 3 + ["2"] + ["three"] * 6, mode="official-2016") == pytest.approx(0.3)
    assert vqa_accuracy("yes", ["yes?"] * 8 + ["no"] * 2, mode="official-2016") == 0.0
    assert vqa_accuracy("Yes.", ["yes"] * 10, mode="official-2016") == 1.0
    with pytest.raises(ValueError, match="no reference"):
        vqa_accuracy("yes", [])


def test_lmms_eval_splits_possessive_s_like_the_eval_ai_processor():
    assert vqa_accuracy("he's", ["hes"] * 10, mode="lmms-eval", lowercase_strip=True) == 0.0
    assert vqa_accuracy("mcdonald 's", ["mcdonald's"] * 10, mode="lmms-eval", lowercase_strip=True) == 1.0
    assert vqa_accuracy("1,,000", ["1000"] * 10, mode="lmms-eval") == 1.0  # runs of commas (VQAv2 task)


def test_period_and_number_rules():
    answers = ["5", "5", "5", "5.", "five", "5", "5", "5", "5", "6"]
    # not unanimous -> the prediction "5." loses its period, matches the "5"s
    assert vqa_accuracy("5.", answers) == pytest.approx(vqa_accuracy("5", answers))
    assert vqa_accuracy("5", answers) == 1.0
    assert process_punctuation("5.") == "5" and process_punctuation("2.5") == "2.5"
    assert process_punctuation("ok" + "." * 40) == "ok" + "." * 8  # re.UNICODE lands in the count: 32
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
    assert vizwiz_accuracy("unanswerable", [" unanswerable"] * 10) == 0.0  # answers not even stripped
    assert vizwiz_accuracy("dont", ["don\u2019t"] * 10) == 1.0  # its 2015 table: typographic apostrophes


def test_gqa_modes():
    assert gqa_exact_match("yes", "yes") == 1.0
    assert gqa_exact_match("Yes.", "yes") == 0.0
    assert gqa_exact_match("yes ", "yes") == 0.0  # eval.py compares raw
    assert gqa_exact_match("Yes.", "yes", mode="llava") == 1.0
    assert gqa_exact_match(" Yes.. ", "yes", mode="llava") == 1.0  # strip, then rstrip('.').lower()
    assert gqa_exact_match("Ye,s!", "yes", mode="lmms-eval") == 1.0
    assert gqa_exact_match("yes .", "yes", mode="lmms-eval") == 0.0  # stripped before the "." goes


def test_anls_threshold_edge():
    assert levenshtein("kitten", "sitting") == 3
    assert anls("abcd", ["abcd"]) == 1.0
    # distance 2 over length 4 = exactly 0.5: official drops it, lmms-eval keeps 0.5
    assert anls("abxy", ["abcd"]) == 0.0
    assert anls("abxy", ["abcd"], mode="lmms-eval") == 0.5
    assert anls("ABC  d", ["abc d"]) == 1.0  # lowercased, whitespace collapsed
    assert anls("abce", ["zzzz", "abcd"]) == pytest.approx(0.75)  # best reference
    assert anls("hello     world", ["hello world"], mode="lmms-eval") == 1.0  # collapsed before the distance
    assert anls("strase", ["stra\u00dfe"], mode="lmms-eval") == pytest.approx(1 - 1 / 7)  # len("STRASSE")


def test_exact_match_and_token_f1():
    assert exact_match("The Red Car.", ["red car"]) == 1.0
    assert exact_match("red", ["blue"]) == 0.0
    assert token_f1("red car", ["a red bus"]) == pytest.approx(0.5)
    assert token_f1("red car", ["blue", "red car"]) == 1.0
    assert exact_match("the\u2019s", ["\u2019s"]) == 1.0  # SQuAD: articles on word boundaries
    assert token_f1("the", ["a"]) == 0.0  # SQuAD v1.1: no shared token is 0, even when both are empty
