"""VEA's answer rules for Visual-CoT (``--metric-mode vea``), offline.

The VEA reference (ZhiningLiu1998/VEA c03e995c3c8d444a6e0835a0fdb023f6cbffd4c1, ``vea/metrics.py``)
scores answers with the ``qa-metrics`` package (0.2.42: ``em_match``, ``f1_match``,
``f1_score_with_precision_recall``). Its rules, re-implemented here:

* ``normalize(x)`` (qa-metrics ``normalize_answer``): lowercase; drop every Unicode punctuation character
  (category ``P*``); collapse spaces; drop ASCII punctuation and the articles a / an / the (word
  boundaries); collapse spaces; ``’`` -> ``'``; strip.
* **em**: 1 if some reference, ``remove_punctuation(normalize(ref))``, is a *substring* of the prediction's
  (so "red" matches "the car is red", and also "bored"); 0 for an empty prediction.
* **f1**: over *sets* of lemmatised words of ``normalize(x)``, against the best reference:
  ``tp = |R & C|``, ``f1 = 2 tp / (|R| + |C|)``; **f1m** = 1 if that f1 > 0.5.

The one difference: qa-metrics lemmatises with WordNet, each word tagged alone by nltk's perceptron
tagger, and downloads both at import. seesay uses ``lemminflect``'s tables (shipped in its wheel), each
word's part of speech chosen as the tagger mostly does for a lone word: the only one the word can take,
else a verb for ``-ing`` / ``-ed`` forms, else a noun, verb, adjective, adverb (the first it can take);
of several lemmas, the shortest. Plurals and regular verb forms agree with WordNet; a word the tagger would
call an adjective though it can be a noun ("better") may differ (tests/test_metrics_vea.py lists cases).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from .vqa import _require_references

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = set(string.punctuation)
_POS_ORDER = ("NOUN", "VERB", "ADJ", "ADV", "AUX")


def _remove_punctuation(text: str) -> str:
    """qa-metrics ``remove_punctuation`` / ``fix_answer``: lower, ASCII punctuation, articles, spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize(text: str) -> str:
    """qa-metrics ``normalize_answer``."""
    text = "".join(ch for ch in str(text).lower() if not unicodedata.category(ch).startswith("P"))
    return _remove_punctuation(" ".join(text.split())).replace("\u2019", "'").strip().lower()


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """The word's lemma (see the module docstring for how its part of speech is chosen)."""
    from lemminflect import getAllLemmas

    options = getAllLemmas(word)
    if not options:
        return word
    if len(options) == 1:
        pos = next(iter(options))
    elif word.endswith(("ing", "ed")) and "VERB" in options:
        pos = "VERB"
    else:
        pos = next((p for p in _POS_ORDER if p in options), next(iter(options)))
    lemmas = options[pos]
    return min(lemmas, key=len) if lemmas else word


def _words(text: str) -> set[str]:
    return {lemma(w) for w in normalize(text).split()}


def vea_exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1 if a normalised reference is contained in the normalised prediction (qa-metrics ``em_match``)."""
    _require_references(answers)
    if not prediction:
        return 0.0
    pred = _remove_punctuation(normalize(prediction))
    return float(any(_remove_punctuation(normalize(a)) in pred for a in answers))


def vea_f1(prediction: str, reference: str) -> float:
    """F1 over the sets of lemmatised words (qa-metrics ``f1_score_with_precision_recall``)."""
    ref, pred = _words(reference), _words(prediction)
    tp = len(ref & pred)
    return 2 * tp / (len(ref) + len(pred)) if tp else 0.0


def vea_scores(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """VEA's ``score_answer``: em over all references; f1 and f1m (f1 > 0.5) of the best reference."""
    _require_references(answers)
    f1 = max(vea_f1(prediction, a) for a in answers)
    return {"exact_match": vea_exact_match(prediction, answers), "token_f1": f1, "f1_match": float(f1 > 0.5)}
