"""ANLS: the definition, and the docvqa.org evaluation script.

- :func:`definition`: ANLS as defined for ST-VQA (Biten et al., ICCV 2019, Eq. 1) and DocVQA (Mathew et al.,
  WACV 2021): ``s(a, o) = 1 - NL(a, o)`` if ``NL(a, o) < tau`` else 0, ``NL = Lev(a, o) / max(|a|, |o|)``,
  best over the references; answers compared case-insensitively with whitespace collapsed.
- :func:`infographicsvqa_eval`: the per-question score of ``evaluate_method`` in the docvqa.org script
  ``infographicsvqa_eval.py`` (copy in QwenLM/Qwen-VL ``eval_mm/infographicsvqa_eval.py`` at
  e6bbb9dd9e9fc44a4498d372e83b3b172dc1d808): the length comes from the uncollapsed upper-cased strings.
"""


def levenshtein(a, b):
    # plain Wagner-Fischer, independent of seesay's implementation
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[len(a)][len(b)]


def definition(answers, prediction, tau=0.5):
    o = " ".join(prediction.lower().split())
    scores = []
    for answer in answers:
        a = " ".join(answer.lower().split())
        n = max(len(a), len(o))
        nl = levenshtein(a, o) / n if n else 0.0
        scores.append(1 - nl if nl < tau else 0.0)
    return max(scores)


def infographicsvqa_eval(answers, prediction, anls_threshold=0.5):
    gtObject = {"answers": list(answers)}
    detObject = {"answer": prediction}
    values = []
    for answer in gtObject["answers"]:
        # preprocess both the answers - gt and prediction
        gt_answer = " ".join(answer.strip().lower().split())
        det_answer = " ".join(detObject["answer"].strip().lower().split())

        dist = levenshtein(gt_answer, det_answer)
        length = max(len(answer.upper()), len(detObject["answer"].upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))

    question_result = 1 - min(values)

    if question_result < anls_threshold:
        question_result = 0
    return question_result
