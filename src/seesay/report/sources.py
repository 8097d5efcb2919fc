"""Readers: what seesay writes, turned into report sections.

========================  =====================================================================
source                    recognised by
========================  =====================================================================
an eval run folder        ``manifest.json`` (+ ``{bench}/{method}/predictions.jsonl``)
a sweep folder            ``sweep.json``
a layer profile           a JSON file with ``auroc`` and ``num_layers`` (``seesay profile``)
a demo run                a JSON file with ``"format": "seesay-demo/2"`` (or ``/1``) (``seesay demo --json``)
a per-token trace         a JSONL file of ``token_id`` rows (``seesay ask --trace``)
========================  =====================================================================

Anything else is refused with one line. Scores come from the per-question files, not the summaries:
each method's primary metric with its 95% interval (:func:`seesay.eval.stats.mean_interval`), and its
paired difference from base on the questions both answered (:func:`seesay.eval.stats.paired_difference`).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError, SeesayError
from ..eval.stats import mean_interval, paired_difference
from . import figures
from .gallery import GalleryItem, pick
from .model import Figure, Section, Table, TraceToken, TraceView

DEMO_FORMAT = "seesay-demo/2"  # /2 (2026-12-07): "n" per split; /1: one "n" for both, still read
DEMO_FORMATS = ("seesay-demo/1", DEMO_FORMAT)
GALLERY_LIMIT = 24
TRACE_LIMIT = 4  # traced questions shown per source
RIGHT = 0.5  # a question counts as answered right (for "fixed" / "broken") when its score is >= this


def pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def interval_text(v: Sequence[float]) -> str:
    return f"{pct(v[0])} [{pct(v[1])}, {pct(v[2])}]"


def diff_text(v: Sequence[float]) -> str:
    return f"{100 * v[0]:+.1f} [{100 * v[1]:+.1f}, {100 * v[2]:+.1f}]"


def p_text(p: float | None) -> str:
    return "" if p is None else f"{p:.3g}"


def read_sources(paths: Sequence[str | Path]) -> list[Section]:
    """The sections of every path, in order (see the module docstring for what each can be)."""
    if not paths:
        raise DataError("seesay report needs at least one path (an eval run, a sweep, a profile, a demo run)")
    sections: list[Section] = []
    for raw in paths:
        sections += read_source(Path(raw))
    return sections


def read_source(path: Path) -> list[Section]:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "sweep.json").exists():
            return sweep_sections(path)
        if (path / "manifest.json").exists():
            return eval_sections(path)
        raise DataError(f"{path}: neither an eval run (manifest.json) nor a sweep (sweep.json)")
    if path.suffix == ".jsonl":
        return [trace_section(path)]
    data = _read_json(path)
    if isinstance(data, dict) and data.get("format") in DEMO_FORMATS:
        return demo_sections(data, str(path))
    if isinstance(data, dict) and "auroc" in data and "num_layers" in data:
        return [profile_section(data, str(path))]
    if isinstance(data, dict) and data.get("format") is not None and "grid" in data:
        return sweep_sections(path.parent)
    raise DataError(f"{path}: not a file seesay report reads (a demo run, a layer profile, a sweep)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read it as JSON ({err})") from err


# ---------------------------------------------------------------------------------------------- eval runs


def _scores(rows: Mapping[str, dict], metric: str) -> dict[str, float]:
    out = {}
    for i, row in rows.items():
        value = row.get("score", {}).get(metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[i] = float(value)
    return out


def comparison(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str, base: str = "base"
) -> tuple[dict, dict, Table]:
    """``scores[method][group][id]`` -> (intervals, paired differences from base, table)."""
    accuracy: dict[str, dict[str, tuple[float, float, float]]] = {}
    paired: dict[str, dict[str, tuple[float, float, float]]] = {}
    rows = []
    for method, groups in scores.items():
        accuracy[method] = {}
        for group, values in groups.items():
            if not values:
                continue
            accuracy[method][group] = mean_interval(list(values.values()))
            row = [method, group, interval_text(accuracy[method][group]), str(len(values)), "", ""]
            if method != base and group in scores.get(base, {}):
                common = sorted(set(values) & set(scores[base][group]))
                if common:
                    d = paired_difference(
                        [scores[base][group][i] for i in common], [values[i] for i in common]
                    )
                    paired.setdefault(method, {})[group] = (d.diff, d.low, d.high)
                    row[4:] = [diff_text((d.diff, d.low, d.high)), p_text(d.p_value)]
            rows.append(row)
    columns = ["method", "split", f"{metric} (%) [95% CI]", "n", "vs base (points) [95% CI]", "McNemar p"]
    return accuracy, paired, Table(f"{metric} per method, and each method against base", columns, rows)


def eval_sections(folder: Path) -> list[Section]:
    """Method comparison per bench, its gallery (when the data is still readable) and traces."""
    from ..eval.runner import read_done
    from ..eval.tasks import get_task

    manifest = _read_json(folder / "manifest.json")
    benches = manifest.get("benches") if isinstance(manifest, dict) else None
    if not isinstance(benches, dict) or not benches:
        raise DataError(f"{folder}/manifest.json: names no bench (not an eval run of this seesay?)")
    sections: list[Section] = []
    for bench, info in benches.items():
        try:
            task = get_task(bench)
        except SeesayError as err:
            raise DataError(f"{folder}: {err}") from err
        rows = {
            p.parent.name: read_done(p, repair=False)
            for p in sorted((folder / bench).glob("*/predictions.jsonl"))
        }
        rows = {m: r for m, r in rows.items() if r}
        if not rows:
            raise DataError(f"{folder}/{bench}: no predictions yet (is the run finished?)")
        methods = ["base", *sorted(m for m in rows if m != "base")] if "base" in rows else sorted(rows)
        rows = {m: rows[m] for m in methods}
        metric = task.primary
        scores = {m: {bench: _scores(r, metric)} for m, r in rows.items()}
        accuracy, paired, table = comparison(scores, metric)
        section = Section("methods", f"{bench}: methods compared", source=str(folder), tables=[table])
        section.notes.append(
            f"model {manifest.get('model')} ({manifest.get('family')}); metric mode "
            f"{info.get('metric_mode')}; {max(len(r) for r in rows.values())} questions"
        )
        section.figures.append(
            Figure(f"{bench}_methods.png", figures.method_comparison(accuracy, paired, metric=metric))
        )
        summary = _read_json(folder / "summary.json") if (folder / "summary.json").exists() else {}
        per_method = summary.get(bench, {}) if isinstance(summary, dict) else {}
        keys = sorted(
            {k for v in per_method.values() for k in v if k != "n" and not k.startswith(("vs_base", "_"))}
        )
        if per_method and keys != [metric]:
            section.tables.append(
                Table(
                    "every metric of summary.json (x100; corpus-level where the benchmark defines it)",
                    ["method", *keys],
                    [[m, *(pct(v.get(k, float("nan"))) for k in keys)] for m, v in per_method.items()],
                )
            )
        evidence = [
            [m, *(pct(_mean(_scores(r, k))) for k in ("evidence_auroc", "evidence_auprc", "evidence_ndcg"))]
            for m, r in rows.items()
            if _scores(r, "evidence_auroc")
        ]
        if evidence:
            section.tables.append(
                Table("evidence retrieval of the maps (x100)", ["method", "AUROC", "AUPRC", "NDCG"], evidence)
            )
        sections.append(section)
        sections.append(_eval_gallery(folder, bench, task, info, rows))
        traced = [(m, row) for m, r in rows.items() for row in r.values() if row.get("trace")][:TRACE_LIMIT]
        if traced:
            views = [
                TraceView(f"{m}: {row['question']} -> {row['prediction']}", trace_tokens(row["trace"]))
                for m, row in traced
            ]
            sections.append(Section("trace", f"{bench}: per-token traces", str(folder), traces=views))
    return sections


def _mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


def _eval_gallery(folder: Path, bench: str, task, info: dict, rows: dict[str, dict]) -> Section:
    from ..eval.runner import select_samples

    section = Section("gallery", f"{bench}: questions, evidence and answers", source=str(folder))
    section.gallery_methods = list(rows)
    try:
        samples = select_samples(
            task,
            Path(info["data"]),
            info.get("image_root"),
            info.get("limit"),
            allow_images_outside_root=True,
        )
    except (SeesayError, KeyError, OSError) as err:
        section.notes.append(f"no gallery: the run's data cannot be read now ({err})")
        return section
    by_id = {s.id: s for s in samples}
    metric = task.primary
    ids = [i for i in next(iter(rows.values())) if i in by_id and all(i in r for r in rows.values())]
    candidates = []
    for i in ids:
        scores = {m: r[i]["score"].get(metric) for m, r in rows.items()}
        candidates.append((i, {m: s is not None and float(s) >= RIGHT for m, s in scores.items()}))
    stub = [GalleryItem(i, "", [], {}, correct, image=Image.new("RGB", (1, 1))) for i, correct in candidates]
    items = []
    for chosen in pick(stub, GALLERY_LIMIT):
        sample = by_id[chosen.id]
        try:
            image = sample.load_image()
            image = (Image.open(image) if isinstance(image, Path) else image).convert("RGB")
        except OSError as err:
            section.notes.append(f"{sample.id}: image unreadable ({err}); left out")
            continue
        emap = None
        stored = next(
            (r[chosen.id].get("evidence_map") for r in rows.values() if r[chosen.id].get("evidence_map")),
            None,
        )
        if stored:
            from ..methods.vea.evidence import expand_map

            emap = expand_map(stored, image.size)
        items.append(
            GalleryItem(
                id=sample.id,
                question=sample.question,
                references=list(sample.answers),
                answers={m: r[chosen.id]["prediction"] for m, r in rows.items()},
                correct=chosen.correct,
                image=image,
                boxes=[list(b) for b in sample.meta.get("boxes") or []],
                emap=emap,
            )
        )
    section.gallery = items
    if not any(i.emap is not None for i in items):
        section.notes.append("no evidence maps in this run (VEA's rows store them)")
    return section


# ----------------------------------------------------------------------------------------------- profiles


def profile_section(data: dict, source: str) -> Section:
    """Per-layer AUROC / AUPRC / NDCG of a layer profile with its chosen layers, and RAPT per segment."""
    section = Section("layers", f"layer profile of {data.get('model', '?')}", source=source)
    curves = {k.upper(): data[k] for k in ("auroc", "auprc", "ndcg") if data.get(k)}
    n = int(data["num_layers"])
    layers = [int(v) for v in data.get("layers", [])]
    section.figures.append(
        Figure(
            "profile_layers.png",
            figures.layer_curves(
                curves,
                shallow=range(max(1, n // 4)),
                deep=range(n // 2, n),
                marked=layers,
                marked_label="L_VG (chosen)",
                title=f"evidence retrieval by layer ({data.get('n_samples', '?')} samples)",
                ylabel="score",
            ),
        )
    )
    if data.get("rapt"):
        section.figures.append(Figure("profile_rapt.png", figures.rapt_curves(data["rapt"])))
    section.notes.append(f"chosen layers (L_VG): {layers}; shallow = first quarter, deep = second half")
    cols = ["layer", *curves, *(f"RAPT {k}" for k in data.get("rapt", {}))]
    rows = []
    for i in range(n):
        row = [str(i), *(f"{v[i]:.3f}" for v in curves.values())]
        row += [f"{v[i]:.2f}" for v in data.get("rapt", {}).values()]
        rows.append(row)
    section.tables.append(Table("per layer", cols, rows))
    return section


# ------------------------------------------------------------------------------------------------- sweeps


def sweep_sections(folder: Path) -> list[Section]:
    """The sweep's plots (the metric against each knob, base and the default marked) and its table."""
    from ..eval.sweep import SweepResult, SweepRow, plot_knob

    data = _read_json(folder / "sweep.json")
    try:
        rows = [SweepRow(**r) for r in data["rows"]]
        base = next((r for r in rows if r.name == "base"), None)
        result = SweepResult(
            data["method"], data["bench"], data["metric"], data["grid"], data["defaults"], base,
            [r for r in rows if r.name != "base"],
        )  # fmt: skip
    except (KeyError, TypeError) as err:
        raise DataError(f"{folder}/sweep.json: not a sweep of this seesay ({err})") from err
    section = Section("sweep", f"sweep of {result.method} on {result.bench}", source=str(folder))
    with tempfile.TemporaryDirectory() as tmp:
        for knob in result.grid:
            path = plot_knob(result, knob, Path(tmp) / f"{knob}.png")
            section.figures.append(Figure(f"sweep_{result.method}_{knob}.png", path.read_bytes()))
    table = []
    for r in ([base] if base else []) + result.rows:
        vs = r.vs_base
        diff = (
            diff_text((vs["vs_base.diff"], vs["vs_base.ci_low"], vs["vs_base.ci_high"]))
            if "vs_base.diff" in vs
            else ""
        )
        table.append(
            [
                r.name,
                interval_text((r.mean, r.low, r.high)),
                diff,
                p_text(vs.get("vs_base.mcnemar_p")),
                str(r.n),
            ]
        )
    section.tables.append(
        Table(
            f"{result.metric} per grid point",
            ["point", f"{result.metric} (%) [95% CI]", "vs base", "p", "n"],
            table,
        )
    )
    return [section]


# ------------------------------------------------------------------------------------------------- traces


def trace_tokens(steps: Sequence[dict]) -> list[TraceToken]:
    """Trace rows (one per generated token) -> tokens with a shift plot where the step logged shifts."""
    out = []
    for k, step in enumerate(steps):
        shift = {str(a): float(b) for a, b in (step.get("shift") or {}).items()}
        basic = step.get("basic_layer")
        token = TraceToken(
            token=str(step.get("token", step.get("token_id", ""))),
            basic_layer=None if basic is None else int(basic),
            shift=shift,
            suppressed={str(a): list(b) for a, b in (step.get("suppressed_heads") or {}).items()},
            extra={
                key: v
                for key, v in step.items()
                if key not in {"token", "token_id", "shift", "basic_layer", "suppressed_heads", "step"}
            },
        )
        if shift:
            token.figure = Figure(
                f"trace_step{k}.png",
                figures.shift_profile(shift, token.basic_layer, title=f"step {step.get('step', k)}"),
            )
        out.append(token)
    return out


def trace_section(path: Path) -> Section:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{n}: not a JSON line ({err})") from err
        if not isinstance(row, dict) or "token_id" not in row:
            raise DataError(f"{path}:{n}: not a trace row of seesay ask --trace (no token_id)")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: an empty trace")
    text = "".join(str(r.get("token") or "") for r in rows)
    return Section(
        "trace",
        f"per-token trace: {text.strip()!r}",
        str(path),
        traces=[TraceView(path.name, trace_tokens(rows))],
    )


# -------------------------------------------------------------------------------------------------- demo


def sizes_text(sizes: dict[str, int], unit: str = "") -> str:
    """A demo run's test sizes: '1100{unit} per split' where all are equal, else 'iid 700, counterfactual
    1100'."""
    if len(set(sizes.values())) == 1:
        return f"{next(iter(sizes.values()))}{unit} per split"
    return ", ".join(f"{s} {k}" for s, k in sizes.items())


def demo_sections(data: dict, source: str) -> list[Section]:
    """A demo run: accuracies with CIs and paired differences, the per-type table, the layer curves
    with the phenomena's numbers, the gallery and DualPD's traces."""
    try:
        splits = list(data["splits"])
        methods = list(data["accuracy"])
        accuracy = {m: {s: tuple(data["accuracy"][m][s]) for s in splits} for m in methods}
        paired = {m: {s: tuple(v[s][:3]) for s in splits} for m, v in data["paired"].items()}
        sizes = data.get("n")
        if not isinstance(sizes, dict):  # format seesay-demo/1: one size for every split
            sizes = dict.fromkeys(splits, sizes)
        if not all(isinstance(sizes.get(s), int) for s in splits):
            raise TypeError(f"n is {data.get('n')!r}, not a question count per split")
    except (KeyError, TypeError, IndexError) as err:
        raise DataError(f"{source}: a damaged demo run ({err})") from err
    shown = sizes_text({s: sizes[s] for s in splits}, " questions")
    section = Section("methods", f"demo: methods compared ({shown})", source)
    section.figures.append(Figure("demo_methods.png", figures.method_comparison(accuracy, paired)))
    rows = []
    for m in methods:
        for s in splits:
            row = [m, s, interval_text(accuracy[m][s]), str(sizes.get(s)), "", ""]
            if m in data["paired"]:
                d = data["paired"][m][s]
                row[4:] = [diff_text(d[:3]), p_text(d[3])]
            rows.append(row)
    section.tables.append(
        Table(
            "accuracy per method and split, and each method against base",
            ["method", "split", "accuracy (%) [95% CI]", "n", "vs base (points) [95% CI]", "McNemar p"],
            rows,
        )
    )
    per_type = data.get("per_type", {})
    if per_type:
        qtypes = list(next(iter(next(iter(per_type.values())).values())))
        cols = ["type", *(f"{s[:2]} {m}" for s in splits for m in methods)]
        table = []
        for q in qtypes:
            cells = [q]
            for s in splits:
                for m in methods:
                    acc, count = per_type[s][m][q]
                    cells.append(f"{pct(acc)} ({count})" if count else "")
            table.append(cells)
        section.tables.append(Table("accuracy per question type (n)", cols, table))
    layers = Section("layers", "demo: where the model looks and what it knows, by depth", source)
    auroc, lens = data["layer_auroc"], data["lens_accuracy"]
    layers.figures.append(
        Figure(
            "demo_layers.png",
            figures.layer_curves(
                {"evidence AUROC of attention": auroc, "logit-lens accuracy": lens},
                shallow=data["shallow"],
                deep=data["deep"],
                marked=data.get("profiled_layers", []),
                marked_label="profiled layers (dev split)",
                title="by depth",
            ),
        )
    )
    deep_best = max(auroc[i] for i in data["deep"])
    shallow_mean = float(np.mean([auroc[i] for i in data["shallow"]]))
    layers.notes.append(
        f"deep vs shallow: best deep layer {deep_best:.3f}, shallow mean {shallow_mean:.3f} "
        f"(difference {deep_best - shallow_mean:+.3f})"
    )
    right, wrong = data["believing"]["right"], data["believing"]["wrong"]
    layers.notes.append(
        f"seeing but not believing: evidence AUROC of the profiled layers {data.get('profiled_layers')} is "
        f"{right[0]:.3f} on rightly answered questions (n={right[1]}) and {wrong[0]:.3f} on wrongly answered "
        f"ones (n={wrong[1]})"
    )
    for split in splits:
        hits, errors, chance = data["saw_right_at_layer"][split]
        layers.notes.append(
            f"saw right, said wrong ({split}): at L{data['saw_right_layer']}, {hits} of {errors} wrong "
            f"answers have the right lens top-1 ({pct(hits / errors if errors else float('nan'))}%; chance "
            f"{pct(chance)}%)"
        )
    usual, colour_errors = data["prior_errors"]
    layers.notes.append(
        f"the prior at work: {usual} of {colour_errors} counterfactual colour errors name the usual colour"
    )
    layers.tables.append(
        Table(
            "by depth (S shallow, D deep)",
            [
                "",
                *(
                    f"L{i}{' S' if i in data['shallow'] else ' D' if i in data['deep'] else ''}"
                    for i in range(len(auroc))
                ),
            ],
            [
                ["evidence AUROC", *(f"{a:.3f}" for a in auroc)],
                ["lens accuracy", *(f"{a:.3f}" for a in lens)],
            ],
        )
    )
    gallery = Section("gallery", "demo: questions, evidence and answers", source)
    gallery.gallery = [GalleryItem.from_json(item) for item in data.get("gallery", [])]
    gallery.gallery_methods = methods
    out = [section, layers, gallery]
    traces = data.get("traces", [])
    if traces:
        out.append(
            Section(
                "trace",
                "demo: DualPD per token",
                source,
                notes=[
                    f"DualPD's head filter fired on {pct(data.get('head_filter_share', float('nan')))}% of "
                    f"decode steps (floor(rho x heads) = {data.get('heads_suppressed')} heads per layer)"
                ],
                traces=[TraceView(t["label"], trace_tokens(t["steps"])) for t in traces],
            )
        )
    return out
