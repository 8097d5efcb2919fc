"""``seesay sweep``: a grid over one method's knobs on a benchmark, on the eval machinery.

Each grid point is one ``seesay eval`` run of the method with those knob values (plus the fixed ``--set``
options) in a folder of its own, ``OUT/points/<key=value,...>/``, and base runs once in ``OUT/base/``;
every run keeps its manifest, so a sweep resumes point by point and sample by sample, and a changed model,
data file or setting is refused exactly as ``seesay eval`` refuses it. For each point the primary metric's
mean over the questions gets its 95% interval (Wilson for 0/1 scores, else the percentile bootstrap) and
its paired difference from base (95% paired bootstrap, fixed seed; exact McNemar p for 0/1 scores).
``OUT/sweep.json`` and ``OUT/sweep.csv`` hold the table; ``OUT/sweep_<knob>.png`` plots the metric against
each knob (one line per combination of the other knobs, the method's default value marked).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.decoding import GenerationSettings
from ..engine.loading import LoadedModel
from ..errors import ConfigError
from ..methods import METHODS, get_method
from .rundir import atomic_write_text
from .runner import _rows_of, against_base, evaluate
from .stats import mean_interval
from .tasks.base import Sample, Task

SWEEP_FORMAT = 1


def parse_value(raw: str) -> Any:
    """A grid value as typed: JSON (numbers, true/false, lists), ``none``/``null`` -> None, else text."""
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_grid(pairs: Sequence[str], method: str) -> dict[str, list[Any]]:
    """``["gamma=0,0.5", "static_layer=1,none"]`` -> ``{"gamma": [0, 0.5], "static_layer": [1, None]}``,
    keys checked against ``method``'s config (a list value is written ``[1,2]``; ``none`` is None, except
    for a knob whose default is text, where it is the word: ``contrast=none``)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    known = [f.name for f in dataclasses.fields(METHODS[method].config_class)]
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid {pair!r} is not KEY=V1,V2,...")
        if key not in known:
            raise ConfigError(f"--grid {key}: {method} has no such option (its options: {', '.join(known)})")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice")
        default = next(f.default for f in dataclasses.fields(METHODS[method].config_class) if f.name == key)
        values = [parse_value(v) for v in _split_values(raw)]
        if isinstance(default, str):  # a text knob: "none" is one of its words (dualpd contrast=none)
            values = ["none" if v is None else v for v in values]
        if len({json.dumps(v) for v in values}) != len(values):
            raise ConfigError(f"--grid {key} lists a value twice: {raw}")
        grid[key] = values
    if not grid:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def _split_values(raw: str) -> list[str]:
    """Split on commas outside brackets: ``1,[2,3],none`` -> ``["1", "[2,3]", "none"]``."""
    out, depth, current = [], 0, ""
    for ch in raw:
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(ch, 0)
        current += ch
    out.append(current)
    return [v for v in out if v.strip()]


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(values: dict[str, Any]) -> str:
    """A folder-safe name of a grid point, ``gamma=0.5,static_layer=none``."""
    parts = []
    for key, value in values.items():
        text = "none" if value is None else json.dumps(value) if not isinstance(value, str) else value
        parts.append(f"{key}={re.sub(r'[^A-Za-z0-9_.+-]', '_', text.replace(', ', '_'))}")
    return ",".join(parts)


def point_methods(method: str, grid: dict[str, list[Any]], fixed: dict[str, Any]) -> list[Any]:
    """The method configured at every grid point (``fixed`` options plus the point's values), validated."""
    overlap = set(fixed) & set(grid)
    if overlap:
        raise ConfigError(f"{', '.join(sorted(overlap))}: set both by --set and by --grid")
    return [get_method(method, **fixed, **values) for values in grid_points(grid)]


@dataclass
class SweepRow:
    """One grid point's result: its knob values, the primary metric with its CI and its paired
    difference from base."""

    values: dict[str, Any]
    name: str
    metric: str
    mean: float
    low: float
    high: float
    n: int
    vs_base: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    method: str
    bench: str
    metric: str
    grid: dict[str, list[Any]]
    defaults: dict[str, Any]
    base: SweepRow | None
    rows: list[SweepRow]
    plots: list[str] = field(default_factory=list)


def _row(name: str, values: dict[str, Any], rows: dict[str, dict[str, Any]], metric: str) -> SweepRow:
    scores = [float(r["score"][metric]) for r in rows.values() if r["score"].get(metric) is not None]
    scores = [s for s in scores if not math.isnan(s)]
    mean, low, high = mean_interval(scores) if scores else (math.nan, math.nan, math.nan)
    return SweepRow(values, name, metric, mean, low, high, len(scores))


def run_sweep(
    loaded: LoadedModel,
    task: Task,
    data: str | Path,
    method: str,
    grid: dict[str, list[Any]],
    out_dir: str | Path,
    *,
    fixed: dict[str, Any] | None = None,
    samples: Sequence[Sample] | None = None,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    mode: str = "official",
    seed: int = 0,
    prompt_suffix: str | None = None,
    overwrite: bool = False,
    allow_images_outside_root: bool = False,
    with_base: bool = True,
    plots: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> SweepResult:
    """Run every grid point (and base) as its own eval run under ``out_dir``; see the module docstring."""
    out = Path(out_dir)
    fixed = dict(fixed or {})
    runners = point_methods(method, grid, fixed)  # all validated before any run
    points = grid_points(grid)
    common = dict(
        image_root=image_root,
        limit=limit,
        batch_size=batch_size,
        settings=settings,
        mode=mode,
        seed=seed,
        prompt_suffix=prompt_suffix,
        overwrite=overwrite,
        allow_images_outside_root=allow_images_outside_root,
        samples=samples,
    )
    metric = task.primary

    def tagged(label: str) -> Callable[[str, int, int], None] | None:
        if progress is None:
            return None
        return lambda _name, done, total: progress(label, done, total)

    base_row, base_rows = None, None
    if with_base:
        evaluate(loaded, task, data, ["base"], out / "base", progress=tagged("base"), **common)
        base_rows = _rows_of(out / "base" / task.name / "base")
        base_row = _row("base", {}, base_rows, metric)
    rows = []
    for values, runner in zip(points, runners, strict=True):
        name = point_name(values)
        folder = out / "points" / name
        evaluate(loaded, task, data, [runner], folder, progress=tagged(name), **common)
        got = _rows_of(folder / task.name / runner.name)
        row = _row(name, values, got, metric)
        if base_rows is not None:
            row.vs_base = against_base(base_rows, got, metric, seed=seed)
        rows.append(row)
    defaults = {k: getattr(METHODS[method].config_class(), k) for k in grid}
    result = SweepResult(method, task.name, metric, grid, defaults, base_row, rows)
    write_sweep(out, result, fixed)
    if plots:
        result.plots = [str(plot_knob(result, knob, out / f"sweep_{knob}.png")) for knob in grid]
    return result


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def write_sweep(out: Path, result: SweepResult, fixed: dict[str, Any]) -> None:
    """``sweep.json`` (grid, defaults, fixed options, rows) and ``sweep.csv`` (one row per point)."""
    rows = ([result.base] if result.base else []) + result.rows
    payload = {
        "format": SWEEP_FORMAT,
        "method": result.method,
        "bench": result.bench,
        "metric": result.metric,
        "grid": {k: [_plain(v) for v in vs] for k, vs in result.grid.items()},
        "defaults": {k: _plain(v) for k, v in result.defaults.items()},
        "fixed": fixed,
        "rows": [
            {**dataclasses.asdict(r), "values": {k: _plain(v) for k, v in r.values.items()}} for r in rows
        ],
    }
    atomic_write_text(out / "sweep.json", json.dumps(payload, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = list(result.grid)
    writer.writerow(
        ["point", *keys, result.metric, "ci_low", "ci_high", "n", "vs_base", "vs_low", "vs_high", "p"]
    )
    for r in rows:
        vs = r.vs_base
        writer.writerow(
            [
                r.name,
                *[json.dumps(_plain(r.values[k])) if k in r.values else "" for k in keys],
                r.mean,
                r.low,
                r.high,
                r.n,
                vs.get("vs_base.diff", ""),
                vs.get("vs_base.ci_low", ""),
                vs.get("vs_base.ci_high", ""),
                "" if vs.get("vs_base.mcnemar_p") is None else vs["vs_base.mcnemar_p"],
            ]
        )
    atomic_write_text(out / "sweep.csv", buf.getvalue())


def _label(value: Any) -> str:
    return "none" if value is None else str(_plain(value))


def plot_knob(result: SweepResult, knob: str, path: Path) -> Path:
    """The metric (with its 95% CI) against ``knob``: one line per combination of the other knobs; the
    method's default value of ``knob`` marked by a dotted line, base as a grey band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = result.grid[knob]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    xs = {json.dumps(_plain(v)): (float(v) if numeric else i) for i, v in enumerate(values)}
    others = [k for k in result.grid if k != knob]
    lines: dict[str, list[SweepRow]] = {}
    for row in result.rows:
        label = ", ".join(f"{k}={_label(row.values[k])}" for k in others) or result.method
        lines.setdefault(label, []).append(row)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    if result.base is not None and not math.isnan(result.base.mean):
        ax.axhspan(result.base.low, result.base.high, color="0.9", label="base (95% CI)")
        ax.axhline(result.base.mean, color="0.5", lw=0.8)
    for label, rows in lines.items():
        rows = sorted(rows, key=lambda r: xs[json.dumps(_plain(r.values[knob]))])
        x = [xs[json.dumps(_plain(r.values[knob]))] for r in rows]
        y = [r.mean for r in rows]
        err = [[r.mean - r.low for r in rows], [r.high - r.mean for r in rows]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    default = json.dumps(_plain(result.defaults.get(knob)))
    if default in xs:
        ax.axvline(
            xs[default], color="black", ls=":", lw=1, label=f"default ({_label(result.defaults[knob])})"
        )
    if not numeric:
        ax.set_xticks(list(xs.values()), [_label(v) for v in values])
    ax.set_xlabel(knob)
    ax.set_ylabel(f"{result.metric} (95% CI)")
    ax.set_title(f"{result.method} on {result.bench}: {knob}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown_table(sweep_json: str | Path) -> str:
    """A sweep's table as Markdown (from its ``sweep.json``): point, metric [95% CI], vs base, p, n."""
    payload = json.loads(Path(sweep_json).read_text())
    defaults = payload["defaults"]
    lines = [
        f"| point | {payload['metric']} [95% CI] | vs base [95% CI] | McNemar p | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in payload["rows"]:
        is_default = bool(row["values"]) and all(defaults.get(k) == v for k, v in row["values"].items())
        vs = row["vs_base"]
        diff = ""
        if vs:
            low, high = 100 * vs["vs_base.ci_low"], 100 * vs["vs_base.ci_high"]
            diff = f"{100 * vs['vs_base.diff']:+.1f} [{low:+.1f}, {high:+.1f}]"
        p_value = vs.get("vs_base.mcnemar_p") if vs else None
        lines.append(
            f"| {row['name']}{' (default)' if is_default else ''} | {100 * row['mean']:.1f} "
            f"[{100 * row['low']:.1f}, {100 * row['high']:.1f}] | {diff} | "
            f"{'' if p_value is None else f'{p_value:.3g}'} | {row['n']} |"
        )
    return "\n".join(lines) + "\n"
