"""DocVQA: ``val_v1.0.json`` ({"data": [{questionId, question, image, answers}]}), images relative to
``image_root`` (default: beside the file), or an lmms-lab parquet export. Metric: ANLS; 32 new tokens."""

from __future__ import annotations

from pathlib import Path

from ..metrics.vqa import anls
from .base import Sample, Task, answer_strings, read_rows, register_task, require, samples_from_parquet


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.suffix == ".parquet":
        return samples_from_parquet(path, ("questionId", "question_id", "id"), ("answers",))
    root = image_root or path.parent
    out = []
    for i, rec in enumerate(read_rows(path)):
        require(rec, ("questionId", "question", "image", "answers"), path, i)
        out.append(
            Sample(
                id=str(rec["questionId"]),
                question=rec["question"],
                answers=answer_strings(rec["answers"], path, i),
                image=root / rec["image"],
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {"anls": anls(prediction, sample.answers, mode=mode)}  # type: ignore[arg-type]


register_task(Task("docvqa", load, score, "anls", max_new_tokens=32, description="DocVQA (ANLS)"))
