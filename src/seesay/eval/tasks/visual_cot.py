"""Visual-CoT evidence records (JSON/JSONL with boxes), as in VEA's tables: exact match against any
reference and token F1 against the best one (SQuAD rules; ``--metric-mode vea``: the VEA reference's
rules, a reference contained in the prediction and F1 over sets of lemmas, see ``metrics/vea_qa.py``),
with VEA's QA prompt conventions left to the method."""

from __future__ import annotations

from pathlib import Path

from ..data.visual_cot import load_visual_cot
from ..metrics.vea_qa import vea_scores
from ..metrics.vqa import exact_match, token_f1
from .base import Sample, Task, register_task


def load(path: Path, image_root: Path | None) -> list[Sample]:
    return [
        Sample(
            id=r.id,
            question=r.question,
            answers=r.answers,
            image=r.image,
            meta={"boxes": [list(b) for b in r.boxes], "dataset": r.dataset},
        )
        for r in load_visual_cot(path, image_root=image_root)
    ]


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    if mode == "vea":
        return vea_scores(prediction, sample.answers)
    return {
        "exact_match": exact_match(prediction, sample.answers),
        "token_f1": token_f1(prediction, sample.answers),
    }


register_task(
    Task(
        "visual_cot",
        load,
        score,
        "exact_match",
        description="Visual-CoT evidence sets (EM, token F1)",
        modes=("official", "lmms-eval", "vea"),
    )
)
