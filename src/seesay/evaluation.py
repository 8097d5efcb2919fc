"""Evaluation runs: batched, resumable, data-parallel over processes, with a manifest.

Layout of ``out_dir``::

    manifest.json                          model, dtype, methods and configs, versions, seed, git commit
    {bench}/{method}/predictions.jsonl     one line per sample: id, index, question, prediction,
                                           references, score, method, config (ordered by index)
    summary.json, summary.csv              mean of every score per (bench, method)

Resume: every finished batch is appended and fsynced; a run killed at any moment leaves complete lines
plus at most one partial last line, which the next run drops before it continues with the missing ids.
Data-parallel (``accelerate launch --multi_gpu --num_processes N -m seesay eval ...``, or ``torchrun
--nproc_per_node N -m seesay eval ...``; on a machine without GPUs the processes join over gloo, as
accelerate's plain ``--cpu`` launch starts one process unless MPI is set up): rank r takes samples r::N
(lmms-eval's stride), writes ``predictions.rank{r}.jsonl``, and rank 0 merges them after a barrier.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .decoding import GenerationSettings
from .errors import DataError, ImageError
from .loading import LoadedModel, build_inputs
from .methods import Method, get_method
from .tasks import Sample, Task


@dataclass(frozen=True)
class Dist:
    """This process' place in a data-parallel run (rank 0 of 1 when not launched in parallel)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def detect(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        from accelerate import PartialState

        # cpu=True when there is no GPU: accelerate then joins the processes with gloo (torchrun-style
        # launchers set WORLD_SIZE; accelerate's own CPU path needs MPI).
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes)

    def barrier(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Completed lines of a predictions file by id; a partial last line (a killed run) is cut off."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    done: dict[str, dict[str, Any]] = {}
    good = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        done[str(row["id"])] = row
        good += len(line)
    if good < len(raw):
        with path.open("r+b") as f:
            f.truncate(good)
    return done


def _append(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(
    loaded: LoadedModel,
    task: Task,
    data: Path,
    methods: Sequence[Method],
    settings: GenerationSettings,
    seed: int,
    mode: str,
    dist: Dist,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import transformers

    from . import __version__

    return {
        "model": loaded.name,
        "family": loaded.family,
        "revision": loaded.info.get("revision"),
        "dtype": str(getattr(loaded.model, "dtype", "")),
        "bench": task.name,
        "data": str(data),
        "metric_mode": mode,
        "methods": {m.name: m.config.to_dict() for m in methods},
        "generation": settings.__dict__,
        "seed": seed,
        "world_size": dist.world,
        "git_commit": _git_commit(),
        "versions": {
            "seesay": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


def evaluate(
    loaded: LoadedModel,
    task: Task,
    data: str | Path,
    methods: Sequence[str | Method],
    out_dir: str | Path,
    *,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    mode: str = "official",
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, float]] | None:
    """Run ``methods`` on ``task``; returns {method: {score: mean}} on rank 0 (None on other ranks)."""
    dist = Dist.detect()
    out = Path(out_dir)
    samples = task.load(Path(data), Path(image_root) if image_root else None)
    if limit:
        samples = samples[:limit]
    if not samples:
        raise DataError(f"{data}: no samples to evaluate")
    settings = settings or GenerationSettings(max_new_tokens=task.max_new_tokens)
    runners = [m if isinstance(m, Method) else get_method(m) for m in methods]
    torch.manual_seed(seed)
    if dist.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(
            json.dumps(
                manifest(loaded, task, Path(data), runners, settings, seed, mode, dist, {"limit": limit}),
                indent=1,
            )
        )
    indexed = list(enumerate(samples))[dist.rank :: dist.world]
    for runner in runners:
        folder = out / task.name / runner.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("predictions.jsonl" if dist.world == 1 else f"predictions.rank{dist.rank}.jsonl")
        done = read_done(path)
        pending = [(i, s) for i, s in indexed if s.id not in done]
        if progress:
            progress(runner.name, len(indexed) - len(pending), len(indexed))
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            _append(path, _run_batch(loaded, task, runner, chunk, settings, mode))
            if progress:
                progress(runner.name, len(chunk), -1)
    dist.barrier()
    if dist.rank != 0:
        return None
    summary = {}
    for runner in runners:
        folder = out / task.name / runner.name
        if dist.world > 1:
            rows: dict[str, dict[str, Any]] = {}
            for r in range(dist.world):
                rows.update(read_done(folder / f"predictions.rank{r}.jsonl"))
            ordered = sorted(rows.values(), key=lambda row: row["index"])
            (folder / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ordered))
        rows = read_done(folder / "predictions.jsonl")
        missing = [s.id for s in samples if s.id not in rows]
        if missing:
            raise DataError(
                f"{task.name}/{runner.name}: {len(missing)} samples have no prediction (e.g. {missing[0]})"
            )
        keys = sorted({k for row in rows.values() for k in row["score"]})
        summary[runner.name] = {}
        for k in keys:  # mean over the samples where the score is defined
            values = [row["score"][k] for row in rows.values() if row["score"].get(k) is not None]
            summary[runner.name][k] = sum(values) / len(values) if values else float("nan")
        summary[runner.name]["n"] = len(rows)
    write_summary(out, task, summary)
    return summary


def _run_batch(
    loaded: LoadedModel,
    task: Task,
    runner: Method,
    chunk: Sequence[tuple[int, Sample]],
    settings: GenerationSettings,
    mode: str,
) -> list[dict[str, Any]]:
    images = []
    for _, sample in chunk:
        try:
            images.append(sample.load_image())
        except OSError as err:
            raise ImageError(f"sample {sample.id}: cannot decode its image: {err}") from err
    # The task's prompt (question + suffix) through the model's chat template; methods that build their
    # own prompts (VEA) read the plain questions.
    prompted = build_inputs(loaded, images, [task.prompt(s) for _, s in chunk])
    prompted.questions = [s.question for _, s in chunk]
    result = runner.generate(loaded, prompted, settings)
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    maps = getattr(runner, "last_maps", None)  # VEA: each sample's evidence map
    rows = []
    for row_i, (index, sample) in enumerate(chunk):
        text = tokenizer.decode(result.new_tokens[row_i], skip_special_tokens=True).strip()
        score: dict[str, float | None] = dict(task.score(text, sample, mode))
        if maps and sample.meta.get("boxes"):
            score.update(evidence_scores(maps[row_i][0], sample.meta["boxes"]))
        rows.append(
            {
                "id": sample.id,
                "index": index,
                "question": sample.question,
                "prediction": text,
                "references": list(sample.answers),
                "score": score,
                "method": runner.name,
                "config": runner.config.to_dict(),
            }
        )
    return rows


def evidence_scores(result: Any, boxes: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """Evidence retrieval of a VEA map: its token scores against the box labels (None when undefined)."""
    from .evidence import box_labels
    from .metrics.retrieval import auprc, auroc, ndcg

    if result.layout is None:
        return {}
    labels = box_labels(result.layout, boxes)
    if labels.all() or not labels.any():
        return {"evidence_auroc": None, "evidence_auprc": None, "evidence_ndcg": None}
    s = result.token_scores
    return {
        "evidence_auroc": auroc(s, labels),
        "evidence_auprc": auprc(s, labels),
        "evidence_ndcg": ndcg(s, labels),
    }


def write_summary(out: Path, task: Task, summary: dict[str, dict[str, float]]) -> None:
    """summary.json (merged with earlier benches) and summary.csv."""
    path = out / "summary.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[task.name] = summary
    path.write_text(json.dumps(existing, indent=1) + "\n")
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["bench", "method", "metric", "value"])
        for bench, per_method in existing.items():
            for method, scores in per_method.items():
                for metric, value in scores.items():
                    writer.writerow([bench, method, metric, value])
