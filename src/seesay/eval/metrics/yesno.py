"""Yes/no answers (POPE, MME, AMBER's discriminative part): extracting the answer, and POPE's corpus
metrics.

Extraction, by metric mode (each as the named code does it; docs/evaluation.md):

* ``official`` (POPE's ``evaluate.py``; LLaVA's and VCD's POPE scripts do the same): keep the first
  sentence (up to the first "."), drop commas, split on spaces; "no" if any word is "No", "no" or "not",
  else "yes". Never "other".
* ``lmms-eval`` (its ``pope`` task): the whole answer, lower-cased and stripped, is "yes", "no" or
  "other".
* ``vlmevalkit`` (its ``YOrN_Extraction``): lower-case, punctuation to spaces, split into words; "yes"
  if "yes" is among them and "no" is not, "no" for the reverse, else "other" (unknown).

Corpus metrics (POPE): with TP = #(pred yes, label yes), FP = #(pred yes, label no), FN = #(pred no,
label yes): precision TP / (TP + FP), recall TP / (TP + FN), F1 = 2PR / (P + R) (0 when undefined, as
lmms-eval), accuracy = mean(pred == label), yes ratio = share of "yes" predictions (POPE's definition;
lmms-eval's ``pope_yes_ratio`` reports the labels' share instead). An "other" answer is wrong, and is
neither a positive nor a negative prediction (so lmms-eval's recall leaves it out, as its code does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MODES = ("official", "lmms-eval", "vlmevalkit")
_PUNCT = re.compile(r"[^\w\s]")


def extract_yes_no(text: str, mode: str = "official") -> str:
    """ "yes", "no" or "other" (see the module docstring)."""
    if mode == "official":
        first = text.split(".")[0] if "." in text else text
        words = first.replace(",", "").split(" ")
        return "no" if any(w in ("No", "no", "not") for w in words) else "yes"
    if mode == "lmms-eval":
        answer = text.lower().strip()
        return answer if answer in ("yes", "no") else "other"
    if mode == "vlmevalkit":
        words = _PUNCT.sub(" ", text.lower()).split()
        if "yes" in words and "no" not in words:
            return "yes"
        if "no" in words and "yes" not in words:
            return "no"
        return "other"
    raise ValueError(f"unknown yes/no extraction mode {mode!r}; choose one of {', '.join(MODES)}")


def yes_no_scores(prediction: str, label: str, mode: str = "official") -> dict[str, float]:
    """Per question: ``accuracy`` (0/1) and ``_pred_yes``, ``_pred_no``, ``_label_yes`` (0/1 each: the
    bookkeeping :func:`pope_metrics` aggregates; a leading "_" keeps a score out of the summary's means)."""
    label = label.strip().lower()
    if label not in ("yes", "no"):
        raise ValueError(f"a yes/no label must be 'yes' or 'no', got {label!r}")
    pred = extract_yes_no(prediction, mode)
    return {
        "accuracy": float(pred == label),
        "_pred_yes": float(pred == "yes"),
        "_pred_no": float(pred == "no"),
        "_label_yes": float(label == "yes"),
    }


def pope_metrics(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Precision, recall, F1, accuracy and yes ratio over the corpus (see the module docstring)."""
    rows = list(scores)
    if not rows:
        return {}
    tp = sum(r["_pred_yes"] * r["_label_yes"] for r in rows)
    fp = sum(r["_pred_yes"] * (1 - r["_label_yes"]) for r in rows)
    fn = sum(r["_pred_no"] * r["_label_yes"] for r in rows)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(r["_pred_yes"] for r in rows) / len(rows),
    }


# ------------------------------------------------------------------------------------------------------ MME

MME_PERCEPTION = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)  # fmt: skip
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_MODES = ("official", "lmms-eval")


def mme_answer(text: str, mode: str = "official") -> str:
    """MME's ``parse_pred_ans`` (its ``eval_tool/calculation.py``): lower-case ("lmms-eval" also strips
    and drops "."); "yes" / "no" as they are, else "yes" if "yes" is in the first 4 characters, else "no"
    if "no" is, else "other"."""
    if mode not in MME_MODES:
        raise ValueError(f"unknown MME mode {mode!r}; choose one of {', '.join(MME_MODES)}")
    answer = text.lower()
    if mode == "lmms-eval":
        answer = answer.strip().replace(".", "")
    if answer in ("yes", "no"):
        return answer
    prefix = answer[:4]
    return "yes" if "yes" in prefix else "no" if "no" in prefix else "other"


def mme_metrics(rows: Iterable[Mapping]) -> dict[str, float]:
    """MME over prediction rows whose ids are ``{category}/{image}/{k}``: per category acc (questions)
    and acc+ (images whose two questions are both right), its score acc + acc+ (a fraction: x100 gives
    MME's points, 0-200), the perception and cognition totals (sums of their categories' scores), and the
    overall acc and acc+."""
    by_image: dict[str, list[float]] = {}
    for row in rows:
        by_image.setdefault(str(row["id"]).rsplit("/", 1)[0], []).append(float(row["score"]["accuracy"]))
    if not by_image:
        return {}
    out: dict[str, float] = {}
    per_category: dict[str, list[list[float]]] = {}
    for image, scores in by_image.items():
        per_category.setdefault(image.split("/", 1)[0], []).append(scores)
    totals = {"perception": 0.0, "cognition": 0.0}
    for category, images in sorted(per_category.items()):
        answers = [s for scores in images for s in scores]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(s == 1.0 for s in scores) for scores in images) / len(images)
        out[f"score_{category}"] = acc + acc_plus
        if category in MME_PERCEPTION:
            totals["perception"] += acc + acc_plus
        elif category in MME_COGNITION:
            totals["cognition"] += acc + acc_plus
    all_answers = [s for scores in by_image.values() for s in scores]
    out["accuracy"] = sum(all_answers) / len(all_answers)
    out["acc_plus"] = sum(all(s == 1.0 for s in v) for v in by_image.values()) / len(by_image)
    out.update({f"score_{k}": v for k, v in totals.items()})
    return out


# ---------------------------------------------------------------------------------------------------- AMBER

AMBER_MODES = ("official", "vlmevalkit")
AMBER_DIMENSIONS = ("existence", "attribute", "relation")


def amber_dimension(kind: str) -> str:
    """AMBER's annotation ``type`` -> its discriminative dimension (as ``inference.py`` counts it)."""
    if kind == "discriminative-hallucination":
        return "existence"
    if kind.startswith("discriminative-attribute"):
        return "attribute"
    return "relation"


def amber_scores(prediction: str, truth: str, kind: str, mode: str = "official") -> dict[str, float]:
    """Per question: ``accuracy`` and the bookkeeping :func:`amber_metrics` needs. "official" is AMBER's
    ``inference.py``: the answer must be exactly "Yes" or "No"; "vlmevalkit" extracts it by word set."""
    if mode == "official":
        pred = {"Yes": "yes", "No": "no"}.get(prediction, "other")
    elif mode == "vlmevalkit":
        pred = extract_yes_no(prediction, "vlmevalkit")
    else:
        raise ValueError(f"unknown AMBER mode {mode!r}; choose one of {', '.join(AMBER_MODES)}")
    dim = amber_dimension(kind)
    return {
        "accuracy": float(pred == truth),
        "_ans_no": float(pred == "no"),
        "_truth_no": float(truth == "no"),
        **{f"_dim_{d}": float(d == dim) for d in AMBER_DIMENSIONS},
    }


def _amber_prf(rows: list[Mapping[str, float]], eps: float) -> dict[str, float]:
    """AMBER's discriminative metrics ("no" is the positive class): precision = right "No" answers over
    "No" answers, recall = right "No" answers over "no" truths, both rounded to 0.1% as the official
    script prints them, F1 = 2PR / (P + R + eps) from the rounded values."""
    n = len(rows)
    correct = sum(r["accuracy"] for r in rows)
    ans_no = sum(r["_ans_no"] for r in rows)
    truth_no = sum(r["_truth_no"] for r in rows)
    both = sum(r["_ans_no"] * r["_truth_no"] for r in rows)
    precision = round(both / ans_no * 100, 1) / 100 if ans_no else 0.0
    recall = round(both / truth_no * 100, 1) / 100 if truth_no else 0.0
    return {
        "accuracy": correct / n,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall + eps),
    }


def amber_metrics(rows: Iterable[Mapping]) -> dict[str, float]:
    """Overall and per dimension (existence, attribute, relation): accuracy, precision, recall and F1 as
    AMBER's ``inference.py`` computes them (its F1 adds 0.0001 to the denominator, 0.001 for existence)."""
    scores = [r["score"] for r in rows]
    if not scores:
        return {}
    out = _amber_prf(scores, 1e-4)
    for dim in AMBER_DIMENSIONS:
        part = [s for s in scores if s[f"_dim_{dim}"]]
        if part:
            for key, value in _amber_prf(part, 1e-3 if dim == "existence" else 1e-4).items():
                out[f"{key}_{dim}"] = value
    return out
