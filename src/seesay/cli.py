"""The ``seesay`` command line: ``seesay ask --model M --image IMG --question Q --method base``.

Every failure the user can cause ends in one line on stderr and exit code 2 (usage errors, bad input),
130 after Ctrl-C; tracebacks are for bugs only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from .errors import ConfigError, SeesayError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,  # bare `seesay` is a usage error (one line), not a page of help
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Make vision-language models say what they see.",
)
err_console = Console(stderr=True)
out_console = Console()

FALLBACK_MODEL = "tiny-random:llava"
HELP_WIDTH = 150  # --help piped to a file or a pager: wide enough that no option name is cut


def _method_keys() -> dict[str, list[str]]:
    from .methods import METHODS

    return {name: [f.name for f in dataclasses.fields(cls.config_class)] for name, cls in METHODS.items()}


def _families() -> list[str]:
    from .engine.adapters import ADAPTERS

    return [a.family for a in ADAPTERS]  # the test kit builds one tiny model per supported family


# Option help that names what the registries hold. The registries import torch, so the names are filled in
# only when a command's help is shown (RegistryHelpCommand): `seesay --help` and every run skip them.
METHODS_SLOT, KEYS_SLOT, FAMILIES_SLOT = "{methods}", "{method keys}", "{families}"
METHOD_HELP = f"Method: {METHODS_SLOT} (docs/methods/)."
KEYS_HELP = f"Keys per method: {KEYS_SLOT}."
SET_HELP = "Method option KEY=VALUE (repeatable). " + KEYS_HELP
MODEL_HELP = (
    "Model path or hub id (default: the bundled demo model); tiny-random:FAMILY builds a random "
    f"tiny model offline, FAMILY one of {FAMILIES_SLOT}."
)


def registry_help(text: str) -> str:
    """``text`` with the registry slots filled: method names, each method's ``--set`` keys, the families."""
    if METHODS_SLOT in text or KEYS_SLOT in text:
        keys = _method_keys()
        text = text.replace(METHODS_SLOT, ", ".join(keys))
        listed = (f"{name} ({', '.join(k) if k else 'no options'})" for name, k in keys.items())
        text = text.replace(KEYS_SLOT, "; ".join(listed))
    if FAMILIES_SLOT in text:
        text = text.replace(FAMILIES_SLOT, ", ".join(_families()))
    return text


class RegistryHelpCommand(TyperCommand):
    """A command whose options' help is completed from the registries when its help is rendered."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            if getattr(param, "help", None):
                param.help = registry_help(param.help)  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


def command(name: str | None = None):
    """``@command()``: register a subcommand of ``app`` whose help is completed from the registries."""
    return app.command(name, cls=RegistryHelpCommand)


def default_model() -> str:
    """The bundled trained demo model when this installation has it, else a seeded random tiny LLaVA."""
    from .demo import demo_model_path

    path = demo_model_path()
    return str(path) if path is not None else FALLBACK_MODEL


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["rho=0.2", "target=output"]`` -> ``{"rho": 0.2, "target": "output"}`` (JSON, else str)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {pair!r} is not KEY=VALUE")
        try:
            options[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = raw
    return options


def parse_method_options(pairs: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--set dualpd.rho=0.2 --set vea.profile=p.json`` -> ``{"dualpd": {"rho": 0.2}, "vea": {...}}``.

    A key without a ``METHOD.`` prefix is allowed when exactly one method runs.
    """
    per_method: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in parse_options(pairs).items():
        name, dot, option = key.partition(".")
        if not dot:
            if len(methods) != 1:
                raise ConfigError(
                    f"option {key!r} needs its method: --set METHOD.{key}=... (methods: {', '.join(methods)})"
                )
            name, option = methods[0], key
        if name not in per_method:
            raise ConfigError(
                f"--set {key}: {name!r} is not one of the methods of this run ({', '.join(methods)})"
            )
        per_method[name][option] = value
    return per_method


def parse_max_pixels(text: str) -> int | str | None:
    """``--max-pixels``: "preset", "none", a number of pixels or WIDTHxHEIGHT."""
    value = text.strip().lower()
    if value in ("preset", "none"):
        return None if value == "none" else "preset"
    parts = value.replace("*", "x").split("x")
    if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--max-pixels must be preset, none, a number or WIDTHxHEIGHT; got {text!r}")
    number = int(parts[0]) * (int(parts[1]) if len(parts) == 2 else 1)
    if number < 1:
        raise ConfigError(f"--max-pixels must be positive; got {text!r}")
    return number


MAX_PIXELS_HELP = (
    "Qwen2-VL / Qwen2.5-VL pixel budget: preset (512x512 for models with published VEA presets, as the "
    "VEA reference; else the processor's), none (the processor's), or a number (262144 or 512x512)."
)


# Options eval and sweep share
BenchOpt = Annotated[
    str, typer.Option("--bench", "-b", help="vqav2, okvqa, gqa, textvqa, vizwiz, docvqa, visual_cot")
]
DataFileOpt = Annotated[
    Path, typer.Option("--data", "-d", help="The benchmark's question/annotation file or parquet.")
]
OverwriteOpt = Annotated[
    bool, typer.Option(help="Start again in --out even if it holds another run's results.")
]
ImageRootOpt = Annotated[Path | None, typer.Option(help="Image folder (default: the format's usual place).")]
AllowOutsideOpt = Annotated[
    bool, typer.Option(help="Accept image paths in the data file that leave the image root.")
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N samples.")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Samples per batch.")]
MaxNewTokensOpt = Annotated[int | None, typer.Option(min=1, help="Default: the benchmark's (16, DocVQA 32).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
DtypeOpt = Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")]
RunDeviceOpt = Annotated[str | None, typer.Option(help="Device (default: this process' accelerator).")]
MaxPixelsOpt = Annotated[str, typer.Option(help=MAX_PIXELS_HELP)]
ReportOpt = Annotated[
    Path | None,
    typer.Option(help="Also write the HTML report here (figures inline; their PNGs in NAME_files/)."),
]


def check_report_path(path: Path | None, what: str = "--report") -> None:
    """The report's own path check, run before any work (the report package loads only when asked)."""
    if path is not None:
        from .report import check_report_path as check

        check(path, what)


def unescape(text: str) -> str:
    """``\\n`` and ``\\t`` typed on a command line become a newline and a tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


@command()
def ask(
    image: Annotated[
        list[Path], typer.Option("--image", "-i", help="Image file (repeat for several images).")
    ],
    question: Annotated[str, typer.Option("--question", "-q", help="The question to answer.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "base",
    option: Annotated[list[str] | None, typer.Option("--set", "-s", help=SET_HELP)] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Maximum number of new tokens.")] = 32,
    do_sample: Annotated[bool, typer.Option(help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(help="Repetition penalty (1 = off).")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str | None, typer.Option(help="Device, e.g. cpu or cuda:0.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own remote code.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    trace: Annotated[
        Path | None,
        typer.Option(help="Write the method's per-token trace as JSONL here (dualpd, dola, vcd, vea)."),
    ] = None,
) -> None:
    """Answer a question about an image with the chosen decoding method."""
    from .api import ask as ask_fn
    from .engine.decoding import GenerationSettings
    from .engine.loading import load_model
    from .methods import get_method

    options = parse_method_options(option or [], [method])[method] if option else {}
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    model = model or default_model()
    runner = get_method(method, **options)
    if trace is not None and not runner.writes_trace:
        from .methods import METHODS

        tracing = ", ".join(n for n, cls in METHODS.items() if cls.writes_trace)
        raise ConfigError(f"method {method!r} writes no per-token trace; --trace works with {tracing}")
    runner.trace = trace is not None
    loaded = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    answer = ask_fn(loaded, [str(p) for p in image], question, method=runner, settings=settings)
    if trace is not None:
        write_trace(trace, answer, getattr(loaded.processor, "tokenizer", loaded.processor))
        err_console.print(f"trace: {len(answer.token_ids)} tokens written to {escape(str(trace))}")
    if as_json:
        payload = {
            "model": model,
            "method": answer.method,
            "question": question,
            "answer": answer.text,
            "token_ids": answer.token_ids,
            "config": answer.config,
        }
        out_console.print_json(json.dumps(payload))
        return
    if loaded.info.get("random_weights"):
        err_console.print(f"[yellow]note:[/] {model} has random weights: its answer is noise (a smoke test)")
    out_console.print(f"[bold]{method}[/] ({loaded.family}): {escape(answer.text)}")


def write_trace(path: Path, answer, tokenizer: Any = None) -> None:
    """One JSON line per generated token: its id, its text and what the method logged at that step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as f:
        for token, step in zip(answer.token_ids, answer.trace, strict=False):
            text = tokenizer.decode([token]) if tokenizer is not None else None
            f.write(json.dumps({"token_id": token, "token": text, **step}) + "\n")
    tmp.replace(path)


@command()
def profile(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Visual-CoT records (JSON or JSONL) with boxes.")
    ],
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of records to profile on.")] = 100,
    out: Annotated[
        Path, typer.Option(help="Where to save the profile (JSON) that --method vea loads.")
    ] = Path("seesay_profile.json"),
    image_root: Annotated[
        Path | None, typer.Option(help="Folder the records' image paths are relative to.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per forward pass.")] = 4,
    top_fraction: Annotated[float, typer.Option(help="Fraction of layers kept as L_VG.")] = 0.1,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str | None, typer.Option(help="Device, e.g. cpu or cuda:0.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own remote code.")] = False,
    allow_images_outside_root: Annotated[
        bool, typer.Option(help="Accept image paths in the records that leave the image root.")
    ] = False,
) -> None:
    """Profile which layers attend to the evidence (VEA): per-layer AUROC, AUPRC, NDCG and RAPT."""
    from rich.progress import Progress
    from rich.table import Table

    from .engine.loading import load_model
    from .eval.data import load_visual_cot
    from .methods.vea.profiling import profile_layers

    model = model or default_model()
    from .eval.runner import check_image_paths

    records = load_visual_cot(data, image_root=image_root, limit=n)
    check_image_paths(records, image_root or data.parent, allow_images_outside_root)  # type: ignore[arg-type]
    loaded = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("profiling", total=len(records))
        result = profile_layers(
            loaded,
            records,
            n=n,
            batch_size=batch_size,
            top_fraction=top_fraction,
            progress=lambda k: bar.advance(task, k),
        )
    table = Table(
        title=f"{model}: evidence retrieval per layer ({result.n_samples} samples, "
        f"{result.n_skipped} skipped)"
    )
    for col in ("layer", "AUROC", "AUPRC", "NDCG", "RAPT img", "RAPT q", "RAPT evid", "RAPT non-ev", "L_VG"):
        table.add_column(col, justify="right")
    for layer in range(result.num_layers):
        r = result.rapt
        table.add_row(
            str(layer),
            f"{result.auroc[layer]:.3f}",
            f"{result.auprc[layer]:.3f}",
            f"{result.ndcg[layer]:.3f}",
            f"{r['image'][layer]:.2f}",
            f"{r['question'][layer]:.2f}",
            f"{r['evidence'][layer]:.2f}",
            f"{r['non_evidence'][layer]:.2f}",
            "*" if layer in result.layers else "",
        )
    out_console.print(table)
    out_console.print(f"L_VG = {list(result.layers)}")
    result.save(out)
    out_console.print(f"saved {out}  (use it with: --method vea --set profile={out})")


class _RunProgress:
    """A rich bar per label for long runs, started only once work starts (a refused run prints its one
    line and nothing else); ``with`` stops it, also on error or Ctrl-C."""

    def __init__(self, prefix: str, disable: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.prefix, self.bar, self.tasks = (
            prefix,
            Progress(*columns, console=err_console, disable=disable),
            {},
        )

    def __call__(self, label: str, completed: int, total: int) -> None:
        if not self.tasks:
            self.bar.start()
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(f"{self.prefix}{label}", total=total, completed=completed)
        else:
            self.bar.update(self.tasks[label], completed=completed)

    def __enter__(self) -> _RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            self.bar.stop()


@command("eval")
def eval_command(
    bench: BenchOpt,
    data: DataFileOpt,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods, e.g. base,dualpd,vea. " + METHOD_HELP)
    ] = "base",
    option: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="METHOD.KEY=VALUE, e.g. dualpd.rho=0.2 (repeatable). " + KEYS_HELP),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder (resumes what is there).")] = Path("runs/eval"),
    overwrite: OverwriteOpt = False,
    image_root: ImageRootOpt = None,
    allow_images_outside_root: AllowOutsideOpt = False,
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = 8,
    max_new_tokens: MaxNewTokensOpt = None,
    prompt_suffix: Annotated[
        str | None,
        typer.Option(
            help="Text appended to each question (\\n for a newline). Default: the model's own setting "
            "(seesay.json beside its config; the bundled model: none), else the benchmark's "
            "(the short-answer instruction)."
        ),
    ] = None,
    metric_mode: Annotated[
        str,
        typer.Option(
            help="Metric conventions: official, lmms-eval, and per benchmark official-2016 (VQAv2, OK-VQA, "
            "TextVQA) or llava (GQA); docs/evaluation.md."
        ),
    ] = "official",
    seed: SeedOpt = 0,
    dtype: DtypeOpt = "auto",
    device: RunDeviceOpt = None,
    device_map: Annotated[
        str | None, typer.Option(help="e.g. auto, to split a large model over GPUs.")
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own remote code.")] = False,
    max_pixels: MaxPixelsOpt = "preset",
    trace: Annotated[
        bool,
        typer.Option(
            help="Keep each answer's per-token trace in predictions.jsonl (dualpd, dola, vcd, vea)."
        ),
    ] = False,
    report: ReportOpt = None,
) -> None:
    """Evaluate methods on a benchmark: per-sample JSONL, summary table/JSON/CSV, manifest; resumable."""
    from rich.table import Table

    from .engine.decoding import GenerationSettings
    from .engine.loading import load_model
    from .eval.runner import (
        Dist,
        evaluate,
        precheck,
        refuse_device_map_in_parallel,
        refuse_single_process_cpu_launch,
    )
    from .eval.tasks import get_task
    from .methods import get_method

    model = model or default_model()
    task = get_task(bench)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods names no method")
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods lists a method twice: {methods}")
    per_method = parse_method_options(option or [], names)
    runners = [get_method(name, **per_method[name]) for name in names]  # bad options fail before loading
    check_report_path(report)
    for runner in runners:
        runner.trace = trace and runner.writes_trace
    pixels = parse_max_pixels(max_pixels)
    refuse_single_process_cpu_launch()
    refuse_device_map_in_parallel(device_map)
    # Bad data, a bad mode or a folder in use are refused before a (large) model is loaded.
    samples = precheck(
        task,
        data,
        out,
        image_root=image_root,
        limit=limit,
        mode=metric_mode,
        allow_images_outside_root=allow_images_outside_root,
    )
    dist = Dist.detect()
    if device is None and device_map is None and dist.world > 1:
        import torch
        from accelerate import PartialState

        device = str(PartialState(cpu=not torch.cuda.is_available()).device)
    loaded = load_model(
        model,
        dtype=dtype,
        device=device,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        max_pixels=pixels,
    )
    settings = GenerationSettings(max_new_tokens=max_new_tokens or task.max_new_tokens)
    with _RunProgress(f"{bench}/", disable=dist.rank != 0) as progress:
        summary = evaluate(
            loaded,
            task,
            data,
            runners,
            out,
            image_root=image_root,
            limit=limit,
            batch_size=batch_size,
            settings=settings,
            mode=metric_mode,
            seed=seed,
            progress=progress,
            prompt_suffix=unescape(prompt_suffix) if prompt_suffix is not None else None,
            overwrite=overwrite,
            allow_images_outside_root=allow_images_outside_root,
            samples=samples,
        )
    if summary is None:
        return
    metrics = sorted({k for s in summary.values() for k in s if k != "n" and not k.startswith("vs_base.")})
    table = Table(title=f"{bench} ({metric_mode} metrics) - {model}")
    table.add_column("method")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("n", justify="right")
    for method, scores in summary.items():
        cells = [_percent(scores.get(m)) for m in metrics]  # a method without a metric: blank cell
        table.add_row(method, *cells, str(int(scores["n"])))
    out_console.print(table)
    paired = {m: sc for m, sc in summary.items() if "vs_base.diff" in sc}
    if paired:
        vs = Table(
            title=f"against base on the same questions ({task.primary}; 95% paired bootstrap, McNemar)"
        )
        for col in ("method", "difference", "95% CI", "McNemar p", "n"):
            vs.add_column(col, justify="left" if col == "method" else "right")
        for method, sc in paired.items():
            p_value = sc["vs_base.mcnemar_p"]
            vs.add_row(
                method,
                f"{100 * sc['vs_base.diff']:+.2f}",
                f"[{100 * sc['vs_base.ci_low']:+.2f}, {100 * sc['vs_base.ci_high']:+.2f}]",
                f"{p_value:.3g}" if p_value is not None else "",
                str(sc["vs_base.n"]),
            )
        out_console.print(vs)
    out_console.print(f"predictions, summary.json/csv and manifest.json in {escape(str(out))}")
    if report is not None:
        from .report import write_report

        written = write_report([out], report, title=f"seesay eval: {bench}")
        out_console.print(f"report: {escape(str(written.html))} ({len(written.figures)} figures)")


@command()
def sweep(
    method: Annotated[str, typer.Option("--method", help="The method whose knobs are swept. " + METHOD_HELP)],
    grid: Annotated[
        list[str],
        typer.Option("--grid", "-g", help="KEY=V1,V2,... (repeatable; none = None, [1,2] a list)."),
    ],
    bench: BenchOpt,
    data: DataFileOpt,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="KEY=VALUE fixed at every grid point (repeatable). " + KEYS_HELP),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder (resumes what is there).")] = Path("runs/sweep"),
    overwrite: OverwriteOpt = False,
    base: Annotated[bool, typer.Option(help="Also run base, for the paired differences.")] = True,
    image_root: ImageRootOpt = None,
    allow_images_outside_root: AllowOutsideOpt = False,
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = 8,
    max_new_tokens: MaxNewTokensOpt = None,
    prompt_suffix: Annotated[
        str | None, typer.Option(help="Text appended to each question, as for eval.")
    ] = None,
    metric_mode: Annotated[str, typer.Option(help="Metric conventions, as for eval.")] = "official",
    seed: SeedOpt = 0,
    dtype: DtypeOpt = "auto",
    device: RunDeviceOpt = None,
    max_pixels: MaxPixelsOpt = "preset",
) -> None:
    """Sweep a method's knobs on a benchmark: one resumable eval run per grid point, CIs, plots."""
    from rich.table import Table

    from .engine.decoding import GenerationSettings
    from .engine.loading import load_model
    from .eval.runner import precheck, refuse_single_process_cpu_launch
    from .eval.sweep import parse_grid, point_methods, run_sweep
    from .eval.tasks import get_task

    model = model or default_model()
    task = get_task(bench)
    parsed = parse_grid(grid, method)
    fixed = parse_method_options(option or [], [method])[method]
    point_methods(method, parsed, fixed)  # every point's config is valid before the model loads
    pixels = parse_max_pixels(max_pixels)
    refuse_single_process_cpu_launch()
    samples = precheck(
        task,
        data,
        out,
        image_root=image_root,
        limit=limit,
        mode=metric_mode,
        allow_images_outside_root=allow_images_outside_root,
    )
    loaded = load_model(model, dtype=dtype, device=device, max_pixels=pixels)
    settings = GenerationSettings(max_new_tokens=max_new_tokens or task.max_new_tokens)
    with _RunProgress(f"{bench}/{method} ") as progress:
        result = run_sweep(
            loaded,
            task,
            data,
            method,
            parsed,
            out,
            fixed=fixed,
            samples=samples,
            image_root=image_root,
            limit=limit,
            batch_size=batch_size,
            settings=settings,
            mode=metric_mode,
            seed=seed,
            prompt_suffix=unescape(prompt_suffix) if prompt_suffix is not None else None,
            overwrite=overwrite,
            allow_images_outside_root=allow_images_outside_root,
            with_base=base,
            progress=progress,
        )
    table = Table(title=f"{method} sweep on {bench}: {result.metric} (95% CI), paired against base")
    for col in ("point", result.metric, "95% CI", "vs base", "95% CI ", "McNemar p", "n"):
        table.add_column(col, justify="left" if col == "point" else "right")
    for row in ([result.base] if result.base else []) + result.rows:
        vs = row.vs_base
        default = all(result.defaults.get(k) == v for k, v in row.values.items()) and row.values
        table.add_row(
            row.name + (" (default)" if default else ""),
            _percent(row.mean),
            f"[{_percent(row.low)}, {_percent(row.high)}]",
            f"{100 * vs['vs_base.diff']:+.2f}" if vs else "",
            f"[{100 * vs['vs_base.ci_low']:+.2f}, {100 * vs['vs_base.ci_high']:+.2f}]" if vs else "",
            f"{vs['vs_base.mcnemar_p']:.3g}" if vs and vs.get("vs_base.mcnemar_p") is not None else "",
            str(row.n),
        )
    out_console.print(table)
    out_console.print(
        f"sweep.json, sweep.csv and the plots ({', '.join(Path(p).name for p in result.plots)}) "
        f"in {escape(str(out))}; each point's eval run under points/"
    )


def _percent(value: float | None) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:.2f}"


def _pct(x: float) -> str:
    import math

    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


@command()
def demo(
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            min=1,
            help="Test questions per split. Default: planned on the dev split so that each accuracy's "
            "95% CI is within +-3 points (1,100 at most).",
            show_default=False,
        ),
    ] = None,
    png: Annotated[Path, typer.Option(help="Where to write the heatmap examples.")] = Path("seesay_demo.png"),
    layers_png: Annotated[
        Path, typer.Option(help="Where to write the per-layer plot (AUROC and lens accuracy).")
    ] = Path("seesay_demo_layers.png"),
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Default: the bundled demo model.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per forward pass.")] = 100,
    report: ReportOpt = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also save the run as JSON here (seesay report reads it)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seed of the test questions. Default: the held-out seed 20260601, never used to choose "
            "anything; 20260602 is the dev split a new model's recipe and knobs are chosen on.",
        ),
    ] = None,
) -> None:
    """The whole story on the bundled tiny trained VLM: accuracy with CIs, where it looks, what it knows."""
    import time

    from rich.table import Table

    from .demo import synthetic
    from .demo.run import ANSWER_WORDS, CI_TARGET, DEV_SEED, HELDOUT_SEED, SPLITS, questions_for, run_demo

    check_report_path(report)
    seed = HELDOUT_SEED if seed is None else seed
    which = "held-out" if seed == HELDOUT_SEED else ("dev" if seed == DEV_SEED else f"seed-{seed}")
    t0 = time.perf_counter()
    with err_console.status(f"running base, dualpd and vea on the {which} splits ...") as status:
        result = run_demo(
            n,
            model=model,
            out_png=png,
            layers_png=layers_png,
            batch_size=batch_size,
            progress=lambda s: status.update(f"done {s} ..."),
            seed=seed,
        )
    table = Table(title=f"accuracy on {which} questions, {result.sizes_text()} (95% Wilson CI)")
    table.add_column("method")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for method, per_split in result.accuracy.items():
        cells = [
            f"{_pct(a)} [{100 * lo:.1f}, {100 * hi:.1f}]" for a, lo, hi in (per_split[s] for s in SPLITS)
        ]
        table.add_row(method, *cells)
    out_console.print(table)
    widest = result.widest_ci()
    if result.planned_from:
        planned = ", ".join(f"{s} {100 * a:.0f}%" for s, a in result.planned_from.items())
        out_console.print(
            f"sizes planned on the dev split (base's accuracy there: {planned}); widest 95% CI here "
            f"+-{100 * widest:.1f} points (target +-3)"
        )
    if widest > CI_TARGET:
        out_console.print(
            f"[yellow]the widest 95% CI is +-{100 * widest:.1f} points, over the +-3 target: "
            f"run with --n {questions_for(0.5)} (within +-3 at any accuracy)[/yellow]"
        )
    paired = Table(title="each method against base on the same questions (95% paired bootstrap, McNemar)")
    for col in ("method", "split", "difference", "95% CI", "McNemar p"):
        paired.add_column(col, justify="right" if col != "method" else "left")
    for method, per_split in result.paired.items():
        for split in SPLITS:
            d = per_split[split]
            p_text = f"{d.p_value:.3g}" if d.p_value is not None else ""
            paired.add_row(
                method, split, f"{100 * d.diff:+.1f}", f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]", p_text
            )
    out_console.print(paired)
    types = Table(title="accuracy per question type (n in brackets)")
    types.add_column("type")
    for split in SPLITS:
        for method in result.accuracy:
            types.add_column(f"{split[:2]} {method}", justify="right")
    for qtype in synthetic.QTYPES:
        row = [qtype]
        for split in SPLITS:
            for method in result.accuracy:
                acc, count = result.per_type[split][method][qtype]
                row.append(f"{_pct(acc)} ({count})" if count else "")
        types.add_row(*row)
    out_console.print(types)
    layers = Table(title="by depth: S = shallow (first quarter), D = deep (second half); 0.5 = chance AUROC")
    layers.add_column("")
    for i in range(len(result.layer_auroc)):
        mark = " S" if i in result.shallow else (" D" if i in result.deep else "")
        layers.add_column(f"L{i}{mark}", justify="right")
    layers.add_row("evidence AUROC", *[f"{a:.3f}" for a in result.layer_auroc])
    layers.add_row("lens accuracy", *[f"{a:.3f}" for a in result.lens_accuracy])
    out_console.print(layers)
    best_deep = max(result.layer_auroc[i] for i in result.deep)
    shallow_mean = sum(result.layer_auroc[i] for i in result.shallow) / len(result.shallow)
    out_console.print(
        f"deep vs shallow: best deep layer {best_deep:.3f}, shallow mean {shallow_mean:.3f} "
        f"(difference {best_deep - shallow_mean:+.3f})"
    )
    (r_auc, r_n), (w_auc, w_n) = result.believing["right"], result.believing["wrong"]
    out_console.print(
        f"seeing but not believing: evidence AUROC of the profiled layers {result.profiled_layers} "
        f"(picked on a dev split) is {r_auc:.3f} on rightly answered questions (n={r_n}) and "
        f"{w_auc:.3f} on wrongly answered ones (n={w_n}): difference {w_auc - r_auc:+.3f}"
    )
    for split in SPLITS:
        hits, errors, chance = result.saw_right[split]
        share = hits / errors if errors else float("nan")
        out_console.print(
            f"saw right, said wrong ({split}): of {errors} wrong answers, {hits} ({_pct(share)}) have an "
            f"intermediate layer whose lens top-1 is the right answer; chance {_pct(chance)} (a random "
            f"answer word of the question type at each of those layers)"
        )
        hits, errors, chance = result.saw_right_at_layer[split]
        share = hits / errors if errors else float("nan")
        out_console.print(
            f"  ... at one layer, L{result.saw_right_layer} (picked on a dev split): {hits} of {errors} "
            f"({_pct(share)}); chance {_pct(chance)} (a random answer word of the question type)"
        )
    usual, colour_errors = result.prior_errors
    share = usual / colour_errors if colour_errors else float("nan")
    out_console.print(
        f"the prior at work: {usual} of {colour_errors} counterfactual colour errors ({_pct(share)}) name "
        f"the shape's usual colour (chance {_pct(1 / (len(ANSWER_WORDS['color']) - 1))} among wrong colours)"
    )
    out_console.print(
        f"DualPD's head filter fired on {_pct(result.head_filter_share)} of decode steps "
        f"(floor(rho x heads) = {result.heads_suppressed} heads per layer)"
    )
    if json_out is not None:
        from .eval.rundir import atomic_write_text

        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(result.to_json()) + "\n")
        out_console.print(f"demo run saved: {escape(str(json_out))}")
    if report is not None:
        from .report import write_sections
        from .report.sources import demo_sections

        written = write_sections(
            demo_sections(result.to_json(), "seesay demo"),
            report,
            title="seesay demo: the bundled tiny VLM",
            subtitle=f"{which} questions, {result.sizes_text()}; seesay demo"
            + ("" if n is None else f" --n {n}")
            + ("" if seed == HELDOUT_SEED else f" --seed {seed}"),
        )
        out_console.print(f"report: {escape(str(written.html))} ({len(written.figures)} figures)")
    out_console.print(
        f"heatmaps: {result.png}   per-layer plot: {result.layers_png}   ({time.perf_counter() - t0:.0f} s)"
    )


@command()
def report(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="What seesay wrote: eval run folders, sweep folders, layer profiles (seesay profile), "
            "demo runs (seesay demo --json), per-token traces (seesay ask --trace).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "seesay_report.html"
    ),
    title: Annotated[str, typer.Option(help="The page's title.")] = "seesay report",
) -> None:
    """One self-contained HTML page (figures inline, no network) with the plots of seesay's outputs."""
    from .report import write_report

    check_report_path(out, "--out")
    with err_console.status("plotting ..."):
        written = write_report(paths, out, title=title)
    out_console.print(
        f"report: {escape(str(written.html))} ({written.sections} sections, {len(written.figures)} figures "
        f"in {escape(str(written.html.with_name(written.html.stem + '_files')))})"
    )


@command("chair")
def chair_command(
    captions: Annotated[
        Path,
        typer.Argument(
            help="Generated captions: a JSON list (or JSONL) of {image_id, caption}, or coco-caption's "
            "evaluation output ({imgToEval: ...}).",
            show_default=False,
        ),
    ],
    annotations: Annotated[
        Path,
        typer.Option(
            "--annotations",
            "-a",
            help="MSCOCO's annotation folder (instances_*.json, captions_*.json) or a JSON file "
            "{image_id: [object names]}.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write each caption's objects and the totals (JSON).")
    ] = None,
) -> None:
    """CHAIR_s, CHAIR_i and recall of generated captions (the CHAIR paper's scorer, offline)."""
    from rich.table import Table

    from .eval.metrics.chair import chair, read_captions, read_ground_truth

    pairs = read_captions(captions)
    truth = read_ground_truth(annotations)
    totals, scores = chair(pairs, truth)
    table = Table(title=f"CHAIR over {len(pairs)} captions (lower is better)")
    for name in ("CHAIR_s", "CHAIR_i", "recall", "mentions"):
        table.add_column(name, justify="right")
    table.add_row(
        _pct(totals["chair_s"]), _pct(totals["chair_i"]), _pct(totals["recall"]), f"{totals['mentions']:.0f}"
    )
    out_console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"overall_metrics": totals, "sentences": [s.to_dict() for s in scores]}
        out.write_text(json.dumps(payload, indent=1) + "\n")
        out_console.print(f"saved {escape(str(out))}")


@command()
def version() -> None:
    """Print the seesay version."""
    from . import __version__

    out_console.print(__version__)


def _widen_help_when_piped() -> None:
    """Help written to a pipe or file is laid out at :data:`HELP_WIDTH` columns (rich reads COLUMNS)."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = str(HELP_WIDTH)


def _usage_line(exc: Exception) -> str:
    """One line for a click/typer usage error: the problem and where to find the usage."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "seesay"
    message = " ".join(str(exc.format_message()).split()).rstrip(".")
    if not message or message.lower().startswith("missing command"):
        names = sorted(c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands)
        message = f"missing command (one of: {', '.join(names)})"
    return f"{message} (see '{command} --help')"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one yellow line, without the source location."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Bad input and usage errors: one line, exit code 2; Ctrl-C: exit code 130."""
    args = sys.argv[1:] if argv is None else list(argv)
    _widen_help_when_piped()
    # stderr keeps seesay's own lines (progress, one-line errors): no Hugging Face progress bars. The
    # variable is read when transformers is imported (not here: `seesay --help` does not import it).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    warnings.showwarning = _one_line_warning
    try:
        code = app(args=args, standalone_mode=False, prog_name="seesay")
    except SeesayError as err:
        _print_error(str(err))
        return 2
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # click's exceptions as typer ships them (usage errors, bad values)
        from typer._click.exceptions import UsageError

        if isinstance(exc, UsageError):
            _print_error(_usage_line(exc))
            return 2
        _print_error(" ".join(exc.format_message().split()))
        return exc.exit_code or 1
    if code == 130:  # Ctrl-C (typer returns it as exit code 130 when standalone_mode=False)
        resumable = bool(args) and args[0] in ("eval", "sweep")
        hint = "; run the same command again to resume" if resumable else ""
        err_console.print(f"[bold yellow]interrupted[/]{hint}", highlight=False, soft_wrap=True)
        return 130
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
