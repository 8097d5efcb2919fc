"""The ``seesay`` command line: ``seesay ask --model M --image IMG --question Q --method base``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .errors import SeesayError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Make vision-language models say what they see."
)
err_console = Console(stderr=True)
out_console = Console()

FALLBACK_MODEL = "tiny-random:llava"


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
        if not sep or not key:
            raise SeesayError(f"option {pair!r} is not KEY=VALUE")
        try:
            options[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = raw
    return options


@app.command()
def ask(
    image: Annotated[
        list[Path], typer.Option("--image", "-i", help="Image file (repeat for several images).")
    ],
    question: Annotated[str, typer.Option("--question", "-q", help="The question to answer.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model path or hub id (default: the demo model).")
    ] = None,
    method: Annotated[
        str, typer.Option(help="Method: base, dualpd, vea, dola or vcd (docs/methods/).")
    ] = "base",
    option: Annotated[list[str] | None, typer.Option("--set", "-s", help="Method option KEY=VALUE.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Maximum number of new tokens.")] = 32,
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
        Path | None, typer.Option(help="Write the method's per-token trace as JSONL here.")
    ] = None,
) -> None:
    """Answer a question about an image with the chosen decoding method."""
    from .api import ask as ask_fn
    from .decoding import GenerationSettings
    from .loading import load_model
    from .methods import get_method

    options = parse_options(option or [])
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
    runner.trace = trace is not None
    loaded = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    answer = ask_fn(loaded, [str(p) for p in image], question, method=runner, settings=settings)
    if trace is not None:
        write_trace(trace, answer)
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
    out_console.print(f"[bold]{method}[/] ({loaded.family}): {answer.text}")


def write_trace(path: Path, answer) -> None:
    """One JSON line per generated token: the token and what the method logged at that step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for token, step in zip(answer.token_ids, answer.trace, strict=False):
            f.write(json.dumps({"token_id": token, **step}) + "\n")


@app.command()
def profile(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Visual-CoT records (JSON or JSONL) with boxes.")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model path or hub id (default: the demo model).")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Number of records to profile on.")] = 100,
    out: Annotated[
        Path, typer.Option(help="Where to save the profile (JSON) that --method vea loads.")
    ] = Path("seesay_profile.json"),
    image_root: Annotated[
        Path | None, typer.Option(help="Folder the records' image paths are relative to.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Records per forward pass.")] = 4,
    top_fraction: Annotated[float, typer.Option(help="Fraction of layers kept as L_VG.")] = 0.1,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str | None, typer.Option(help="Device, e.g. cpu or cuda:0.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own remote code.")] = False,
) -> None:
    """Profile which layers attend to the evidence (VEA): per-layer AUROC, AUPRC, NDCG and RAPT."""
    from rich.progress import Progress
    from rich.table import Table

    from .data import load_visual_cot
    from .loading import load_model
    from .profiling import profile_layers

    model = model or default_model()
    records = load_visual_cot(data, image_root=image_root, limit=n)
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


@app.command("eval")
def eval_command(
    bench: Annotated[
        str, typer.Option("--bench", "-b", help="vqav2, okvqa, gqa, textvqa, vizwiz, docvqa, visual_cot")
    ],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The benchmark's question/annotation file or parquet.")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model path or hub id (default: the demo model).")
    ] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods, e.g. base,dualpd,vea.")] = "base",
    out: Annotated[Path, typer.Option(help="Output folder (resumes what is there).")] = Path("runs/eval"),
    image_root: Annotated[
        Path | None, typer.Option(help="Image folder (default: the format's usual place).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N samples.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = 8,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Default: the benchmark's (16, DocVQA 32).")
    ] = None,
    metric_mode: Annotated[str, typer.Option(help="official or lmms-eval normalisation.")] = "official",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str | None, typer.Option(help="Device (default: this process' accelerator).")] = None,
    device_map: Annotated[
        str | None, typer.Option(help="e.g. auto, to split a large model over GPUs.")
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own remote code.")] = False,
) -> None:
    """Evaluate methods on a benchmark: per-sample JSONL, summary table/JSON/CSV, manifest; resumable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .decoding import GenerationSettings
    from .evaluation import Dist, evaluate
    from .loading import load_model
    from .tasks import get_task

    model = model or default_model()
    task = get_task(bench)
    dist = Dist.detect()
    if device is None and device_map is None and dist.world > 1:
        import torch
        from accelerate import PartialState

        device = str(PartialState(cpu=not torch.cuda.is_available()).device)
    loaded = load_model(
        model, dtype=dtype, device=device, device_map=device_map, trust_remote_code=trust_remote_code
    )
    settings = GenerationSettings(max_new_tokens=max_new_tokens or task.max_new_tokens)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=dist.rank != 0) as bar:
        tasks: dict[str, Any] = {}

        def progress(method: str, count: int, total: int) -> None:
            if method not in tasks:
                tasks[method] = bar.add_task(f"{bench}/{method}", total=total, completed=count)
            else:
                bar.advance(tasks[method], count)

        summary = evaluate(
            loaded,
            task,
            data,
            names,
            out,
            image_root=image_root,
            limit=limit,
            batch_size=batch_size,
            settings=settings,
            mode=metric_mode,
            seed=seed,
            progress=progress,
        )
    if summary is None:
        return
    metrics = sorted({k for s in summary.values() for k in s if k != "n"})
    table = Table(title=f"{bench} ({metric_mode} metrics) - {model}")
    table.add_column("method")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("n", justify="right")
    for method, scores in summary.items():
        table.add_row(method, *[f"{100 * scores[m]:.2f}" for m in metrics], str(int(scores["n"])))
    out_console.print(table)
    out_console.print(f"predictions, summary.json/csv and manifest.json in {out}")


@app.command()
def demo(
    n: Annotated[int, typer.Option("--n", help="Held-out samples per test split.")] = 100,
    png: Annotated[Path, typer.Option(help="Where to write the heatmap examples.")] = Path("seesay_demo.png"),
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Default: the bundled demo model.")
    ] = None,
) -> None:
    """The whole story on the bundled tiny trained VLM: accuracy, where it looks, saw right but said wrong."""
    import time

    from rich.table import Table

    from .demo import run_demo

    t0 = time.perf_counter()
    with err_console.status("running base, dualpd and vea on the held-out splits ...") as status:
        report = run_demo(n, model=model, out_png=png, progress=lambda s: status.update(f"done {s} ..."))
    table = Table(title=f"accuracy ({report.n} held-out questions per split)")
    table.add_column("method")
    for split in ("iid", "counterfactual"):
        table.add_column(split, justify="right")
    for method, per_split in report.accuracy.items():
        table.add_row(method, *[f"{100 * per_split[s]:.1f}%" for s in ("iid", "counterfactual")])
    out_console.print(table)
    layers = Table(title="where it looks: evidence AUROC of each layer's attention (0.5 = chance)")
    for i in range(len(report.layer_auroc)):
        layers.add_column(f"layer {i}", justify="right")
    layers.add_row(*[f"{a:.3f}" for a in report.layer_auroc])
    out_console.print(layers)
    for split in ("iid", "counterfactual"):
        out_console.print(
            f"saw right, said wrong ({split}): {100 * report.saw_right_said_wrong[split]:.1f}% of questions "
            f"(an intermediate layer's lens top-1 is right while the answer is wrong; "
            f"base is wrong on {100 * report.wrong_rate[split]:.1f}%)"
        )
    out_console.print(f"heatmaps: {report.png}   ({time.perf_counter() - t0:.0f} s)")


@app.command()
def version() -> None:
    """Print the seesay version."""
    from . import __version__

    out_console.print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a :class:`SeesayError` becomes a one-line message and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except SeesayError as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 1
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
