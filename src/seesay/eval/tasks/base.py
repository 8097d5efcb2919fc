"""Benchmark tasks: a registry where adding a benchmark is one small file.

A :class:`Task` knows how to read a local copy in its official format (or an lmms-lab parquet export),
how to prompt, and how to score one prediction. Samples carry their image as a path or as bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ...errors import DataError
from ...registry import Registry

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."


@dataclass(frozen=True)
class Sample:
    """One question. ``image`` is a file path or the image's bytes (parquet exports)."""

    id: str
    question: str
    answers: tuple[str, ...]
    image: Path | bytes
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def load_image(self) -> Image.Image | Path:
        if isinstance(self.image, bytes):
            return Image.open(io.BytesIO(self.image)).convert("RGB")
        return self.image


Scorer = Callable[[str, Sample, str], dict[str, float]]
Loader = Callable[[Path, Path | None], list[Sample]]
Aggregator = Callable[[list[dict[str, Any]]], dict[str, float]]  # prediction rows (id, score) -> metrics


@dataclass(frozen=True)
class Task:
    """A benchmark: ``load(path, image_root)``, ``score(prediction, sample, mode)`` and its prompt.

    ``primary`` names the score reported first; ``max_new_tokens`` follows the peers' protocol;
    ``modes`` are the metric conventions ``score`` accepts (the first is the default). ``aggregate``,
    when set, turns every question's prediction row (its ``id`` and ``score``) into corpus-level metrics
    (POPE's precision, recall, F1; MME's acc+); the summary holds them beside the per-question means.
    """

    name: str
    load: Loader
    score: Scorer
    primary: str
    prompt_suffix: str = SHORT_ANSWER
    max_new_tokens: int = 16
    description: str = ""
    modes: tuple[str, ...] = ("official", "lmms-eval")
    aggregate: Aggregator | None = None  # corpus-level metrics from every question's scores

    def prompt(self, sample: Sample, suffix: str | None = None) -> str:
        """The question plus ``suffix`` (default: the task's :attr:`prompt_suffix`)."""
        return sample.question + (self.prompt_suffix if suffix is None else suffix)


TASKS: Registry[Task] = Registry("benchmark")


def register_task(task: Task) -> Task:
    """Add a benchmark under its name (a name registered twice is an error)."""
    return TASKS.add(task.name, task)


register = register_task  # the name task files used before the registries shared one style


def get_task(name: str) -> Task:
    from . import _registry  # noqa: F401  (imports every task module once)

    if name not in TASKS:
        raise DataError(f"unknown benchmark {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


# ---- helpers shared by the task files ----------------------------------------------------------------


def read_json(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err


def records_under(data: Any, key: str, path: Path) -> list[Any]:
    """``data[key]`` of a JSON object read from ``path``, checked to be a list (else one-line DataError)."""
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON object whose '{key}' is a list")
    return items


def read_rows(path: Path) -> list[Any]:
    """The records of a JSONL file (one JSON value per line) or of a JSON list (or ``{"data": [...]}``)."""
    if path.suffix != ".jsonl":
        data = read_json(path)
        data = data.get("data") if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of records (or {{'data': [...]}})")
        return data
    if not path.exists():
        raise DataError(f"annotation file not found: {path}")
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {n} is not valid JSON ({err.msg})") from err
    return rows


def require(record: Any, keys: Iterable[str], path: Path, index: int | str) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{path}: record {index} is not an object")
    for key in keys:
        if key not in record:
            raise DataError(f"{path}: record {index} has no '{key}'")


def answer_strings(raw: Any, path: Path, index: int | str) -> tuple[str, ...]:
    """Answers given as strings or as {"answer": ...} objects."""
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, Sequence):
        raise DataError(f"{path}: record {index} has answers that are not a list")
    out = []
    for a in raw:
        if isinstance(a, dict) and isinstance(a.get("answer"), str):
            out.append(a["answer"])
        elif isinstance(a, str):
            out.append(a)
        else:
            raise DataError(
                f"{path}: record {index} has an answer that is neither a string nor {{'answer': str}}"
            )
    if not out:
        raise DataError(f"{path}: record {index} has no reference answers (an empty list)")
    return tuple(out)


def read_parquet(path: Path) -> list[dict[str, Any]]:
    """Rows of an lmms-lab parquet export (needs pyarrow: pip install 'seesay[eval]')."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataError("reading parquet needs pyarrow: pip install 'seesay[eval]'") from err
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file {path}: {err}") from err


def parquet_image(value: Any, path: Path, index: int) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("bytes"), bytes):
        return value["bytes"]
    if isinstance(value, bytes):
        return value
    raise DataError(f"{path}: row {index} has no image bytes (expected an 'image' column with bytes)")


def first_key(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def samples_from_parquet(path: Path, id_keys: Sequence[str], answer_keys: Sequence[str]) -> list[Sample]:
    """Samples from an lmms-lab export: an id column, 'question', answers and an 'image' column."""
    out = []
    for i, row in enumerate(read_parquet(path)):
        question = row.get("question")
        if not isinstance(question, str):
            raise DataError(f"{path}: row {i} has no 'question'")
        answers = first_key(row, *answer_keys)
        if answers is None:
            raise DataError(f"{path}: row {i} has none of the answer columns {list(answer_keys)}")
        rid = first_key(row, *id_keys)
        out.append(
            Sample(
                id=str(rid if rid is not None else i),
                question=question,
                answers=answer_strings(answers, path, i),
                image=parquet_image(row.get("image"), path, i),
            )
        )
    return out
