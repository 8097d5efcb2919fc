"""Evaluation runs: batched, resumable, data-parallel over processes, with a manifest.

Layout of ``out_dir``::

    manifest.json                          model, dtype, versions, git commit; per bench: data file and its
                                           fingerprint, limit, metric mode, seed, generation settings,
                                           prompt suffix, each method's config
    {bench}/{method}/predictions.jsonl     one line per sample: id, index, question, prediction,
                                           references, score, method, config (ordered by index)
    summary.json, summary.csv              mean of every score per (bench, method)
    .seesay.lock                           while a run writes (pid, host, start, command)

Resume: every finished batch is appended and fsynced; a run killed at any moment leaves complete lines
plus at most one partial last line, which the next run drops before it continues with the missing ids.
A rerun whose model, data, limit, metric mode, seed, generation settings, prompt or method config differs
from the manifest is refused with one line naming the difference (``overwrite=True`` starts again); a
rerun that adds methods keeps the earlier ones. One run writes a folder at a time (:class:`RunLock`).
Data-parallel (``torchrun --nproc_per_node N -m seesay eval ...`` or ``accelerate launch --multi_gpu
--num_processes N -m seesay eval ...``, on GPUs or, joined over gloo, on CPUs; accelerate's ``--cpu``
launcher starts a single process unless MPI is set up, and seesay refuses that launch): rank r takes
samples r::N (lmms-eval's stride), writes ``predictions.rank{r}.jsonl``, and rank 0 merges them after a
barrier.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.decoding import GenerationSettings, eos_token_ids
from ..engine.loading import LoadedModel, build_inputs
from ..errors import ConfigError, DataError, ImageError, SeesayError
from ..methods import Method, get_method
from ..methods.vea.evidence import compact_map
from .rundir import RunLock, atomic_write_text, differences
from .stats import paired_difference
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

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if self.world <= 1:
            return value
        import torch.distributed as torch_dist

        box = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]


def read_done(path: Path, repair: bool = True) -> dict[str, dict[str, Any]]:
    """Completed lines of a predictions file by id; a partial last line (a killed run) is cut off when
    ``repair`` (only the file's own writer may do that: another rank may be writing that line now)."""
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
    if repair and good < len(raw):
        with path.open("r+b") as f:
            f.truncate(good)
    return done


def _append(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append whole lines in one write and fsync (a kill leaves at most one partial last line)."""
    with path.open("a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
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


def fingerprint(path: Path, chunk: int = 64 << 20) -> str:
    """sha256 of a file's size and content (its first and last 64 MiB when it is larger than 128 MiB);
    of a folder (MME's release), every file's relative path and size, and the content of its text files."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path).as_posix()}:{item.stat().st_size}\n".encode())
            if item.suffix in (".txt", ".json", ".jsonl"):
                digest.update(item.read_bytes())
        return digest.hexdigest()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as f:
        if size <= 2 * chunk:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f.read(chunk))
            f.seek(size - chunk)
            digest.update(f.read(chunk))
    return digest.hexdigest()


MODEL_KEYS = [
    "model",
    "weights",
    "revision",
    "dtype",
    "max_pixels",
    "versions.torch",
    "versions.transformers",
    "versions.seesay",
]
# The questions themselves (ids, questions, references, image paths), not the file names or --limit that
# selected them: the same questions resume, other ones (another file, limit, annotation file) are refused.
BENCH_KEYS = ["samples", "metric_mode", "seed", "generation", "prompt_suffix"]


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """``N samples, sha256 H``: H over each sample's id, question, references and image (path or bytes)."""
    digest = hashlib.sha256()
    for sample in samples:
        image = (
            hashlib.sha256(sample.image).hexdigest()
            if isinstance(sample.image, bytes)
            else os.path.normpath(os.path.abspath(sample.image))
        )
        digest.update(json.dumps([sample.id, sample.question, list(sample.answers), image]).encode())
    return f"{len(samples)} samples, sha256 {digest.hexdigest()[:16]}"


MANIFEST_FORMAT = 2


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
    """What identifies this run: the model at the top, the bench's inputs and method configs below."""
    import transformers

    from .. import __version__

    bench = {
        "data": str(Path(data).resolve()),
        "data_fingerprint": fingerprint(Path(data)),
        "metric_mode": mode,
        "seed": seed,
        "generation": dict(settings.__dict__),
        "methods": {m.name: m.config.to_dict() for m in methods},
        **(extra or {}),
    }
    return {
        "format": MANIFEST_FORMAT,
        "model": str(Path(loaded.name).resolve()) if Path(loaded.name).exists() else loaded.name,
        "family": loaded.family,
        "revision": loaded.info.get("revision"),
        "weights": loaded.info.get("weights"),  # local folders: a retrained model at the same path differs
        "dtype": str(getattr(loaded.model, "dtype", "")),
        "max_pixels": loaded.info.get("max_pixels"),
        "world_size": dist.world,
        "git_commit": _git_commit(),
        "versions": {
            "seesay": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benches": {task.name: json.loads(json.dumps(bench, default=str))},
    }


def _has_results(out: Path) -> bool:
    return any(out.glob("*/*/predictions.jsonl")) or any(out.glob("*/*/predictions.rank*.jsonl"))


def reconcile_manifest(out: Path, new: dict[str, Any], bench: str, overwrite: bool) -> dict[str, Any]:
    """The manifest to write for this run; refuses (one line) a resume of a different run.

    With ``overwrite`` the conflicting results are deleted first: this bench's, or everything in the
    folder when the model differs.
    """
    path = out / "manifest.json"
    old: dict[str, Any] | None = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict) or old.get("format") != MANIFEST_FORMAT:
            if not _has_results(out):
                return new  # an unreadable manifest with nothing behind it: start afresh
            if not overwrite:
                raise DataError(
                    f"{out} holds results whose manifest.json this seesay cannot read (older or damaged); "
                    "pass --overwrite to start again there, or choose another --out"
                )
            _clear(out, None)
            return new
    elif _has_results(out):
        if not overwrite:
            raise DataError(
                f"{out} holds predictions but no manifest.json, so they cannot be checked against this run; "
                "pass --overwrite to start again there, or choose another --out"
            )
        _clear(out, None)
        return new
    if old is None or not _has_results(out):
        return new  # nothing was written under the old manifest: start afresh
    diffs = differences(old, new, MODEL_KEYS)
    if diffs:
        if not overwrite:
            raise DataError(_refusal(out, diffs))
        _clear(out, None)
        return new
    merged = dict(old)
    merged.update({k: v for k, v in new.items() if k != "benches"})
    benches = dict(old.get("benches") or {})
    old_bench = benches.get(bench)
    new_bench = new["benches"][bench]
    if old_bench is not None:
        diffs = differences(old_bench, new_bench, BENCH_KEYS)
        old_methods = old_bench.get("methods") or {}
        for name, config in new_bench["methods"].items():
            if name in old_methods:
                diffs += differences(
                    {f"{name} config": old_methods[name]}, {f"{name} config": config}, [f"{name} config"]
                )
        if diffs:
            if not overwrite:
                raise DataError(_refusal(out, [f"{bench} {d}" for d in diffs]))
            _clear(out, bench)
            old_bench = None
    if old_bench is not None:  # a rerun may add methods: keep the earlier ones
        new_bench = {**new_bench, "methods": {**(old_bench.get("methods") or {}), **new_bench["methods"]}}
    benches[bench] = new_bench
    merged["benches"] = benches
    return merged


def _refusal(out: Path, diffs: list[str]) -> str:
    more = f" (and {len(diffs) - 2} more)" if len(diffs) > 2 else ""
    return (
        f"{out} holds another run's results ({'; '.join(diffs[:2])}{more}): resuming would mix them; "
        "pass --overwrite to start again there, or choose another --out"
    )


def _clear(out: Path, bench: str | None) -> None:
    """Delete the predictions seesay wrote for ``bench`` (or every bench) in ``out``: only its own files
    (``{bench}/{method}/predictions.jsonl`` and ``predictions.rank*.jsonl``; a folder left empty goes too)."""
    files = list(out.glob(f"{bench or '*'}/*/predictions.jsonl"))
    files += list(out.glob(f"{bench or '*'}/*/predictions.rank*.jsonl"))
    for path in files:
        path.unlink()
        for folder in (path.parent, path.parent.parent):
            with contextlib.suppress(OSError):  # not empty: something of the user's is there
                folder.rmdir()
    summary = out / "summary.json"
    if summary.exists():
        try:
            existing = json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError):
            existing = {}
        for name in [bench] if bench else list(existing):
            existing.pop(name, None)
        _write_summary_files(out, existing)
    if bench is None:
        (out / "manifest.json").unlink(missing_ok=True)


def check_metric_mode(task: Task, mode: str) -> None:
    if mode not in task.modes:
        raise ConfigError(
            f"unknown metric mode {mode!r} for {task.name}; choose one of: {', '.join(task.modes)}"
        )


def _parent_command_line() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def refuse_single_process_cpu_launch() -> None:
    """``accelerate launch --cpu --num_processes N`` starts ONE process without MPI: refuse it (one line).

    Detected from accelerate's ``ACCELERATE_USE_CPU`` and the launcher's own command line.
    """
    if os.environ.get("WORLD_SIZE") or os.environ.get("ACCELERATE_USE_CPU", "").lower() != "true":
        return
    argv = _parent_command_line()
    asked = None
    for i, arg in enumerate(argv):
        if arg in ("--num_processes", "--num-processes") and i + 1 < len(argv):
            asked = argv[i + 1]
        elif arg.startswith(("--num_processes=", "--num-processes=")):
            asked = arg.partition("=")[2]
    if asked is not None and asked.isdigit() and int(asked) > 1:
        raise ConfigError(
            f"accelerate launch --cpu starts one process, not {asked}, unless MPI is set up; use "
            f"'accelerate launch --multi_gpu --num_processes {asked}' (joins over gloo on CPUs) or "
            f"'torchrun --nproc_per_node {asked}'"
        )


def refuse_device_map_in_parallel(device_map: str | dict | None) -> None:
    """``device_map="auto"`` (or any string map) in a data-parallel run: every process would spread its
    own copy of the model over *all* the GPUs it sees, N copies on the same cards. Refuse it (one line):
    data-parallel ranks get one GPU each (the default), and one process spreads one large model."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and isinstance(device_map, str):
        raise ConfigError(
            f"--device-map {device_map} in a {world}-process run would put {world} copies of the model on "
            "the same GPUs; leave --device-map out (each rank gets its own GPU) or run one process with "
            "--device-map auto"
        )


def check_image_paths(samples: Sequence[Sample], root: Path, allow_outside: bool) -> None:
    """Every image file of ``samples`` lies inside ``root``: a ``../`` or absolute path in a data file that
    leads elsewhere is refused (the check is on the path as written; symlinks inside the root are followed
    as usual)."""
    if allow_outside:
        return
    base = Path(os.path.normpath(os.path.abspath(root)))  # lexical: a symlinked image folder is fine
    for sample in samples:
        if isinstance(sample.image, Path):
            where = Path(os.path.normpath(os.path.abspath(sample.image)))
            if not where.is_relative_to(base):
                raise DataError(
                    f"sample {sample.id}: image {sample.image} lies outside the image root {root}; "
                    "pass --allow-images-outside-root if that is intended"
                )


def check_unique_ids(samples: Sequence[Sample], data: Path) -> None:
    counts = Counter(s.id for s in samples)
    repeated = [i for i, c in counts.items() if c > 1]
    if repeated:
        shown = ", ".join(repr(i) for i in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        raise DataError(
            f"{data}: {len(repeated)} sample id(s) appear more than once ({shown}); each id must be unique"
        )


def _rows_of(folder: Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Every finished row of a method folder: the merged file and every rank's file (read only)."""
    rows = read_done(folder / "predictions.jsonl", repair=repair)
    for rank_file in sorted(folder.glob("predictions.rank*.jsonl")):
        rows.update(read_done(rank_file, repair=repair))
    return rows


class _GlobalProgress:
    """Rank 0's count of a method's finished samples over every rank: the count at the start plus the
    lines appended since, its own counted as it writes them and the other ranks' read from the new bytes
    of their files (never the whole file again)."""

    def __init__(self, folder: Path, start: int, total: int, world: int, callback, name: str):
        self.callback, self.name, self.total = callback, name, total
        self.own = 0
        self.others = [folder / f"predictions.rank{r}.jsonl" for r in range(1, world)]
        self.offsets = [p.stat().st_size if p.exists() else 0 for p in self.others]
        self.seen = [0] * len(self.others)
        self.start = start
        self.read_at = 0.0

    def wrote(self, rows: int) -> None:
        self.own += rows
        self.update(force=not self.others)

    def update(self, force: bool = False) -> int:
        if force or time.monotonic() - self.read_at >= 1.0:
            for k, path in enumerate(self.others):
                if path.exists():
                    with path.open("rb") as f:
                        f.seek(self.offsets[k])
                        chunk = f.read()
                    complete = chunk.rfind(b"\n") + 1
                    self.seen[k] += chunk[:complete].count(b"\n")
                    self.offsets[k] += complete
            self.read_at = time.monotonic()
        completed = min(self.total, self.start + self.own + sum(self.seen))
        self.callback(self.name, completed, self.total)
        return completed


def select_samples(
    task: Task,
    data: Path,
    image_root: str | Path | None,
    limit: int | None,
    allow_images_outside_root: bool = False,
) -> list[Sample]:
    """The samples a run evaluates, checked: unique ids, at least one, images inside the image root."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of samples, got {limit}")
    samples = task.load(data, Path(image_root) if image_root else None)
    check_unique_ids(samples, data)
    if limit:
        samples = samples[:limit]
    if not samples:
        raise DataError(f"{data}: no samples to evaluate")
    check_image_paths(samples, Path(image_root) if image_root else data.parent, allow_images_outside_root)
    return samples


def precheck(
    task: Task,
    data: str | Path,
    out_dir: str | Path,
    *,
    image_root: str | Path | None = None,
    limit: int | None = None,
    mode: str = "official",
    allow_images_outside_root: bool = False,
) -> list[Sample]:
    """What can be refused before a model is loaded (bad data, bad mode, a folder in use): refuse it now.

    Returns the selected samples, for :func:`evaluate` (``samples=``), so the data is read once.
    """
    check_metric_mode(task, mode)
    samples = select_samples(task, Path(data), image_root, limit, allow_images_outside_root)
    if Dist.detect().rank == 0:
        RunLock(out_dir).check()
    return samples


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
    prompt_suffix: str | None = None,
    overwrite: bool = False,
    allow_images_outside_root: bool = False,
    samples: Sequence[Sample] | None = None,
) -> dict[str, dict[str, float]] | None:
    """Run ``methods`` on ``task``; returns {method: {score: mean}} on rank 0 (None on other ranks).

    ``prompt_suffix`` (appended to each question) defaults to the model's own setting
    (``loaded.info["prompt_suffix"]``, from ``seesay.json`` beside its config), else the task's.
    ``progress(method, completed, total)`` is called on rank 0 with counts over all ranks. ``samples``:
    the selection :func:`precheck` returned for the same arguments (else it is read here).
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    check_metric_mode(task, mode)
    dist = Dist.detect()
    out = Path(out_dir)
    data = Path(data)
    if samples is None:
        samples = select_samples(task, data, image_root, limit, allow_images_outside_root)
    settings = settings or GenerationSettings(max_new_tokens=task.max_new_tokens)
    runners = [m if isinstance(m, Method) else get_method(m) for m in methods]
    names = [r.name for r in runners]
    if len(set(names)) != len(names):
        raise ConfigError(f"a method is listed twice: {', '.join(names)}")
    suffix = prompt_suffix if prompt_suffix is not None else loaded.info.get("prompt_suffix")
    suffix = task.prompt_suffix if suffix is None else suffix
    torch.manual_seed(seed)
    lock = RunLock(out)
    problem: str | None = None
    if dist.rank == 0:
        try:
            lock.acquire()
            extra = {
                "limit": limit,
                "prompt_suffix": suffix,
                "image_root": str(Path(image_root).resolve()) if image_root else None,
                "samples": samples_fingerprint(samples),
            }
            new = manifest(loaded, task, data, runners, settings, seed, mode, dist, extra)
            out.mkdir(parents=True, exist_ok=True)
            for stale in (out / task.name).glob(".finished.rank*"):  # left by a killed parallel run
                stale.unlink()
            atomic_write_text(
                out / "manifest.json",
                json.dumps(reconcile_manifest(out, new, task.name, overwrite), indent=1),
            )
        except SeesayError as err:
            lock.release()
            problem = str(err)
        except BaseException:  # Ctrl-C or a bug during set-up: never leave the folder locked
            lock.release()
            raise
    problem = dist.broadcast(problem)
    if problem is not None:
        raise DataError(problem)
    try:
        return _run(loaded, task, runners, samples, out, batch_size, settings, mode, suffix, progress, dist)
    finally:
        lock.release()


def _run(
    loaded: LoadedModel,
    task: Task,
    runners: Sequence[Method],
    samples: Sequence[Sample],
    out: Path,
    batch_size: int,
    settings: GenerationSettings,
    mode: str,
    suffix: str,
    progress: Callable[[str, int, int], None] | None,
    dist: Dist,
) -> dict[str, dict[str, float]] | None:
    indexed = list(enumerate(samples))
    ids = {s.id for s in samples}
    mine = indexed[dist.rank :: dist.world]
    bars: dict[str, _GlobalProgress] = {}
    for runner in runners:
        folder = out / task.name / runner.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("predictions.jsonl" if dist.world == 1 else f"predictions.rank{dist.rank}.jsonl")
        read_done(path)  # drops a partial last line of this process' own file before appending
        done = _rows_of(folder)
        pending = [(i, s) for i, s in mine if s.id not in done]
        if progress and dist.rank == 0:
            bars[runner.name] = _GlobalProgress(
                folder, len(ids & set(done)), len(ids), dist.world, progress, runner.name
            )
            bars[runner.name].update(force=True)
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            _append(path, _run_batch(loaded, task, runner, chunk, settings, mode, suffix))
            if runner.name in bars:
                bars[runner.name].wrote(len(chunk))
        if runner.name in bars:
            bars[runner.name].update(force=True)
    marker = out / task.name / f".finished.rank{dist.rank}"
    if dist.world > 1:
        marker.touch()
        if bars:  # rank 0 shows the other ranks' progress until every rank has finished
            markers = [out / task.name / f".finished.rank{r}" for r in range(dist.world)]
            while not all(m.exists() for m in markers):
                for bar in bars.values():
                    bar.update()
                time.sleep(0.5)
            for bar in bars.values():
                bar.update(force=True)
    dist.barrier()
    if dist.rank != 0:
        return None
    for r in range(dist.world):  # every rank is past the barrier: rank 0 clears the markers
        (out / task.name / f".finished.rank{r}").unlink(missing_ok=True)
    summary: dict[str, dict[str, Any]] = {}
    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    for runner in runners:
        folder = out / task.name / runner.name
        rows = {i: row for i, row in _rows_of(folder).items() if i in ids}
        missing = [s.id for s in samples if s.id not in rows]
        if missing:
            raise DataError(
                f"{task.name}/{runner.name}: {len(missing)} samples have no prediction (e.g. {missing[0]})"
            )
        ordered = sorted(rows.values(), key=lambda row: row["index"])
        atomic_write_text(folder / "predictions.jsonl", "".join(json.dumps(row) + "\n" for row in ordered))
        keys = sorted({k for row in rows.values() for k in row["score"] if not k.startswith("_")})
        summary[runner.name] = {}
        for k in keys:  # mean over the samples where the score is defined
            values = [row["score"][k] for row in rows.values() if row["score"].get(k) is not None]
            values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
            summary[runner.name][k] = sum(values) / len(values) if values else float("nan")
        if task.aggregate is not None:  # corpus-level metrics (POPE's precision, recall, F1, ...)
            summary[runner.name].update(task.aggregate([rows[i] for i in sorted(rows)]))
        summary[runner.name]["n"] = len(rows)
        by_method[runner.name] = rows
    base_rows = by_method.get("base")
    if base_rows is None and (out / task.name / "base").is_dir():  # base from an earlier run of this folder
        found = {i: row for i, row in _rows_of(out / task.name / "base").items() if i in ids}
        base_rows = found if len(found) == len(ids) else None
    if base_rows is not None:
        for name, rows in by_method.items():
            if name != "base":
                summary[name].update(against_base(base_rows, rows, task.primary))
    write_summary(out, task, summary)
    return summary


VS_BASE = "vs_base"  # summary keys: vs_base.metric, .diff, .ci_low, .ci_high, .mcnemar_p, .n


def against_base(
    base: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]], metric: str, seed: int = 0
) -> dict[str, Any]:
    """``other`` minus ``base`` on ``metric`` over the samples both scored: the difference, its 95%
    paired-bootstrap interval (10,000 resamples, ``seed``) and McNemar's exact p (0/1 scores only)."""
    common = sorted(
        i
        for i in base.keys() & other.keys()
        if base[i]["score"].get(metric) is not None and other[i]["score"].get(metric) is not None
    )
    if not common:
        return {}
    result = paired_difference(
        [float(base[i]["score"][metric]) for i in common],
        [float(other[i]["score"][metric]) for i in common],
        seed=seed,
    )
    return {
        f"{VS_BASE}.metric": metric,
        f"{VS_BASE}.diff": result.diff,
        f"{VS_BASE}.ci_low": result.low,
        f"{VS_BASE}.ci_high": result.high,
        f"{VS_BASE}.mcnemar_p": result.p_value,
        f"{VS_BASE}.n": result.n,
    }


def _run_batch(
    loaded: LoadedModel,
    task: Task,
    runner: Method,
    chunk: Sequence[tuple[int, Sample]],
    settings: GenerationSettings,
    mode: str,
    suffix: str | None = None,
) -> list[dict[str, Any]]:
    images = []
    for _, sample in chunk:
        try:
            images.append(sample.load_image())
        except OSError as err:
            raise ImageError(f"sample {sample.id}: cannot decode its image: {err}") from err
    # The task's prompt (question + suffix) through the model's chat template; methods that build their
    # own prompts (VEA) read the plain questions.
    prompted = build_inputs(loaded, images, [task.prompt(s, suffix) for _, s in chunk])
    prompted.questions = [s.question for _, s in chunk]
    result = runner.generate(loaded, prompted, settings)
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    maps = result.evidence  # VEA: each sample's evidence maps
    eos = eos_token_ids(settings, loaded.model)
    rows = []
    for row_i, (index, sample) in enumerate(chunk):
        text = tokenizer.decode(result.new_tokens[row_i], skip_special_tokens=True).strip()
        score: dict[str, float | None] = dict(task.score(text, sample, mode))
        if maps and sample.meta.get("boxes"):
            score.update(evidence_scores(maps[row_i][0], sample.meta["boxes"]))
        row = {
            "id": sample.id,
            "index": index,
            "question": sample.question,
            "prediction": text,
            "references": list(sample.answers),
            "score": score,
            "method": runner.name,
            "config": runner.config.to_dict(),
        }
        if maps:  # VEA: the evidence map of the (first) image, shrunk (seesay report draws it)
            row["evidence_map"] = compact_map(maps[row_i][0].emap)
        if runner.trace and result.trace:  # each generated token with what the method logged at it
            ids, steps = result.sample(row_i, eos)
            row["trace"] = [
                {"token_id": t, "token": tokenizer.decode([t]), **step}
                for t, step in zip(ids, steps, strict=False)
            ]
        rows.append(row)
    return rows


def evidence_scores(result: Any, boxes: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """Evidence retrieval of a VEA map: its token scores against the box labels (None when undefined)."""
    from ..methods.vea.evidence import box_labels
    from ..methods.vea.retrieval import auprc, auroc, ndcg

    if result.layout is None:
        return {}
    labels = box_labels(result.layout, boxes)
    if labels.all() or not labels.any():
        return {"evidence_auroc": None, "evidence_auprc": None, "evidence_ndcg": None}
    # VEA's reference scores retrieval on the denoised (Eq. 1 + Eq. 2) patch scores
    s = result.retrieval_scores if result.retrieval_scores is not None else result.token_scores
    return {
        "evidence_auroc": auroc(s, labels),
        "evidence_auprc": auprc(s, labels),
        "evidence_ndcg": ndcg(s, labels),
    }


def write_summary(out: Path, task: Task, summary: dict[str, dict[str, float]]) -> None:
    """summary.json and summary.csv, merged with earlier benches and earlier methods of this bench."""
    path = out / "summary.json"
    try:
        existing = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        existing = {}
    existing[task.name] = {**existing.get(task.name, {}), **summary}
    _write_summary_files(out, existing)


def _write_summary_files(out: Path, summary: dict[str, dict[str, dict[str, float]]]) -> None:
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["bench", "method", "metric", "value"])
    for bench, per_method in summary.items():
        for method, scores in per_method.items():
            for metric, value in scores.items():
                writer.writerow([bench, method, metric, value])
    atomic_write_text(out / "summary.csv", buf.getvalue())
