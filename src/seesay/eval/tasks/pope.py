"""POPE: the official question files (``coco_pope_{random,popular,adversarial}.json``, one JSON line
per question: ``question_id``, ``image``, ``text``, ``label``; COCO val2014 images under
``--image-root``), the synthetic POPE of :mod:`seesay.demo.synthetic_pope` (same format, images beside it),
or lmms-lab/POPE's parquet export (``question_id``, ``question``, ``answer``, ``image``, ``category``).

Per question: ``accuracy`` (0/1) and the yes/no bookkeeping; over the corpus: accuracy, precision,
recall, F1 and yes ratio (``metrics/yesno.py``). Metric modes = answer extraction: ``official`` (POPE's
script: a negation word anywhere in the first sentence means "no"), ``lmms-eval`` (the exact word),
``vlmevalkit`` (the word set).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.yesno import MODES, pope_metrics, yes_no_scores
from .base import Sample, Task, read_rows, register_task, require, samples_from_parquet


def _label(value: object, path: Path, index: int | str) -> str:
    label = str(value).strip().lower()
    if label not in ("yes", "no"):
        raise DataError(f"{path}: record {index} has label {value!r}, not 'yes' or 'no'")
    return label


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.suffix == ".parquet":
        samples = samples_from_parquet(path, ("question_id", "id"), ("answer", "label"))
        for i, s in enumerate(samples):
            _label(s.answers[0], path, i)
        return samples
    root = image_root or path.parent
    out = []
    for i, rec in enumerate(read_rows(path)):
        require(rec, ("question_id", "image", "text", "label"), path, i)
        meta = {"object": rec["object"]} if "object" in rec else {}
        if isinstance(rec.get("boxes"), list):
            meta["boxes"] = [list(b) for b in rec["boxes"]]
        out.append(
            Sample(
                id=str(rec["question_id"]),
                question=rec["text"],
                answers=(_label(rec["label"], path, i),),
                image=root / rec["image"],
                meta=meta,
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return yes_no_scores(prediction, sample.answers[0], mode)


register_task(
    Task(
        "pope",
        load,
        score,
        "accuracy",
        description="POPE object hallucination (accuracy, precision, recall, F1, yes ratio)",
        modes=MODES,
        aggregate=lambda rows: pope_metrics(r["score"] for r in rows),
    )
)
