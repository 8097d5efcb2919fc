"""``seesay demo``: the whole story on the bundled tiny trained VLM, on a laptop, in about a minute.

On held-out slices of the synthetic benchmark's two test splits ("iid": shapes mostly in their usual
colours, as in training; "counterfactual": unusual colours only) it runs base, DualPD and VEA and reports

* accuracy per method and split (first word of the answer against the reference),
* evidence AUROC per layer: the last prompt token's attention over the image tokens against the boxes of
  the objects asked about (which layers look at the right place),
* the "saw right, said wrong" rate: samples whose final answer is wrong while an intermediate layer's
  logit-lens top-1 token is the right answer,

and writes a PNG with the evidence heatmaps of a few examples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import synthetic
from .attribution import attention_rows
from .decoding import GenerationSettings, StepState, decode
from .evidence import box_labels
from .lens import LogitLens
from .loading import LoadedModel, build_inputs, load_model
from .methods import VEA, DualPD, DualPDConfig, Method, VEAConfig, get_method
from .methods.vea import heat_overlay
from .metrics.retrieval import auroc

DEMO_MODEL = Path(__file__).resolve().parent / "demo_model"
HELDOUT_SEED = 20260601  # our choice: a seed the training script never uses


def demo_model_path() -> Path | None:
    """The bundled trained model, if this installation has it."""
    return DEMO_MODEL if (DEMO_MODEL / "config.json").exists() else None


def demo_methods() -> dict[str, Method]:
    """The methods the demo compares, configured for a model trained without instructions."""
    return {
        "base": get_method("base"),
        "dualpd": DualPD(DualPDConfig()),
        "vea": VEA(VEAConfig(prompt="question", layer_set="auto")),
    }


@dataclass
class DemoReport:
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> split -> accuracy
    layer_auroc: list[float] = field(default_factory=list)
    saw_right_said_wrong: dict[str, float] = field(default_factory=dict)  # split -> rate
    wrong_rate: dict[str, float] = field(default_factory=dict)  # split -> base error rate
    n: int = 0
    png: str | None = None


def _first_word(text: str) -> str:
    return text.strip().split(" ")[0] if text.strip() else ""


def heldout(split: str, n: int) -> list[dict]:
    """The demo's held-out questions: the first ``n`` of ``split`` under :data:`HELDOUT_SEED`."""
    return synthetic.generate(split, n, seed=HELDOUT_SEED)


def answer_first_words(
    loaded: LoadedModel, method: Method, records: list[dict], batch_size: int = 50
) -> list[str]:
    """``method``'s answer to each synthetic record, first word only (the answers are one word)."""
    tokenizer = loaded.processor.tokenizer
    out = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = build_inputs(
            loaded, [synthetic.render(r["scene"]) for r in chunk], [r["question"] for r in chunk]
        )
        result = method.generate(loaded, batch, GenerationSettings(max_new_tokens=3))
        out += [_first_word(t) for t in tokenizer.batch_decode(result.new_tokens, skip_special_tokens=True)]
    return out


def _lens_hits(loaded: LoadedModel, records: list[dict], batch_size: int) -> list[bool]:
    """Per sample: does any intermediate layer's lens top-1 (first answer token) equal the right answer?"""
    tokenizer = loaded.processor.tokenizer
    layers = list(range(loaded.adapter.num_layers - 1))
    lens = LogitLens(loaded.adapter)
    hits: list[bool] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = build_inputs(
            loaded, [synthetic.render(r["scene"]) for r in chunk], [r["question"] for r in chunk]
        )
        answer_ids = torch.tensor([tokenizer.convert_tokens_to_ids(r["answer"]) for r in chunk])
        seen: dict[str, torch.Tensor] = {}

        def hook(state: StepState, seen: dict[str, torch.Tensor] = seen) -> torch.Tensor:
            tops = torch.stack([lens(state.hidden[layer], layer).argmax(-1) for layer in layers], dim=1)
            seen["tops"] = tops.cpu()
            return state.logits

        decode(
            loaded.model,
            batch.inputs,
            adapter=loaded.adapter,
            settings=GenerationSettings(max_new_tokens=1),
            hook=hook,
            hidden_layers=layers,
        )
        hits += (seen["tops"] == answer_ids[:, None]).any(dim=1).tolist()
    return hits


def _layer_auroc(loaded: LoadedModel, records: list[dict], batch_size: int) -> list[float]:
    layers = list(range(loaded.adapter.num_layers))
    per_sample = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = build_inputs(
            loaded, [synthetic.render(r["scene"]) for r in chunk], [r["question"] for r in chunk]
        )
        rows = attention_rows(loaded, batch, layers)
        layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
        for b, r in enumerate(chunk):
            labels = box_labels(layouts[b][0], r["bboxs"])
            if labels.any() and not labels.all():
                per_sample.append([auroc(rows[b][li, layouts[b][0].positions], labels) for li in layers])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(per_sample), axis=0).tolist() if per_sample else []


def _panel(loaded: LoadedModel, records: list[dict], answers: dict[str, list[str]], path: Path) -> None:
    """Image | VEA heatmap | highlighted image, one row per example, with question and answers."""
    vea = VEA(VEAConfig(prompt="question", layer_set="auto"))
    images = [synthetic.render(r["scene"]) for r in records]
    maps = vea.evidence(loaded, [[im] for im in images], [r["question"] for r in records])
    scale, pad, text_w = 3, 6, 330
    cell = synthetic.IMAGE_SIZE * scale
    canvas = Image.new("RGB", (3 * (cell + pad) + text_w, len(records) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (r, im, m) in enumerate(zip(records, images, maps, strict=True)):
        y = pad + i * (cell + pad)
        for k, tile in enumerate((im, heat_overlay(im, m[0].emap), m[0].highlighted)):
            canvas.paste(tile.resize((cell, cell), Image.NEAREST), (pad + k * (cell + pad), y))
        x = 3 * (cell + pad) + pad
        lines = [f"[{r['split']}] {r['question']}", f"answer: {r['answer']}"]
        lines += [f"{name}: {answers[name][i]}" for name in answers]
        for j, line in enumerate(lines):
            draw.text((x, y + 4 + 16 * j), line, fill="black")
    canvas.save(path)


def run_demo(
    n: int = 100,
    *,
    model: str | Path | None = None,
    out_png: str | Path | None = "seesay_demo.png",
    batch_size: int = 50,
    progress: Any = None,
) -> DemoReport:
    """Run the demo; ``n`` held-out samples per split."""
    path = model or demo_model_path()
    if path is None:
        from .errors import ModelLoadError

        raise ModelLoadError(
            "this installation has no bundled demo model (src/seesay/demo_model); "
            "train it with scripts/train_demo_model.py"
        )
    loaded = load_model(path, dtype="float32")
    splits = {s: heldout(s, n) for s in ("iid", "counterfactual")}
    report = DemoReport(n=n)
    per_split_answers: dict[str, dict[str, list[str]]] = {}
    for name, method in demo_methods().items():
        report.accuracy[name] = {}
        for split, records in splits.items():
            answers = answer_first_words(loaded, method, records, batch_size)
            per_split_answers.setdefault(split, {})[name] = answers
            report.accuracy[name][split] = float(
                np.mean([a == r["answer"] for a, r in zip(answers, records, strict=True)])
            )
            if progress:
                progress(f"{name}/{split}")
    for split, records in splits.items():
        hits = _lens_hits(loaded, records, batch_size)
        wrong = [a != r["answer"] for a, r in zip(per_split_answers[split]["base"], records, strict=True)]
        report.saw_right_said_wrong[split] = float(
            np.mean([h and w for h, w in zip(hits, wrong, strict=True)])
        )
        report.wrong_rate[split] = float(np.mean(wrong))
    report.layer_auroc = _layer_auroc(loaded, splits["iid"] + splits["counterfactual"], batch_size)
    if out_png:
        picks = splits["iid"][:2] + splits["counterfactual"][:2]
        answers = {
            name: [per_split_answers["iid"][name][i] for i in range(2)]
            + [per_split_answers["counterfactual"][name][i] for i in range(2)]
            for name in report.accuracy
        }
        _panel(loaded, picks, answers, Path(out_png))
        report.png = str(out_png)
    return report
