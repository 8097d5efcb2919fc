"""CHAIR (Rohrbach et al., EMNLP 2018): object hallucination in captions, offline.

A caption's MSCOCO objects are found as the paper's ``chair.py`` finds them: lower-case, split into
words, singular nouns, two-word names joined ("hot dog", "baby bird" -> "bird", "passenger jet" ->
"jet", "toilet seat" -> "toilet"), "seat" dropped when "toilet" is present, then every word of the
synonym list (``data/chair_synonyms.txt``, the paper's ``synonyms.txt``) mapped to its category (its
*node word*). An image's ground truth is the categories of its MSCOCO instance annotations plus those
its reference captions mention. Over a set of captions, with m = object mentions, h = mentions whose
category is not in the image's ground truth:

    CHAIR_i = sum(h) / sum(m)        CHAIR_s = #(captions with h > 0) / #captions

Both count every mention (a hallucinated word said twice counts twice), as the paper's code does.
``recall`` (our addition, as OPERA and later papers report it) = ground-truth categories named /
ground-truth categories, summed over captions.

Two choices differ from the paper's code, both offline and documented in docs/evaluation.md:

* words: the code uses NLTK's ``word_tokenize`` (which needs a downloaded model) and pattern.en's
  ``singularize``; seesay takes runs of letters and digits with inner hyphens (NLTK keeps "hot-dog"
  one token; an apostrophe splits, so "dog's" gives dog, as NLTK's "'s" does), and singularizes with
  ``lemminflect``'s noun lemma, keeping a word that is already in the synonym list;
* the list is read as the code reads it (each line split on ", "), so the entries that follow a double
  space (" motor bike", " cheesecake") and "iPhone" (captions are lower-cased) never match, as there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import DataError

# Two-word names taken as one word (the paper's ``coco_double_words``), then its qualifier rules.
DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat",
    "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear",
    "hair drier", "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate",
    "train track",
)  # fmt: skip
# "baby bird" / "adult bird" is a bird, not a person; "passenger jet" a jet, not a person.
ANIMAL_WORDS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
                "animal", "cub")  # fmt: skip
VEHICLE_WORDS = ("jet", "train")
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # apostrophes split ("dog's" -> dog, s), as NLTK's


@cache
def synonyms() -> dict[str, str]:
    """Every word of the synonym list -> its MSCOCO category (the first word of its line)."""
    text = resources.files("seesay.eval.metrics").joinpath("data/chair_synonyms.txt").read_text()
    inverse: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        names = line.strip().split(", ")  # as the paper's code splits (" motor bike" keeps its space)
        for name in names:
            inverse[name] = names[0]
    return inverse


@cache
def double_words() -> dict[str, str]:
    """Two-word phrase -> the word it counts as (the paper's ``double_word_dict``)."""
    table = {w: w for w in DOUBLE_WORDS}
    for animal in ANIMAL_WORDS:
        table[f"baby {animal}"] = animal
        table[f"adult {animal}"] = animal
    for vehicle in VEHICLE_WORDS:
        table[f"passenger {vehicle}"] = vehicle
    table["bow tie"] = "tie"
    table["toilet seat"] = "toilet"
    table["wine glas"] = "wine glass"  # pattern.en's singular of "glass" in the paper's code
    return table


@cache
def _vocabulary() -> frozenset[str]:
    words = set(synonyms())
    for phrase in double_words():
        words.update(phrase.split())
    return frozenset(words)


@cache
def singular(word: str) -> str:
    """The word itself when the synonym list or a two-word name has it, else its singular noun."""
    if word in _vocabulary():
        return word
    from lemminflect import getLemma

    lemmas = getLemma(word, upos="NOUN")
    return lemmas[0] if lemmas else word


@dataclass(frozen=True)
class Mention:
    """One object word of a caption: the word (after joining two-word names), its category, its index
    among the caption's words."""

    word: str
    category: str
    index: int


def caption_objects(caption: str) -> list[Mention]:
    """The MSCOCO object mentions of ``caption``, in order (see the module docstring)."""
    words = [singular(w) for w in _WORD.findall(caption.lower())]
    joined: list[str] = []
    table = double_words()
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in table:
            joined.append(table[pair])
            i += 2
        else:
            joined.append(words[i])
            i += 1
    if "toilet" in joined and "seat" in joined:  # "the seat of the toilet" is no chair
        joined = [w for w in joined if w != "seat"]
    inverse = synonyms()
    return [Mention(w, inverse[w], i) for i, w in enumerate(joined) if w in inverse]


def categories(names: Iterable[str]) -> set[str]:
    """Object names (MSCOCO categories or any word of the synonym list) -> their categories."""
    inverse = synonyms()
    out = set()
    for name in names:
        key = str(name).strip().lower()
        if key not in inverse:
            key = singular(key)
        if key not in inverse:
            raise DataError(f"{name!r} is not an MSCOCO object name of CHAIR's synonym list")
        out.add(inverse[key])
    return out


@dataclass
class CaptionScore:
    """One caption's CHAIR bookkeeping."""

    image_id: str
    caption: str
    mentions: list[Mention]
    hallucinated: list[Mention]
    ground_truth: set[str] = field(default_factory=set)

    @property
    def covered(self) -> set[str]:
        return {m.category for m in self.mentions} & self.ground_truth

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "caption": self.caption,
            "mscoco_generated_words": [(m.word, m.category) for m in self.mentions],
            "mscoco_hallucinated_words": [(m.word, m.category) for m in self.hallucinated],
            "mscoco_gt_words": sorted(self.ground_truth),
            "metrics": {
                "CHAIRs": float(bool(self.hallucinated)),
                "CHAIRi": len(self.hallucinated) / len(self.mentions) if self.mentions else 0.0,
            },
        }


def score_caption(caption: str, ground_truth: set[str], image_id: str = "") -> CaptionScore:
    """The mentions of ``caption`` and those whose category is not in ``ground_truth`` (categories)."""
    mentions = caption_objects(caption)
    wrong = [m for m in mentions if m.category not in ground_truth]
    return CaptionScore(str(image_id), caption, mentions, wrong, set(ground_truth))


def chair_metrics(scores: Sequence[CaptionScore]) -> dict[str, float]:
    """CHAIR_s, CHAIR_i and recall over ``scores`` (module docstring); 0 where a denominator is 0."""
    mentions = sum(len(s.mentions) for s in scores)
    wrong = sum(len(s.hallucinated) for s in scores)
    truth = sum(len(s.ground_truth) for s in scores)
    return {
        "chair_s": sum(bool(s.hallucinated) for s in scores) / len(scores) if scores else 0.0,
        "chair_i": wrong / mentions if mentions else 0.0,
        "recall": sum(len(s.covered) for s in scores) / truth if truth else 0.0,
        "captions": float(len(scores)),
        "mentions": float(mentions),
    }


# ---- the official file formats ---------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    """Generated captions as the paper's code reads them: a JSON list of ``{"image_id", "caption"}``
    (also JSONL), or coco-caption's evaluation output (``{"imgToEval": {id: {"image_id", "caption"}}}``).
    Returns ``(image_id, caption)`` pairs."""
    path = Path(path)
    if path.suffix == ".jsonl" and path.exists():
        records = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: line {n} is not valid JSON ({err.msg})") from err
    else:
        data = _load_json(path)
        records = list(data["imgToEval"].values()) if isinstance(data, dict) and "imgToEval" in data else data
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of {{'image_id', 'caption'}} records")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "image_id" not in rec or "caption" not in rec:
            raise DataError(f"{path}: record {i} needs 'image_id' and 'caption'")
        out.append((str(rec["image_id"]), str(rec["caption"])))
    return out


def coco_ground_truth(folder: str | Path) -> dict[str, set[str]]:
    """Per image id, its categories from MSCOCO's ``instances_*.json`` (segmentations) and the objects
    its ``captions_*.json`` mention: every such file in ``folder`` (the paper reads train2014 and
    val2014 of both)."""
    folder = Path(folder)
    instances = sorted(folder.glob("instances_*.json"))
    if not instances:
        raise DataError(f"{folder}: no MSCOCO instances_*.json (CHAIR needs the instance annotations)")
    truth: dict[str, set[str]] = {}
    for path in instances:
        data = _load_json(path)
        try:
            names = {c["id"]: c["name"] for c in data["categories"]}
            for ann in data["annotations"]:
                truth.setdefault(str(ann["image_id"]), set()).update(categories([names[ann["category_id"]]]))
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: not an MSCOCO instances file ({err!s} missing)") from err
    for path in sorted(folder.glob("captions_*.json")):
        data = _load_json(path)
        try:
            for ann in data["annotations"]:
                found = {m.category for m in caption_objects(ann["caption"])}
                truth.setdefault(str(ann["image_id"]), set()).update(found)
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: not an MSCOCO captions file ({err!s} missing)") from err
    return truth


def read_ground_truth(path: str | Path) -> dict[str, set[str]]:
    """Ground truth from an MSCOCO annotation folder, or a JSON file ``{image_id: [object names]}``."""
    path = Path(path)
    if path.is_dir():
        return coco_ground_truth(path)
    data = _load_json(path)
    if not isinstance(data, Mapping):
        raise DataError(f"{path}: expected {{image_id: [object names]}} or an MSCOCO annotation folder")
    return {str(k): categories(v) for k, v in data.items()}


def chair(
    captions: Sequence[tuple[str, str]], ground_truth: Mapping[str, set[str]]
) -> tuple[dict[str, float], list[CaptionScore]]:
    """CHAIR over ``(image_id, caption)`` pairs; an image id without ground truth is refused."""
    missing = sorted({i for i, _ in captions if i not in ground_truth})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} captioned image(s) have no ground-truth objects: {shown}")
    scores = [score_caption(c, ground_truth[i], i) for i, c in captions]
    return chair_metrics(scores), scores
