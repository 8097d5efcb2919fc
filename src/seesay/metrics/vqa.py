"""Answer metrics of the VQA benchmarks, in the official tools' conventions and in lmms-eval's.

VQA accuracy (VQAv2, OK-VQA, TextVQA, VizWiz), official ``vqaEval.py``: newlines and tabs become spaces;
ONLY when the human answers are not all identical, the answers are normalised by the punctuation rule and
the prediction by the punctuation rule plus digits/articles/contractions; then

    acc = mean over the 10 answers a_k of  min(1, #{j != k : a_j == prediction} / 3)

so unanimous answers are compared raw ("Yes." != "yes"). lmms-eval always normalises both sides; for
TextVQA, OK-VQA and VizWiz it also lowercases and drops "," and "?". VizWiz's official tool normalises
only the prediction.

GQA: exact match (official: equality; "llava": lowercase, strip a trailing "."; "lmms-eval": delete all
punctuation, lowercase). ANLS (DocVQA): 1 - Lev(a, o) / max(|a|, |o|) per reference on lowercased,
whitespace-collapsed strings, 0 when that distance is >= 0.5 (lmms-eval: raw lengths, keeps exactly 0.5);
best reference. VEA's tables: exact match against any reference and token F1 against the best reference
(SQuAD normalisation).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Literal

Mode = Literal["official", "lmms-eval"]

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
# The official regex: a malformed look-behind, so it strips any period not followed by a digit.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def process_punctuation(text: str) -> str:
    """The official punctuation rule: a mark next to a space (or any digit,digit text) is deleted, else it
    becomes a space; then periods not followed by a digit are removed."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out)


def process_digit_article(text: str) -> str:
    """Lowercase, number words -> digits, drop articles, expand contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def normalize_vqa(text: str) -> str:
    return process_digit_article(process_punctuation(_clean(text)))


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _vqa_score(pred: str, answers: Sequence[str]) -> float:
    scores = []
    for k in range(len(answers)):
        others = [a for j, a in enumerate(answers) if j != k]
        scores.append(min(1.0, sum(a == pred for a in others) / 3.0))
    return sum(scores) / len(scores) if scores else 0.0


def vqa_accuracy(
    prediction: str, answers: Sequence[str], mode: Mode = "official", lowercase_strip: bool = False
) -> float:
    """VQA accuracy of one prediction against the human answers (see the module docstring).

    ``lowercase_strip``: lmms-eval's extra step for TextVQA, OK-VQA and VizWiz (lowercase, drop , and ?).
    """
    pred = _clean(prediction)
    gts = [_clean(a) for a in answers]
    if mode == "official":
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
            pred = process_digit_article(process_punctuation(pred))
        return _vqa_score(pred, gts)
    if mode != "lmms-eval":
        raise ValueError(f"mode must be 'official' or 'lmms-eval', got {mode!r}")
    if lowercase_strip:
        pred = pred.lower().replace(",", "").replace("?", "")
        gts = [a.lower().replace(",", "").replace("?", "") for a in gts]
    return _vqa_score(normalize_vqa(pred), [normalize_vqa(a) for a in gts])


def vizwiz_accuracy(prediction: str, answers: Sequence[str], mode: Mode = "official") -> float:
    """VizWiz: VQA accuracy with "unanswerable" as an answer; officially only the prediction is normalised."""
    if mode == "lmms-eval":
        return vqa_accuracy(prediction, answers, mode, lowercase_strip=True)
    return _vqa_score(normalize_vqa(prediction), [_clean(a) for a in answers])


def gqa_exact_match(
    prediction: str, answer: str, mode: Literal["official", "llava", "lmms-eval"] = "official"
) -> float:
    """GQA: exact match under the chosen normalisation."""
    if mode == "official":
        return float(prediction.strip() == answer.strip())
    if mode == "llava":

        def norm(s: str) -> str:
            s = s.strip().lower()
            return s[:-1] if s.endswith(".") else s
    elif mode == "lmms-eval":

        def norm(s: str) -> str:
            return s.translate(str.maketrans("", "", string.punctuation)).strip().lower()
    else:
        raise ValueError(f"unknown GQA mode {mode!r}")
    return float(norm(prediction) == norm(answer))


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
    """Average normalised Levenshtein similarity of one prediction: the best reference's score."""
    best = 0.0
    for answer in answers:
        if mode == "official":
            a, o = " ".join(answer.lower().split()), " ".join(prediction.lower().split())
        else:
            a, o = answer.strip().lower(), prediction.strip().lower()
        length = max(len(a), len(o))
        nl = levenshtein(a, o) / length if length else 0.0
        keep = nl < threshold if mode == "official" else nl <= threshold
        best = max(best, 1.0 - nl if keep else 0.0)
    return best


def _squad_tokens(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in ARTICLES]


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1 if the normalised prediction equals any normalised reference."""
    pred = " ".join(_squad_tokens(prediction))
    return float(any(pred == " ".join(_squad_tokens(a)) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Token-overlap F1 against the best reference (SQuAD normalisation)."""
    pred = _squad_tokens(prediction)
    best = 0.0
    for answer in answers:
        ref = _squad_tokens(answer)
        if not pred or not ref:
            best = max(best, float(pred == ref))
            continue
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best
