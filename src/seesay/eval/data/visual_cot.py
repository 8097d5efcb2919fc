"""Visual-CoT evidence records: JSON (a list) or JSONL, one record per question.

Fields: ``question``; ``answer`` (str) or ``answers`` (list); ``image`` (a path, relative to ``image_root``
or to the records file's folder); ``bboxs`` = list of [x0, y0, x1, y1] in pixels of the original image;
optional ``width``, ``height``, ``dataset``, ``split``, ``question_id`` / ``id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError


@dataclass(frozen=True)
class EvidenceRecord:
    """One question with its evidence boxes."""

    id: str
    question: str
    answers: tuple[str, ...]
    image: Path
    boxes: tuple[tuple[float, float, float, float], ...]
    width: int | None = None
    height: int | None = None
    dataset: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict, compare=False, repr=False)


def _read(path: Path) -> list:
    try:
        text = path.read_text()
    except OSError as err:
        raise DataError(f"cannot read records file {path}: {err.strerror or err}") from err
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {n} is not valid JSON ({err.msg})") from err
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if isinstance(data, dict):
        data = data.get("data", data.get("annotations"))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records (or {{'data': [...]}})")
    return data


def _record(raw: object, index: int, path: Path, root: Path) -> EvidenceRecord:
    where = f"{path}: record {index}"
    if not isinstance(raw, dict):
        raise DataError(f"{where} is not an object")
    for key in ("question", "image"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise DataError(f"{where} has no '{key}' string")
    answers = raw.get("answers", raw.get("answer"))
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where} needs 'answer' (a string) or 'answers' (a list of strings)")
    if not answers:
        raise DataError(f"{where} has an empty 'answers' list: a record needs at least one reference answer")
    boxes = raw.get("bboxs", raw.get("bbox"))
    if boxes is None:
        raise DataError(f"{where} has no 'bboxs'")
    if boxes and not isinstance(boxes[0], list | tuple):
        boxes = [boxes]
    parsed = []
    for box in boxes:
        if (
            not isinstance(box, list | tuple)
            or len(box) != 4
            or not all(isinstance(v, int | float) for v in box)
        ):
            raise DataError(f"{where}: every box must be [x0, y0, x1, y1] numbers, got {box!r}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 < x0 or y1 < y0:
            raise DataError(f"{where}: box {box} has x1 < x0 or y1 < y0")
        parsed.append((x0, y0, x1, y1))
    image = Path(raw["image"])
    rid = str(raw.get("question_id", raw.get("id", index)))
    known = {
        "question",
        "image",
        "answer",
        "answers",
        "bboxs",
        "bbox",
        "width",
        "height",
        "dataset",
        "split",
        "question_id",
        "id",
    }
    return EvidenceRecord(
        id=rid,
        question=raw["question"],
        answers=tuple(answers),
        image=image if image.is_absolute() else root / image,
        boxes=tuple(parsed),
        width=raw.get("width"),
        height=raw.get("height"),
        dataset=str(raw.get("dataset", "")),
        split=str(raw.get("split", "")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def load_visual_cot(
    path: str | Path, image_root: str | Path | None = None, limit: int | None = None
) -> list[EvidenceRecord]:
    """Records from a Visual-CoT JSON/JSONL file; :class:`DataError` names the file and the bad record."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"records file not found: {path}")
    root = Path(image_root) if image_root is not None else path.parent
    rows = _read(path)
    if limit is not None:
        rows = rows[:limit]
    return [_record(raw, i, path, root) for i, raw in enumerate(rows)]
