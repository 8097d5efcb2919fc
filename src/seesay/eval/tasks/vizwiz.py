"""VizWiz-VQA: ``val.json`` (a list of {image, question, answers: [{answer, answer_confidence}]}) and
``{image_root}/{image}``, or a parquet export. Metric: VQA accuracy with "unanswerable" as an answer."""

from __future__ import annotations

from pathlib import Path

from ..metrics.vqa import vizwiz_accuracy
from .base import Sample, Task, answer_strings, read_rows, register_task, require, samples_from_parquet

SUFFIX = (
    "\nWhen the provided information is insufficient, respond with 'Unanswerable'."
    "\nAnswer the question using a single word or phrase."
)


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.suffix == ".parquet":
        return samples_from_parquet(path, ("question_id", "id", "image"), ("answers",))
    root = image_root or path.parent / "val"
    out = []
    for i, rec in enumerate(read_rows(path)):
        require(rec, ("image", "question", "answers"), path, i)
        out.append(
            Sample(
                id=str(rec.get("question_id", rec["image"])),
                question=rec["question"],
                answers=answer_strings(rec["answers"], path, i),
                image=root / rec["image"],
                meta={"answerable": rec.get("answerable")},
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {"vqa_accuracy": vizwiz_accuracy(prediction, sample.answers, mode)}  # type: ignore[arg-type]


register_task(
    Task("vizwiz", load, score, "vqa_accuracy", prompt_suffix=SUFFIX, description="VizWiz (VQA accuracy)")
)
