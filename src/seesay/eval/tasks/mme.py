"""MME (Fu et al., 2023): the release folder (``--data MME_Benchmark_release_version``: one folder per
category; in each, the images and one ``.txt`` per image with its two ``question<TAB>answer`` lines,
either side by side or in ``images/`` and ``questions_answers_YN/``), or lmms-lab/MME's parquet export
(``question_id`` = ``{category}/{image}``, ``question``, ``answer``, ``category``, ``image``).

Per question: accuracy (MME's ``parse_pred_ans``); over the corpus: acc, acc+ (an image counts when both
its questions are right), each category's score acc + acc+ and the perception and cognition totals
(``metrics/yesno.py``; scores are fractions, x100 = MME's points).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..metrics.yesno import MME_MODES, mme_answer, mme_metrics
from .base import Sample, Task, read_parquet, register_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".PNG")


def _label(value: object, where: str) -> str:
    label = str(value).strip().lower()
    if label not in ("yes", "no"):
        raise DataError(f"{where}: answer {value!r} is not Yes or No")
    return label


def _folder(root: Path) -> list[Sample]:
    out: list[Sample] = []
    categories = sorted(p for p in root.iterdir() if p.is_dir())
    if not categories:
        raise DataError(f"{root}: no category folders (expected MME_Benchmark_release_version/<category>/)")
    for category in categories:
        qa = category / "questions_answers_YN"
        texts, images = (qa, category / "images") if qa.is_dir() else (category, category)
        for txt in sorted(texts.glob("*.txt")):
            image = next(
                (images / (txt.stem + s) for s in IMAGE_SUFFIXES if (images / (txt.stem + s)).exists()), None
            )
            if image is None:
                raise DataError(f"{txt}: no image {txt.stem}.jpg/.png in {images}")
            lines = [line for line in txt.read_text().splitlines() if line.strip()]
            for k, line in enumerate(lines):
                parts = line.split("\t")
                if len(parts) < 2:
                    raise DataError(f"{txt}: line {k + 1} is not 'question<TAB>answer'")
                out.append(
                    Sample(
                        id=f"{category.name}/{image.name}/{k}",
                        question=parts[0].strip(),
                        answers=(_label(parts[1], f"{txt}: line {k + 1}"),),
                        image=image,
                        meta={"category": category.name},
                    )
                )
    if not out:
        raise DataError(f"{root}: no question files (*.txt) found")
    return out


def _parquet(path: Path) -> list[Sample]:
    from .base import parquet_image

    out = []
    seen: dict[str, int] = {}
    for i, row in enumerate(read_parquet(path)):
        for key in ("question_id", "question", "answer", "category"):
            if row.get(key) is None:
                raise DataError(f"{path}: row {i} has no '{key}'")
        image_key = f"{row['category']}/{Path(str(row['question_id'])).name}"
        k = seen.get(image_key, 0)
        seen[image_key] = k + 1
        out.append(
            Sample(
                id=f"{image_key}/{k}",
                question=str(row["question"]),
                answers=(_label(row["answer"], f"{path}: row {i}"),),
                image=parquet_image(row.get("image"), path, i),
                meta={"category": row["category"]},
            )
        )
    return out


def load(path: Path, image_root: Path | None) -> list[Sample]:
    if path.is_dir():
        return _folder(path)
    if path.suffix == ".parquet":
        return _parquet(path)
    raise DataError(f"{path}: MME reads its release folder or lmms-lab's parquet export")


def score(prediction: str, sample: Sample, mode: str) -> dict[str, float]:
    return {"accuracy": float(mme_answer(prediction, mode) == sample.answers[0])}


register_task(
    Task(
        "mme",
        load,
        score,
        "accuracy",
        description="MME yes/no pairs (acc, acc+, category scores, perception / cognition totals)",
        modes=MME_MODES,
        aggregate=mme_metrics,
    )
)
