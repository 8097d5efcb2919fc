"""VQAv2: official question + annotation JSON and a COCO image folder, or an lmms-lab parquet export.

``--data`` is the questions file (``v2_OpenEnded_mscoco_val2014_questions.json``); the annotations are
``--annotations`` or found beside it (``*_annotations.json`` with the same split); images are
``{image_root}/COCO_{data_subtype}_{image_id:012d}.jpg``. Metric: VQA accuracy.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.vqa import vqa_accuracy
from .base import (
    Sample,
    Task,
    answer_strings,
    read_json,
    records_under,
    register_task,
    require,
    samples_from_parquet,
)


def find_annotations(questions: Path) -> Path:
    name = questions.name.replace("OpenEnded_", "").replace("_questions", "_annotations")
    for candidate in (
        questions.with_name(name),
        questions.with_name(questions.name.replace("questions", "annotations")),
    ):
        if candidate.exists() and candidate != questions:
            return candidate
    raise DataError(f"no annotation file found beside {questions} (expected {name})")


def load_vqa_format(path: Path, image_root: Path | None, prefix: str = "COCO") -> list[Sample]:
    if path.suffix == ".parquet":
        return samples_from_parquet(path, ("question_id", "id"), ("answers",))
    questions = read_json(path)
    question_list = records_under(questions, "questions", path)
    annotations_path = find_annotations(path)
    annotation_list = records_under(read_json(annotations_path), "annotations", annotations_path)
    subtype = questions.get("data_subtype", "val2014")
    root = image_root or path.parent / subtype
    by_id = {}
    for i, ann in enumerate(annotation_list):
        require(ann, ("question_id", "answers"), path, i)
        by_id[ann["question_id"]] = ann
    out = []
    for i, q in enumerate(question_list):
        require(q, ("question_id", "question", "image_id"), path, i)
        ann = by_id.get(q["question_id"])
        if ann is None:
            raise DataError(f"{path}: question {q['question_id']} has no annotation")
        image = root / f"{prefix}_{subtype}_{int(q['image_id']):012d}.jpg"
        out.append(
            Sample(
                id=str(q["question_id"]),
                question=q["question"],
                answers=answer_strings(ann["answers"], path, i),
                image=image,
                meta={"answer_type": ann.get("answer_type"), "question_type": ann.get("question_type")},
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {"vqa_accuracy": vqa_accuracy(prediction, sample.answers, mode)}  # type: ignore[arg-type]


register_task(
    Task(
        "vqav2",
        load_vqa_format,
        score,
        "vqa_accuracy",
        description="VQAv2 (VQA accuracy)",
        modes=("official", "official-2016", "lmms-eval"),
    )
)
