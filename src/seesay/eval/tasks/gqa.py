"""GQA: the balanced questions JSON ({qid: {imageId, question, answer, ...}}, e.g. testdev_balanced) and
``{image_root}/{imageId}.jpg``. Metric: exact match ("official" equality; "lmms-eval" drops punctuation
and case)."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.vqa import gqa_exact_match
from .base import Sample, Task, read_json, register_task, require, samples_from_parquet


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.suffix == ".parquet":
        return samples_from_parquet(path, ("question_id", "id"), ("answer", "answers"))
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: GQA questions must be an object keyed by question id")
    root = image_root or path.parent / "images"
    out = []
    for qid, rec in data.items():
        require(rec, ("imageId", "question", "answer"), path, qid)
        out.append(
            Sample(
                id=str(qid),
                question=rec["question"],
                answers=(rec["answer"],),
                image=root / f"{rec['imageId']}.jpg",
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {"exact_match": gqa_exact_match(prediction, sample.answers[0], mode)}  # type: ignore[arg-type]


register_task(
    Task(
        "gqa",
        load,
        score,
        "exact_match",
        description="GQA (exact match)",
        modes=("official", "lmms-eval", "llava"),
    )
)
