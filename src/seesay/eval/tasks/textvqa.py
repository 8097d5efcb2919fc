"""TextVQA: ``TextVQA_0.5.1_val.json`` ({"data": [{question_id, question, image_id, answers}]}) and
``{image_root}/{image_id}.jpg``, or an lmms-lab parquet export. Metric: VQA accuracy."""

from __future__ import annotations

from pathlib import Path

from ..metrics.vqa import vqa_accuracy
from .base import Sample, Task, answer_strings, read_rows, register_task, require, samples_from_parquet


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.suffix == ".parquet":
        return samples_from_parquet(path, ("question_id", "id"), ("answers",))
    root = image_root or path.parent / "train_images"
    out = []
    for i, rec in enumerate(read_rows(path)):
        require(rec, ("question_id", "question", "image_id", "answers"), path, i)
        out.append(
            Sample(
                id=str(rec["question_id"]),
                question=rec["question"],
                answers=answer_strings(rec["answers"], path, i),
                image=root / f"{rec['image_id']}.jpg",
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {
        "vqa_accuracy": vqa_accuracy(prediction, sample.answers, mode, lowercase_strip=mode == "lmms-eval")
    }  # type: ignore[arg-type]


register_task(
    Task(
        "textvqa",
        load,
        score,
        "vqa_accuracy",
        description="TextVQA (VQA accuracy)",
        modes=("official", "official-2016", "lmms-eval"),
    )
)
