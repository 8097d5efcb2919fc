"""OK-VQA: the VQAv2 file format (questions + annotations JSON, COCO images). Metric: VQA accuracy;
lmms-eval also lowercases and drops "," and "?"."""

from __future__ import annotations

from ..metrics.vqa import vqa_accuracy
from .base import Sample, Task, register_task
from .vqav2 import load_vqa_format


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {
        "vqa_accuracy": vqa_accuracy(prediction, sample.answers, mode, lowercase_strip=mode == "lmms-eval")
    }  # type: ignore[arg-type]


register_task(
    Task(
        "okvqa",
        load_vqa_format,
        score,
        "vqa_accuracy",
        description="OK-VQA (VQA accuracy)",
        modes=("official", "official-2016", "lmms-eval"),
    )
)
