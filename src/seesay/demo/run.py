"""``seesay demo``: the whole story on the bundled tiny trained VLM, on a laptop, in 69-77 s (2 CPU cores).

On held-out slices of the synthetic benchmark's two test splits ("iid": shapes mostly in their usual
colours, as in training; "counterfactual": unusual colours only) it runs base, DualPD and VEA and reports

* accuracy per method and split (first word of the answer against the reference) with its 95% Wilson
  interval, and each method's paired difference from base (95% paired bootstrap, fixed seed; exact
  McNemar p), overall and per question type;
* by depth: evidence AUROC per layer (the last prompt token's attention over the image tokens against the
  boxes of the objects asked about) and logit-lens accuracy per layer, shallow (first quarter) and deep
  (second half) layers marked;
* "seeing but not believing": evidence AUROC of the profiled layers (the top quarter by AUROC on a dev
  split of its own seed) on rightly vs wrongly answered questions;
* "saw right, said wrong": among wrong answers, the share where an intermediate layer's lens top-1 is the
  right answer, beside the chance of that with a random answer word of the question type at each layer;
* the prior at work: the share of counterfactual colour errors that name the shape's usual colour;
* how often DualPD's head filter fired (floor(rho x heads) can be 0 on a small model);

and writes a PNG with the evidence heatmaps of a few examples and a per-layer plot.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..engine.decoding import GenerationSettings, StepState, decode
from ..engine.lens import LogitLens
from ..engine.loading import LoadedModel, PreparedBatch, build_inputs, load_model
from ..engine.tap import AttentionTap
from ..eval.stats import PairedDifference, paired_difference, wilson_interval
from ..methods import VEA, DualPD, DualPDConfig, Method, VEAConfig, get_method
from ..methods.vea import heat_overlay
from ..methods.vea.evidence import box_labels
from ..methods.vea.retrieval import auroc_rows
from ..report.gallery import GalleryItem, pick
from ..report.sources import DEMO_FORMAT, sizes_text
from . import demo_model_path, synthetic

HELDOUT_SEED = 20260601  # our choice: a seed the training script never uses


def demo_methods() -> dict[str, Method]:
    """The methods the demo compares, configured for a model trained without instructions."""
    return {
        "base": get_method("base"),
        "dualpd": DualPD(DualPDConfig()),
        "vea": VEA(VEAConfig(prompt="question", layer_set="auto")),
    }


DEV_SEED = 20260602  # our choice: the dev split the demo picks its profiled layers on (never reported)
ANSWER_WORDS: dict[str, tuple[str, ...]] = {  # the possible answers of each question type
    "color": synthetic.COLORS,
    "shape": synthetic.SHAPES,
    "exists": ("yes", "no"),
    "count": synthetic.NUMBER_WORDS,
    "where": ("left", "right"),
}
SPLITS = ("iid", "counterfactual")
GALLERY_N = 16  # questions in the report's gallery (those a method fixed or broke first)
TRACED_N = 4  # of them, the ones whose DualPD trace the report shows
DEV_N = 100  # dev questions per split for picking the profiled layers (and planning the test sizes)
CI_TARGET = 0.03  # issue 14: each accuracy's 95% Wilson interval within +-3 points of it
PLAN_MARGIN = 0.10  # our choice: plan for an accuracy 10 points nearer 50% than base's on the dev split
# (dev has DEV_N questions per split, SE up to 5 points; a method may score a few points below base)
PLAN_STEP = 100  # test sizes are multiples of this (batch size never changes them)


def ci_half_width(k: int, n: int) -> float:
    """The larger side of the 95% Wilson interval of ``k / n``: max(p - low, high - p)."""
    low, high = wilson_interval(k, n)
    return max(k / n - low, high - k / n)


def questions_for(accuracy: float, target: float = CI_TARGET, margin: float = PLAN_MARGIN) -> int:
    """The smallest multiple of :data:`PLAN_STEP` questions whose 95% Wilson interval is within
    ``target`` at the planning accuracy p = ``accuracy`` moved ``margin`` toward 1/2 (never past it):
    min n in PLAN_STEP * N with ci_half_width(round(p n), n) <= target. At p = 1/2 it is 1,100."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
    if not 0 < target < 0.5 or not 0 <= margin <= 0.5:
        raise ValueError(
            f"questions_for needs 0 < target < 0.5 and 0 <= margin <= 0.5, got {target} and {margin}"
        )
    p = max(0.5, accuracy - margin) if accuracy >= 0.5 else min(0.5, accuracy + margin)
    n = PLAN_STEP
    while ci_half_width(round(p * n), n) > target:
        n += PLAN_STEP
    return n


def plan_sizes(
    answers: dict[str, list[str]], records: dict[str, list[dict]]
) -> tuple[dict[str, float], dict[str, int]]:
    """Per split: base's accuracy on the dev questions ``records`` (its one-word ``answers``) and the test
    size :func:`questions_for` that accuracy."""
    accuracy = {
        s: float(np.mean([a == r["answer"] for a, r in zip(answers[s], records[s], strict=True)]))
        for s in records
    }
    return accuracy, {s: questions_for(a) for s, a in accuracy.items()}


@dataclass
class DemoReport:
    """Everything ``seesay demo`` prints (see :func:`run_demo`)."""

    n: dict[str, int] = field(default_factory=dict)  # test questions per split
    planned_from: dict[str, float] = field(default_factory=dict)  # split -> base's dev accuracy (default n)
    seed: int = HELDOUT_SEED  # of the test questions (DEV_SEED: the dev split recipes are chosen on)
    accuracy: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)  # acc, lo, hi
    correct: dict[str, dict[str, list[bool]]] = field(default_factory=dict)  # method -> split -> per question
    paired: dict[str, dict[str, PairedDifference]] = field(default_factory=dict)  # method -> split -> vs base
    per_type: dict[str, dict[str, dict[str, tuple[float, int]]]] = field(default_factory=dict)  # split->m->q
    layer_auroc: list[float] = field(default_factory=list)
    lens_accuracy: list[float] = field(default_factory=list)
    shallow: list[int] = field(default_factory=list)  # the first quarter of the layers
    deep: list[int] = field(default_factory=list)  # the deeper half
    profiled_layers: list[int] = field(default_factory=list)  # chosen on the dev split
    believing: dict[str, tuple[float, int]] = field(default_factory=dict)  # "right"/"wrong" -> (AUROC, n)
    saw_right: dict[str, tuple[int, int, float]] = field(
        default_factory=dict
    )  # split -> (hits, errors, chance)
    saw_right_said_wrong: dict[str, float] = field(default_factory=dict)  # split -> share of all questions
    saw_right_layer: int = -1  # the one intermediate layer read below, picked on the dev split
    saw_right_at_layer: dict[str, tuple[int, int, float]] = field(
        default_factory=dict
    )  # split -> (hits at that layer, errors, chance: a random answer word of the question type)
    wrong_rate: dict[str, float] = field(default_factory=dict)  # split -> base error rate
    prior_errors: tuple[int, int] = (0, 0)  # counterfactual colour errors naming the usual colour, of all
    head_filter_share: float = 0.0  # DualPD decode steps whose head filter suppressed any head
    heads_suppressed: int = 0  # floor(rho * heads) of the model
    png: str | None = None
    layers_png: str | None = None
    gallery: list[GalleryItem] = field(default_factory=list)  # the report's questions (fixed / broken first)
    traces: list[dict[str, Any]] = field(default_factory=list)  # DualPD's per-token trace of a few of them

    def widest_ci(self) -> float:
        """The largest 95% CI half-width (either side) of any method's accuracy on any split."""
        return max(
            (max(a - lo, hi - a) for per in self.accuracy.values() for a, lo, hi in per.values()), default=0.0
        )

    def sizes_text(self) -> str:
        """'iid 700, counterfactual 1100' (or '1100 per split' where all are equal)."""
        return sizes_text(self.n)

    def to_json(self) -> dict[str, Any]:
        """Everything above as JSON (``seesay report`` reads it; format :data:`DEMO_FORMAT`)."""
        return {
            "format": DEMO_FORMAT,
            "n": self.n,
            "planned_from": self.planned_from,
            "seed": self.seed,
            "splits": list(SPLITS),
            "accuracy": {m: {s: list(v) for s, v in per.items()} for m, per in self.accuracy.items()},
            "paired": {
                m: {s: [d.diff, d.low, d.high, d.p_value, d.n] for s, d in per.items()}
                for m, per in self.paired.items()
            },
            "per_type": {
                s: {m: {q: list(v) for q, v in t.items()} for m, t in per.items()}
                for s, per in self.per_type.items()
            },
            "layer_auroc": self.layer_auroc,
            "lens_accuracy": self.lens_accuracy,
            "shallow": self.shallow,
            "deep": self.deep,
            "profiled_layers": self.profiled_layers,
            "believing": {k: list(v) for k, v in self.believing.items()},
            "saw_right": {k: list(v) for k, v in self.saw_right.items()},
            "saw_right_layer": self.saw_right_layer,
            "saw_right_at_layer": {k: list(v) for k, v in self.saw_right_at_layer.items()},
            "wrong_rate": self.wrong_rate,
            "prior_errors": list(self.prior_errors),
            "head_filter_share": self.head_filter_share,
            "heads_suppressed": self.heads_suppressed,
            "gallery": [item.to_json() for item in self.gallery],
            "traces": self.traces,
        }


def _first_word(text: str) -> str:
    return text.strip().split(" ")[0] if text.strip() else ""


def heldout(split: str, n: int, seed: int = HELDOUT_SEED) -> list[dict]:
    """The first ``n`` questions of ``split`` under ``seed`` (the demo's held-out seed by default)."""
    return synthetic.generate(split, n, seed=seed)


def answer_first_words(
    loaded: LoadedModel,
    method: Method,
    records: list[dict],
    batch_size: int = 50,
    trace: list[dict[str, Any]] | None = None,
) -> list[str]:
    """``method``'s answer to each synthetic record, first word only (the answers are one word).

    Every answer word of the benchmark is one token of the demo model's word-level vocabulary, so the first
    generated token *is* the first word: one new token is decoded (the EOS step after it changes nothing
    that is scored). With ``trace`` (a list), the method's per-step trace rows of every sample are appended.
    """
    out = []
    for start in range(0, len(records), batch_size):
        out += method_first_words(
            loaded, method, _build(loaded, records[start : start + batch_size]), trace=trace
        )
    return out


@dataclass
class BaseReadout:
    """One plain-decoding pass over records: base's first-word answers, every layer's logit-lens top-1
    token [n, layers], and every layer's evidence AUROC of the last prompt row's attention [n, layers]
    (NaN where a record's box labels are all equal)."""

    answers: list[str]
    tops: np.ndarray
    auroc: np.ndarray

    @classmethod
    def of(cls, parts: list[BatchReadout]) -> BaseReadout:
        """The readouts of consecutive batches, joined."""
        answers = [a for p in parts for a in p.answers]
        return cls(
            answers, torch.cat([p.tops for p in parts]).numpy(), np.concatenate([p.auroc for p in parts])
        )


@dataclass
class BatchReadout:
    """:class:`BaseReadout` of one batch, plus the last prompt row's head-mean attention of every layer
    over the padded prompt, ``rows`` [B, layers, T] (what VEA's map is made of, so its attribution pass
    need not run again)."""

    answers: list[str]
    tops: torch.Tensor
    auroc: np.ndarray
    rows: np.ndarray


@torch.no_grad()
def readout_batch(loaded: LoadedModel, batch: PreparedBatch, records: list[dict]) -> BatchReadout:
    """One plain decode step over a built batch of ``records``: the tap records each layer's head-mean
    last row at the prefill (sdpa's output is kept, so the answer is plain greedy's) and the hook reads
    the lens of every layer's hidden state; the answer is the final logits' top-1 (one-token answers)."""
    layers = list(range(loaded.adapter.num_layers))
    lens = LogitLens(loaded.adapter)
    seen: dict[str, torch.Tensor] = {}

    def hook(state: StepState) -> torch.Tensor:
        seen["tops"] = torch.stack([lens(state.hidden[li], li).argmax(-1) for li in layers], dim=1).cpu()
        return state.logits

    tap = AttentionTap(layers=layers, record="mean")
    result = decode(
        loaded.model,
        batch.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=1),
        hook=hook,
        tap=tap,
        hidden_layers=layers,
    )
    tokenizer = loaded.processor.tokenizer
    answers = [_first_word(t) for t in tokenizer.batch_decode(result.new_tokens, skip_special_tokens=True)]
    t = batch.inputs["input_ids"].shape[1]
    rows = torch.stack([tap.records[li].probs[:, 0, -1, :t] for li in layers], dim=1).float().cpu().numpy()
    auroc = np.full((len(records), len(layers)), np.nan)
    layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
    for b, r in enumerate(records):
        labels = box_labels(layouts[b][0], r["bboxs"])
        if labels.any() and not labels.all():
            auroc[b] = auroc_rows(rows[b][:, layouts[b][0].positions], labels)
    return BatchReadout(answers, seen["tops"], auroc, rows)


def _build(loaded: LoadedModel, records: list[dict]) -> PreparedBatch:
    return build_inputs(
        loaded, [synthetic.render(r["scene"]) for r in records], [r["question"] for r in records]
    )


def base_readout(loaded: LoadedModel, records: list[dict], batch_size: int) -> BaseReadout:
    """:class:`BaseReadout` of ``records``: :func:`readout_batch` batch by batch (ONE decode step each)."""
    parts = [
        readout_batch(
            loaded, _build(loaded, records[start : start + batch_size]), records[start : start + batch_size]
        )
        for start in range(0, len(records), batch_size)
    ]
    return BaseReadout.of(parts)


def method_first_words(
    loaded: LoadedModel,
    method: Method,
    batch: PreparedBatch,
    readout: BatchReadout | None = None,
    trace: list[dict[str, Any]] | None = None,
) -> list[str]:
    """``method``'s one-token answers on a built batch. VEA with the bare question as its map prompt
    reads its map from ``readout``'s rows (the same prompt, image and plain forward its attribution pass
    would run), so that pass is not run twice."""
    settings = GenerationSettings(max_new_tokens=1)
    if (
        readout is not None
        and isinstance(method, VEA)
        and method.attribution_model(loaded) is loaded  # no delegate: this model maps
        and all(method.map_prompt(q) == q for q in batch.questions)
    ):
        layers = method.config.resolve_layers(loaded)  # type: ignore[attr-defined]
        maps = method.evidence_from_rows(loaded, batch, readout.rows[:, list(layers)], layers)
        result = method.execute(
            loaded, batch, method.plan_from_maps(loaded, batch, maps, passes_before=0), settings
        )
    else:
        result = method.generate(loaded, batch, settings)
    if trace is not None:
        trace += [row for step in result.trace for row in step]
    tokenizer = loaded.processor.tokenizer
    return [_first_word(t) for t in tokenizer.batch_decode(result.new_tokens, skip_special_tokens=True)]


def lens_tops(loaded: LoadedModel, records: list[dict], batch_size: int) -> np.ndarray:
    """[n, layers]: each layer's logit-lens top-1 token for the first answer token of each record."""
    return base_readout(loaded, records, batch_size).tops


def auroc_matrix(loaded: LoadedModel, records: list[dict], batch_size: int) -> np.ndarray:
    """[n, layers]: evidence AUROC of the last prompt row's attention at each layer (NaN: degenerate)."""
    return base_readout(loaded, records, batch_size).auroc


def lens_layer_from(readout: BaseReadout, records: list[dict], tokenizer: Any) -> int:
    """The intermediate layer (not the last) whose lens top-1 is most often the right answer where the
    model's answer is wrong (ties: the shallower layer)."""
    wrong = np.array([a != r["answer"] for a, r in zip(readout.answers, records, strict=True)])
    ids = np.array([tokenizer.convert_tokens_to_ids(r["answer"]) for r in records])
    right = readout.tops == ids[:, None]
    hits = (right[:, :-1] & wrong[:, None]).sum(axis=0)
    return int(np.argmax(hits))


def pick_lens_layer(loaded: LoadedModel, records: list[dict], batch_size: int) -> int:
    """:func:`lens_layer_from` on ``records`` (the dev split)."""
    return lens_layer_from(base_readout(loaded, records, batch_size), records, loaded.processor.tokenizer)


def nanmean(x: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _asked_shape(record: dict) -> str:
    """The shape a colour question is about: the object whose box is the evidence box."""
    return next(o["shape"] for o in record["objects"] if list(o["box"]) == list(record["bboxs"][0]))


def chance_of_a_lens_hit(qtype: str, layers: int) -> float:
    """P(at least one of ``layers`` uniformly random answer words of ``qtype`` is the right one)."""
    k = len(ANSWER_WORDS[qtype])
    return 1 - (1 - 1 / k) ** layers


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


def _layers_plot(report: DemoReport, path: Path) -> None:
    """Evidence AUROC and lens accuracy against depth, shallow and deep layers shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = np.arange(len(report.layer_auroc))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.axvspan(-0.5, max(report.shallow) + 0.5, color="0.92", label="shallow (first quarter)")
    ax.axvspan(min(report.deep) - 0.5, layers[-1] + 0.5, color="#e3ecf7", label="deep (second half)")
    ax.plot(layers, report.layer_auroc, "o-", label="evidence AUROC of attention")
    ax.plot(layers, report.lens_accuracy, "s--", label="logit-lens accuracy")
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("layer")
    ax.set_ylim(0, 1)
    ax.set_xticks(layers)
    ax.set_title(f"where the model looks and what it knows, by depth ({report.sizes_text()})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gallery_and_traces(
    loaded: LoadedModel,
    splits: dict[str, list[dict]],
    answers: dict[str, dict[str, list[str]]],
    correct: dict[str, dict[str, list[bool]]],
    batch_size: int,
) -> tuple[list[GalleryItem], list[dict[str, Any]]]:
    """The report's gallery (:data:`GALLERY_N` questions, those a method fixed or broke first, each with
    VEA's evidence map and highlighted image) and DualPD's per-token trace of :data:`TRACED_N` of them."""
    from ..api import ask_batch

    methods = list(correct)
    candidates = [
        GalleryItem(
            id=f"{split}/{i}",
            question=r["question"],
            references=[r["answer"]],
            answers={m: answers[split][m][i] for m in methods},
            correct={m: bool(correct[m][split][i]) for m in methods},
            image=Image.new("RGB", (1, 1)),
            boxes=[list(b) for b in r["bboxs"]],
            group=f"{split}, {r['qtype']}",
        )
        for split, records in splits.items()
        for i, r in enumerate(records)
    ]
    chosen = pick(candidates, GALLERY_N)
    records = [splits[c.id.split("/")[0]][int(c.id.split("/")[1])] for c in chosen]
    images = [synthetic.render(r["scene"]) for r in records]
    vea = VEA(VEAConfig(prompt="question", layer_set="auto"))
    for start in range(0, len(records), batch_size):
        part = slice(start, start + batch_size)
        maps = vea.evidence(loaded, [[im] for im in images[part]], [r["question"] for r in records[part]])
        for item, image, m in zip(chosen[part], images[part], maps, strict=True):
            item.image, item.emap, item.highlighted = image, m[0].emap, m[0].highlighted
    traced = chosen[:TRACED_N]
    tokenizer = loaded.processor.tokenizer
    got = ask_batch(
        loaded,
        [item.image for item in traced],
        [item.question for item in traced],
        method=DualPD(DualPDConfig(), trace=True),
        settings=GenerationSettings(max_new_tokens=3),
    )
    traces = [
        {
            "label": f"dualpd: {item.question} -> {answer.text} (reference {item.references[0]})",
            "steps": [
                {"token_id": t, "token": tokenizer.decode([t]), **step}
                for t, step in zip(answer.token_ids, answer.trace, strict=False)
            ],
        }
        for item, answer in zip(traced, got, strict=True)
    ]
    return chosen, traces


def run_demo(
    n: int | None = None,
    *,
    model: str | Path | None = None,
    out_png: str | Path | None = "seesay_demo.png",
    layers_png: str | Path | None = "seesay_demo_layers.png",
    batch_size: int = 100,
    progress: Any = None,
    seed: int = HELDOUT_SEED,
) -> DemoReport:
    """Run the demo on ``n`` test questions per split (see the module docstring).

    ``n=None`` plans each split's size on the dev split: :func:`questions_for` base's dev accuracy, so that
    every accuracy's 95% CI is within +-3 points (1,100 at worst, fewer where the model is sure; the
    report's ``widest_ci`` says whether it held). ``seed``: of the test questions; the default is the
    held-out seed, which no recipe or knob was chosen on. ``seed=DEV_SEED`` measures a new model on the dev
    split instead, where recipes are chosen (its first :data:`DEV_N` questions per split are also the ones
    the profiled and lens layers are picked on)."""
    path = model or demo_model_path()
    if path is None:
        from ..errors import ModelLoadError

        raise ModelLoadError(
            "this installation has no bundled demo model (src/seesay/demo/model); "
            "train it with scripts/train_demo_model.py"
        )
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    loaded = load_model(path, dtype="float32")
    num_layers = loaded.adapter.num_layers
    report = DemoReport(seed=seed)
    # the dev split (own seed): the test sizes, the profiled layers and the lens layer are chosen on it
    tokenizer = loaded.processor.tokenizer
    dev_by_split = {s: synthetic.generate(s, DEV_N, seed=DEV_SEED) for s in SPLITS}
    dev_records = [r for s in SPLITS for r in dev_by_split[s]]
    dev = base_readout(loaded, dev_records, batch_size)
    if n is None:
        said = {s: dev.answers[i * DEV_N : (i + 1) * DEV_N] for i, s in enumerate(SPLITS)}
        report.planned_from, report.n = plan_sizes(said, dev_by_split)
    else:
        report.n = dict.fromkeys(SPLITS, n)
    if progress:
        progress(f"dev split ({report.sizes_text()} test questions)")
    splits = {s: heldout(s, report.n[s], seed) for s in SPLITS}
    report.shallow = list(range(max(1, num_layers // 4)))
    report.deep = list(range(num_layers // 2, num_layers))
    methods = demo_methods()
    methods["dualpd"].trace = True
    # The demo reports the head filter's firing itself (the 6-head model rounds floor(0.15 x 6) to 0).
    warnings.filterwarnings("ignore", message="dualpd: floor", category=UserWarning)
    dualpd_trace: list[dict[str, Any]] = []
    answers: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    readouts: dict[str, BaseReadout] = {}  # base's pass also reads every layer's lens and attention
    for name in methods:
        report.accuracy[name], report.correct[name] = {}, {}
    for split, records in splits.items():
        got: dict[str, list[str]] = {name: [] for name in methods}
        parts: list[BatchReadout] = []
        for start in range(0, len(records), batch_size):  # each batch built once, read by every method
            chunk = records[start : start + batch_size]
            batch = _build(loaded, chunk)
            parts.append(readout_batch(loaded, batch, chunk))  # base's answers, lens and attention
            got["base"] += parts[-1].answers
            for name, method in methods.items():
                if name != "base":
                    trace = dualpd_trace if name == "dualpd" else None
                    got[name] += method_first_words(loaded, method, batch, parts[-1], trace=trace)
        readouts[split] = BaseReadout.of(parts)
        for name in methods:
            answers[split][name] = got[name]
            right = [a == r["answer"] for a, r in zip(got[name], records, strict=True)]
            report.correct[name][split] = right
            report.accuracy[name][split] = (float(np.mean(right)), *wilson_interval(sum(right), len(right)))
        if progress:
            progress(f"{split} ({', '.join(methods)})")
    for name in methods:
        if name != "base":
            report.paired[name] = {
                split: paired_difference(
                    np.array(report.correct["base"][split], float),
                    np.array(report.correct[name][split], float),
                )
                for split in SPLITS
            }
    for split, records in splits.items():
        report.per_type[split] = {}
        for name in methods:
            table: dict[str, tuple[float, int]] = {}
            for qtype in synthetic.QTYPES:
                hits = [
                    c
                    for c, r in zip(report.correct[name][split], records, strict=True)
                    if r["qtype"] == qtype
                ]
                table[qtype] = (float(np.mean(hits)) if hits else float("nan"), len(hits))
            report.per_type[split][name] = table
    # what the model knows before any method: the lens of every layer, and where it looks
    report.saw_right_layer = lens_layer_from(dev, dev_records, tokenizer)
    all_tops, all_right = [], []
    for split, records in splits.items():
        tops = readouts[split].tops
        answer_ids = np.array([tokenizer.convert_tokens_to_ids(r["answer"]) for r in records])
        lens_right = tops == answer_ids[:, None]
        all_tops.append(lens_right)
        wrong = ~np.array(report.correct["base"][split])
        intermediate_hit = lens_right[:, :-1].any(axis=1)
        errors = int(wrong.sum())
        chance = (
            float(
                np.mean(
                    [
                        chance_of_a_lens_hit(r["qtype"], num_layers - 1)
                        for r, w in zip(records, wrong, strict=True)
                        if w
                    ]
                )
            )
            if errors
            else float("nan")
        )
        report.saw_right[split] = (int((intermediate_hit & wrong).sum()), errors, chance)
        at_layer = lens_right[:, report.saw_right_layer] & wrong
        chance_one = (
            float(
                np.mean([1 / len(ANSWER_WORDS[r["qtype"]]) for r, w in zip(records, wrong, strict=True) if w])
            )
            if errors
            else float("nan")
        )
        report.saw_right_at_layer[split] = (int(at_layer.sum()), errors, chance_one)
        report.saw_right_said_wrong[split] = float(np.mean(intermediate_hit & wrong))
        report.wrong_rate[split] = float(np.mean(wrong))
        all_right.append(np.array(report.correct["base"][split]))
        if progress:
            progress(f"lens/{split}")
    # per layer, the mean of the splits' own means: each split weighs the same whatever its size
    report.lens_accuracy = np.mean([t.mean(axis=0) for t in all_tops], axis=0).tolist()
    cf = splits["counterfactual"]
    colour_errors = [
        (a, r)
        for a, r, c in zip(
            answers["counterfactual"]["base"], cf, report.correct["base"]["counterfactual"], strict=True
        )
        if r["qtype"] == "color" and not c
    ]
    usual = sum(a == synthetic.USUAL_COLOR[_asked_shape(r)] for a, r in colour_errors)
    report.prior_errors = (int(usual), len(colour_errors))
    # where it looks: every held-out question's attention, read in base's own pass
    matrix = np.concatenate([readouts[s].auroc for s in SPLITS])
    report.layer_auroc = np.mean([nanmean(readouts[s].auroc, axis=0) for s in SPLITS], axis=0).tolist()
    # "seeing but not believing": the layers that look at the evidence, picked on a dev split (own seed),
    # attend as well when the answer is wrong as when it is right
    dev_auroc = nanmean(dev.auroc, axis=0)
    top = max(1, round(0.25 * num_layers))
    report.profiled_layers = sorted(int(i) for i in np.argsort(-np.nan_to_num(dev_auroc, nan=-1))[:top])
    profiled = nanmean(matrix[:, report.profiled_layers], axis=1)
    right = np.concatenate(all_right)
    for label, mask in (("right", right), ("wrong", ~right)):
        values = profiled[mask & ~np.isnan(profiled)]
        report.believing[label] = (float(values.mean()) if values.size else float("nan"), int(values.size))
    fired = [row for row in dualpd_trace if "suppressed_heads" in row]
    report.head_filter_share = (
        sum(any(len(v) for v in row["suppressed_heads"].values()) for row in fired) / len(dualpd_trace)
        if dualpd_trace
        else 0.0
    )
    heads = loaded.adapter.num_heads
    report.heads_suppressed = int(methods["dualpd"].config.rho * heads)
    report.gallery, report.traces = gallery_and_traces(loaded, splits, answers, report.correct, batch_size)
    if out_png:
        picks = splits["iid"][:2] + splits["counterfactual"][:2]  # fewer where a split has fewer
        shown = {name: answers["iid"][name][:2] + answers["counterfactual"][name][:2] for name in methods}
        _panel(loaded, picks, shown, Path(out_png))
        report.png = str(out_png)
    if layers_png:
        _layers_plot(report, Path(layers_png))
        report.layers_png = str(layers_png)
    return report
