"""AMBER's discriminative part (Wang et al., 2023): a query file (``query_discriminative.json``, or any
of the ``query_*.json``: a list of ``{"id", "image", "query"}``) with AMBER's ``annotations.json`` beside
it or one folder up (each id's ``type`` and ``truth``), images under ``--image-root`` (default: ``image/``
beside the query file). Generative queries (captions) are left out: they need AMBER's CHAIR-style scorer.

Per question: accuracy; over the corpus and per dimension (existence, attribute, relation): accuracy,
precision, recall and F1 with "no" as the positive class, as AMBER's ``inference.py`` computes them
(``metrics/yesno.py``). Modes: ``official`` (the answer must be exactly "Yes" or "No") and
``vlmevalkit`` (yes / no by word set).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.yesno import AMBER_MODES, amber_metrics, amber_scores
from .base import Sample, Task, read_json, register_task, require


def _annotations(path: Path) -> Path:
    for candidate in (path.parent / "annotations.json", path.parent.parent / "annotations.json"):
        if candidate.exists():
            return candidate
    raise DataError(f"{path}: AMBER's annotations.json is neither beside it nor one folder up")


def load(path: Path, image_root: Path | None) -> list[Sample]:
    queries = read_json(path)
    if not isinstance(queries, list):
        raise DataError(f"{path}: expected AMBER's list of queries")
    notes = read_json(_annotations(path))
    if not isinstance(notes, list):
        raise DataError(f"{path}: annotations.json is not AMBER's list of annotations")
    by_id = {int(n["id"]): n for n in notes if isinstance(n, dict) and "id" in n}
    root = image_root or path.parent / "image"
    out = []
    for i, q in enumerate(queries):
        require(q, ("id", "image", "query"), path, i)
        note = by_id.get(int(q["id"]))
        if note is None:
            raise DataError(f"{path}: query {q['id']} has no annotation")
        kind = str(note.get("type", ""))
        if kind == "generative":
            continue
        truth = str(note.get("truth", "")).strip().lower()
        if truth not in ("yes", "no"):
            raise DataError(f"{path}: query {q['id']} has truth {note.get('truth')!r}, not yes or no")
        out.append(
            Sample(
                id=str(q["id"]),
                question=q["query"],
                answers=(truth,),
                image=root / q["image"],
                meta={"type": kind},
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return amber_scores(prediction, sample.answers[0], sample.meta["type"], mode)


register_task(
    Task(
        "amber",
        load,
        score,
        "accuracy",
        prompt_suffix="",  # AMBER's queries are asked as they are
        description="AMBER discriminative (accuracy, precision, recall, F1; existence, attribute, relation)",
        modes=AMBER_MODES,
        aggregate=amber_metrics,
    )
)
