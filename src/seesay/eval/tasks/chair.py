"""CHAIR captioning (Rohrbach et al., 2018) as a benchmark: the model describes each image and
``metrics/chair.py`` counts the objects it names that the image does not hold.

The question file (JSONL or a JSON list), one record per image: ``image_id``, ``image`` (a path under
``--image-root``, default the file's folder), ``objects`` (the image's ground truth: MSCOCO category
names or any word of CHAIR's synonym list; :func:`seesay.eval.metrics.chair.coco_ground_truth` reads them
off MSCOCO's annotation files) and optionally ``question`` (default: the captioning prompt below).

Per caption: ``chair_s`` (1 if any object is hallucinated) and the counts; over the corpus: CHAIR_s,
CHAIR_i, recall (lower CHAIR is better). Prompt and length follow OPERA's CHAIR protocol (Huang et al.,
CVPR 2024): "Please describe this image in detail.", 512 new tokens.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.chair import categories, score_caption
from .base import Sample, Task, read_rows, register_task, require

CAPTION_PROMPT = "Please describe this image in detail."


def load(path: Path, image_root: Path | None) -> list[Sample]:
    root = image_root or path.parent
    out = []
    for i, rec in enumerate(read_rows(path)):
        require(rec, ("image_id", "image", "objects"), path, i)
        if not isinstance(rec["objects"], list):
            raise DataError(f"{path}: record {i} has 'objects' that is not a list of names")
        try:
            truth = categories(rec["objects"])
        except DataError as err:
            raise DataError(f"{path}: record {i}: {err}") from None
        out.append(
            Sample(
                id=str(rec["image_id"]),
                question=str(rec.get("question") or CAPTION_PROMPT),
                answers=tuple(sorted(truth)),
                image=root / rec["image"],
            )
        )
    return out


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    s = score_caption(prediction, set(sample.answers), sample.id)
    return {
        "chair_s": float(bool(s.hallucinated)),
        "_mentions": float(len(s.mentions)),
        "_hallucinated": float(len(s.hallucinated)),
        "_truth": float(len(s.ground_truth)),
        "_covered": float(len(s.covered)),
    }


def aggregate(rows: list[dict]) -> dict[str, float]:
    """CHAIR_s, CHAIR_i and recall from every caption's counts (``metrics.chair.chair_metrics``' sums)."""
    scores = [r["score"] for r in rows]
    mentions = sum(s["_mentions"] for s in scores)
    truth = sum(s["_truth"] for s in scores)
    return {
        "chair_s": sum(s["chair_s"] for s in scores) / len(scores) if scores else 0.0,
        "chair_i": sum(s["_hallucinated"] for s in scores) / mentions if mentions else 0.0,
        "recall": sum(s["_covered"] for s in scores) / truth if truth else 0.0,
    }


register_task(
    Task(
        "chair",
        load,
        score,
        "chair_s",
        prompt_suffix="",
        max_new_tokens=512,
        description="CHAIR object hallucination in captions (CHAIR_s, CHAIR_i, recall; lower is better)",
        modes=("official",),
        aggregate=aggregate,
    )
)
