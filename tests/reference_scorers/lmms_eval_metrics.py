"""lmms-eval's generic metrics, EvolvingLMMs-Lab/lmms-eval at commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

- ``levenshtein_distance``, ``anls``, ``exact_match_hf_evaluate``: ``lmms_eval/api/metrics.py`` (last
  changed 9e698346);
- :func:`generate_until_score`: the ``generate_until`` branch of ``ConfigurableTask.process_results``
  (``lmms_eval/api/task.py``, 70f5ebc7): results stripped, gold wrapped in a list, ``anls`` given all
  references at once;
- tasks: ``docvqa_val.yaml`` (metric ``anls``, target ``answers``), ``gqa.yaml`` (metric ``exact_match``
  with ``ignore_case: true``, ``ignore_punctuation: true``, target ``answer``).
"""

import re
import string

import numpy as np


def exact_match_hf_evaluate(
    predictions,
    references,
    regexes_to_ignore=None,
    ignore_case=False,
    ignore_punctuation=False,
    ignore_numbers=False,
):
    if regexes_to_ignore is not None:
        for s in regexes_to_ignore:
            predictions = np.array([re.sub(s, "", x) for x in predictions])
            references = np.array([re.sub(s, "", x) for x in references])
    else:
        predictions = np.asarray(predictions)
        references = np.asarray(references)

    if ignore_case:
        predictions = np.char.lower(predictions)
        references = np.char.lower(references)

    if ignore_punctuation:
        repl_table = string.punctuation.maketrans("", "", string.punctuation)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)

    if ignore_numbers:
        repl_table = string.digits.maketrans("", "", string.digits)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)

    score_list = predictions == references

    return {"exact_match": np.mean(score_list)}


def levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1

    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def anls(references, predictions, thresh_hold=0.5):
    values = []
    pred = predictions[0] if isinstance(predictions[0], str) else predictions[0][0]

    for answer in references:
        gt_answer = " ".join(answer.strip().lower().split())
        det_answer = " ".join(pred.strip().lower().split())

        dist = levenshtein_distance(gt_answer, det_answer)
        length = max(len(answer.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))

    question_result = 1 - min(values)

    if question_result < thresh_hold:
        question_result = 0
    return {"anls": question_result}


METRICS = {"anls": anls, "exact_match": exact_match_hf_evaluate}


def generate_until_score(metric, gold, results, multiple_target=False, **metric_kwargs):
    """One metric of ``ConfigurableTask.process_results`` for a ``generate_until`` task without its own
    ``process_results`` (the first strip, then the ``elif "generate_until" in self.OUTPUT_TYPE`` branch)."""
    results = [res.strip() if res is not None else "" for res in results]
    result = [res.strip() if res is not None else "" for res in results]
    if multiple_target:
        gold = list(gold)
    fn = METRICS[metric]
    if multiple_target and metric != "anls":
        scores = []
        if not isinstance(gold, list):
            gold = [gold]
        for gold_option in gold:
            result_score = fn(references=[gold_option], predictions=result, **metric_kwargs)
            if isinstance(result_score, dict):
                result_score = result_score[metric]
            scores.append(result_score)
        result_score = 1.0 if any(scores) else 0.0
    else:
        if not isinstance(gold, list):
            gold = [gold]
        result_score = fn(references=gold, predictions=result, **metric_kwargs)
        if isinstance(result_score, dict):
            result_score = result_score[metric]
    return result_score


def docvqa_anls(answers, prediction):
    """docvqa_val: target ``answers`` (a list, so ``multiple_target``), metric ``anls``."""
    return generate_until_score("anls", list(answers), [prediction], multiple_target=len(answers))


def gqa_exact_match(answer, prediction):
    """gqa: target ``answer`` (a string), ``exact_match`` with ignore_case and ignore_punctuation."""
    return generate_until_score(
        "exact_match", answer, [prediction], ignore_case=True, ignore_punctuation=True
    )
