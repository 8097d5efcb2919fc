"""Answer metrics of the VQA benchmarks, each mode equal, rule for rule, to the scorer it names.

Every mode re-creates one public file at one commit (read for facts, re-written here); the cross-check
against literal re-creations of those files is ``tests/test_metric_fidelity.py``.

VQA accuracy (VQAv2, OK-VQA, TextVQA), ``acc = mean_k min(1, #{j != k : a_j == prediction} / 3)``:

``mode="official"``
    GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at master, commit
    a013f0043c1e2cdc995922dfe257f7149aa9af06 (2021-03-11, "Fixed processing answers bug"). Newlines and
    tabs become spaces and both sides are stripped; ONLY when the stripped answers are not all identical,
    the answers AND the prediction get the punctuation rule and then the digit/article/contraction rule;
    unanimous answers are compared raw ("Yes." != "yes"). The file is Python 2: its ``\\d`` is ASCII
    ``[0-9]``, and ``periodStrip.sub("", text, re.UNICODE)`` passes ``re.UNICODE`` (32) as the COUNT, so
    at most 32 periods are removed. Case and whitespace follow Python 3's ``str`` (Python 2's differ only for
    characters whose Unicode properties changed after Unicode 5.2, such as U+180E).
``mode="official-2016"``
    The same file before the 2021 fix, commit 458a8b268b1a239dc388e0af4423f3fe7477b04f (2016-10-08; still
    copied by many evaluation scripts): the prediction is always cleaned and fully normalised; the human
    answers are not cleaned at all and, only when they are not all identical, get the punctuation rule
    alone.
``mode="lmms-eval"``
    EvolvingLMMs-Lab/lmms-eval at commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3: the prediction is
    first stripped (``ConfigurableTask.process_results``, ``lmms_eval/api/task.py``). With
    ``lowercase_strip=True`` (TextVQA, OK-VQA, VizWiz: ``lmms_eval/tasks/{textvqa,ok_vqa,vizwiz_vqa}/
    utils.py``) both sides go through the whole ``EvalAIAnswerProcessor``
    (``lmms_eval/tasks/_task_utils/vqa_eval_metric.py``): lowercase, delete "," and "?", split "'s" into
    " 's", strip, newlines/tabs, punctuation, digits/articles. Without it (VQAv2,
    ``lmms_eval/tasks/vqav2/utils.py``): newlines/tabs, strip, then punctuation and digits/articles on
    both sides, always. Its punctuation rule differs from the official one: the comma test is
    ``(?<=\\d)(,)+(?=\\d)`` (runs of commas) and ``\\d`` is Unicode (Python 3); the 32-period limit is the
    same. The per-question mean is ``statistics.mean``. LLaVA's ``llava/eval/m4c_evaluator.py``
    (haotian-liu/LLaVA c121f0432da27facab705978f83c4ada465e46fd), used for LLaVA-1.5's TextVQA, applies the
    same processor to both sides, so ``lowercase_strip=True`` reproduces it as well (up to the last bit of
    the mean, which LLaVA takes as ``sum / len``).

VizWiz (:func:`vizwiz_accuracy`), ``mode="official"``: the vizwiz.org VQA evaluation ``vqaEval.py`` (Qing
Li's, Python 3; distributed from https://vizwiz.org/tasks-and-datasets/vqa/, no public commit): only the
prediction is cleaned and normalised (Unicode ``\\d``, single-comma test, and the contraction table of
2015 with typographic apostrophes, :data:`CONTRACTIONS_2015`), the answers are compared raw.
``mode="lmms-eval"``: ``lmms_eval/tasks/vizwiz_vqa/utils.py``, as TextVQA.

GQA (:func:`gqa_exact_match`): ``official`` = the GQA ``eval.py`` (nlp.stanford.edu/data/gqa/eval.zip,
no public commit): ``predicted == gold``, raw. ``llava`` = LLaVA-1.5's pipeline (c121f04): the runner
strips the output (``llava/eval/model_vqa_loader.py``), ``scripts/convert_gqa_for_eval.py`` does
``rstrip('.').lower()``, then the official ``eval.py``. ``lmms-eval`` = ``lmms_eval/tasks/gqa/gqa.yaml``
(``ignore_case``, ``ignore_punctuation``) through ``exact_match_hf_evaluate`` in ``lmms_eval/api/metrics.py``:
the prediction is stripped by the harness, the answer never; both are lowercased and lose
``string.punctuation`` with numpy's string functions (which drop trailing NULs and keep the input width).

ANLS (:func:`anls`, DocVQA): ``official`` = the definition (Biten et al. 2019; Mathew et al. 2021):
``1 - Lev(a, o) / max(|a|, |o|)`` on lowercased, whitespace-collapsed strings, 0 when that distance is
>= 0.5; best reference. ``lmms-eval`` = ``anls`` in ``lmms_eval/api/metrics.py``: the harness strips the
prediction; the distance is taken on stripped, lowercased, whitespace-collapsed strings but the length is
``max(len(answer.upper()), len(prediction.upper()))`` of the uncollapsed strings, and ``1 - min(NL)`` is kept
when >= 0.5 (exactly 0.5 survives). This is also the docvqa.org script (``infographicsvqa_eval.py``, copied
in QwenLM/Qwen-VL e6bbb9dd9e9fc44a4498d372e83b3b172dc1d808) for predictions without surrounding whitespace.

Visual-CoT (:func:`exact_match`, :func:`token_f1`): the SQuAD v1.1 ``evaluate-v1.1.py`` (copy at
seominjoon/denspi 51915f65b9e5345cbd3dee8af2dc02eeb1cb43dd): ``normalize_answer`` = lowercase, drop
``string.punctuation``, ``re.sub(r"\\b(a|an|the)\\b", " ")`` (word boundaries, not tokens), collapse
whitespace; EM and F1 are the maximum over the references, and F1 is 0 when no token is shared (also
when both sides are empty). Note: VEA's own tables were scored with the ``qa_metrics`` package
(``em_match``: containment after normalisation; set-based lemmatised F1), which these functions do not
reproduce; see docs/evaluation.md.

Every function given a list of references refuses an empty one (ValueError) instead of scoring it 0.
"""

from __future__ import annotations

import re
import statistics
import string
from collections import Counter
from collections.abc import Sequence
from typing import Literal

Mode = Literal["official", "official-2016", "lmms-eval"]
GQAMode = Literal["official", "official-2016", "llava", "lmms-eval"]
MODES: tuple[str, ...] = ("official", "official-2016", "lmms-eval")

CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
# vizwiz.org's vqaEval.py carries the VQA table from before GT-Vision-Lab/VQA 458a8b2 ("fixed the apostrophe
# symbol issue", 2016-10-08; the table of 14a5e12817514488a6317504e0fccc233cefe275): typographic apostrophes
# (U+2019) everywhere except in these entries.
_STRAIGHT_KEYS_2015 = {"couldn'tve", "hadn'tve"}
_STRAIGHT_VALUES_2015 = {"aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove"}
CONTRACTIONS_2015 = {
    (k if k in _STRAIGHT_KEYS_2015 else k.replace("'", "\u2019")): (
        v if k in _STRAIGHT_VALUES_2015 else v.replace("'", "\u2019")
    )
    for k, v in CONTRACTIONS.items()
}
ARTICLES = {"a", "an", "the"}
PUNCT = [
    ";",
    r"/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
# The period regex of all three files: a malformed look-behind ("(?!<=\d)"), so it removes every period
# not followed by a digit. Python 2 (the official file) has an ASCII \d; Python 3 files a Unicode one.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
_PERIOD_STRIP_PY3 = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP_PY3 = re.compile(r"(\d)(,)(\d)")
_COMMA_RUNS_PY3 = re.compile(r"(?<=\d)(,)+(?=\d)")  # lmms-eval / MMF: runs of commas
# ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in the count argument.
_PERIOD_COUNT = int(re.UNICODE)  # 32

Flavour = Literal["official", "lmms-eval", "vizwiz"]
_RULES: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "official": (COMMA_STRIP, PERIOD_STRIP),
    "lmms-eval": (_COMMA_RUNS_PY3, _PERIOD_STRIP_PY3),
    "vizwiz": (_COMMA_STRIP_PY3, _PERIOD_STRIP_PY3),
}


def process_punctuation(text: str, flavour: Flavour = "official") -> str:
    """The punctuation rule: a mark next to a space (or any mark, when the text has a digit-comma-digit)
    is deleted, else it becomes a space; then at most 32 periods not followed by a digit are removed.

    ``flavour``: "official" (GT-Vision-Lab vqaEval.py, Python 2: ASCII digits), "lmms-eval" (comma runs,
    Unicode digits) or "vizwiz" (vizwiz.org vqaEval.py, Python 3: Unicode digits).
    """
    if flavour not in _RULES:
        raise ValueError(f"flavour must be one of {', '.join(_RULES)}; got {flavour!r}")
    comma, period = _RULES[flavour]
    strip_all = comma.search(text) is not None
    out = text
    for p in PUNCT:
        deleted = p + " " in text or " " + p in text or strip_all
        out = out.replace(p, "" if deleted else " ")
    return period.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str, contractions: dict[str, str] = CONTRACTIONS) -> str:
    """Lowercase, split on whitespace, number words -> digits, drop articles, expand contractions
    (``contractions``: the current table; VizWiz's file uses :data:`CONTRACTIONS_2015`)."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [contractions.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_vqa(text: str) -> str:
    """The official file's full normalisation of one string: clean, punctuation, digits/articles."""
    return process_digit_article(process_punctuation(_clean(text)))


def eval_ai_answer_processor(text: str) -> str:
    """lmms-eval's (and LLaVA's / MMF's) ``EvalAIAnswerProcessor.__call__``."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = _clean(text)
    return process_digit_article(process_punctuation(text, "lmms-eval"))


def _require_references(answers: Sequence[str], what: str = "answers") -> None:
    if isinstance(answers, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    if len(answers) == 0:
        raise ValueError(f"no reference {what}: a sample needs at least one to be scored")


def _vqa_score(pred: str, gts: Sequence[str], mean: Literal["float", "statistics"] = "float") -> float:
    accs = []
    for k in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != k and a == pred)
        accs.append(min(1, float(matches) / 3))
    if mean == "statistics":
        return float(statistics.mean(accs))
    return float(sum(accs)) / len(accs)


def vqa_accuracy(
    prediction: str, answers: Sequence[str], mode: Mode = "official", lowercase_strip: bool = False
) -> float:
    """VQA accuracy of one prediction against the human answers (see the module docstring).

    ``lowercase_strip`` (lmms-eval only): run lmms-eval's whole ``EvalAIAnswerProcessor`` on both sides, as
    its TextVQA, OK-VQA and VizWiz tasks do (lowercase, drop "," and "?", split "'s", ...); without it, the
    VQAv2 task's rule. Ignored by the official modes.
    """
    _require_references(answers)
    if mode == "official":
        pred = _clean(prediction)
        gts = [_clean(a) for a in answers]
        if len(set(gts)) > 1:
            gts = [normalize_vqa(a) for a in gts]
            pred = normalize_vqa(pred)
        return _vqa_score(pred, gts)
    if mode == "official-2016":
        pred = normalize_vqa(prediction)
        gts = list(answers)
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
        return _vqa_score(pred, gts)
    if mode != "lmms-eval":
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    prediction = prediction.strip()  # the harness, before any task's process_results
    if lowercase_strip:
        return _vqa_score(
            eval_ai_answer_processor(prediction),
            [eval_ai_answer_processor(a) for a in answers],
            mean="statistics",
        )

    def norm(s: str) -> str:
        return process_digit_article(process_punctuation(_clean(s), "lmms-eval"))

    return _vqa_score(norm(prediction), [norm(a) for a in answers], mean="statistics")


def vizwiz_accuracy(prediction: str, answers: Sequence[str], mode: Mode = "official") -> float:
    """VizWiz: VQA accuracy with "unanswerable" as an answer.

    "official" (and "official-2016", the same single scorer): vizwiz.org ``vqaEval.py``, only the prediction
    is cleaned and normalised; "lmms-eval": ``lmms_eval/tasks/vizwiz_vqa/utils.py``.
    """
    _require_references(answers)
    if mode == "lmms-eval":
        return vqa_accuracy(prediction, answers, mode, lowercase_strip=True)
    if mode not in ("official", "official-2016"):
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    pred = process_digit_article(process_punctuation(_clean(prediction), "vizwiz"), CONTRACTIONS_2015)
    return _vqa_score(pred, list(answers))


_ASCII_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def _numpy_lower_nopunct(text: str) -> str:
    """``np.char.translate(np.char.lower(np.asarray([text])), table)[0]`` without numpy: the array keeps
    ``len(text)`` characters (a longer lowercase, e.g. of "İ", is cut) and drops trailing NULs."""
    width = len(text)
    text = text.rstrip("\x00").lower()[:width].rstrip("\x00")
    return text.translate(_ASCII_PUNCT_TABLE).rstrip("\x00")


def gqa_exact_match(prediction: str, answer: str, mode: GQAMode = "official") -> float:
    """GQA: exact match under the chosen scorer (see the module docstring)."""
    if mode in ("official", "official-2016"):
        return float(prediction == answer)
    if mode == "llava":
        return float(prediction.strip().rstrip(".").lower() == answer)
    if mode == "lmms-eval":
        return float(_numpy_lower_nopunct(prediction.strip()) == _numpy_lower_nopunct(answer))
    raise ValueError(f"GQA mode must be official, official-2016, llava or lmms-eval; got {mode!r}")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5, mode: Mode = "official") -> float:
    """ANLS of one prediction (DocVQA): the best reference's score (see the module docstring).

    "official" (and "official-2016"): the definition; "lmms-eval": lmms-eval's ``anls``.
    """
    _require_references(answers)
    if mode in ("official", "official-2016"):
        best = 0.0
        o = " ".join(prediction.lower().split())
        for answer in answers:
            a = " ".join(answer.lower().split())
            length = max(len(a), len(o))
            nl = levenshtein(a, o) / length if length else 0.0
            best = max(best, 1.0 - nl if nl < threshold else 0.0)
        return best
    if mode != "lmms-eval":
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    pred = prediction.strip()  # the harness
    det = " ".join(pred.strip().lower().split())
    values = []
    for answer in answers:
        gt = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else float(levenshtein(gt, det)) / float(length))
    result = 1 - min(values)
    return 0.0 if result < threshold else float(result)


_SQUAD_PUNCT = set(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lowercase, drop punctuation, articles on word boundaries, spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD v1.1 exact match: 1 if the normalised prediction equals any normalised reference."""
    _require_references(answers)
    pred = squad_normalize(prediction)
    return float(any(pred == squad_normalize(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD v1.1 token F1 against the best reference (0 when no token is shared, even if both are empty)."""
    _require_references(answers)
    pred = squad_normalize(prediction).split()
    best = 0.0
    for answer in answers:
        ref = squad_normalize(answer).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common == 0:
            continue
        p, r = 1.0 * common / len(pred), 1.0 * common / len(ref)
        best = max(best, (2 * p * r) / (p + r))
    return best
