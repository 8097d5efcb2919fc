"""VEA: visual evidence augmentation ("Seeing but Not Believing", arXiv 2510.17771).

Two passes per sample:
1. attribution: one forward pass of the QA prompt on the original image; the last prompt token's attention
   over the image tokens, averaged over heads, at the visual-grounding layers L_VG (profiled, a preset, or
   a fixed depth range) -> evidence scores (Eq. 1) -> denoise, smooth, normalise (Eqs. 2-3);
2. answer: the image highlighted with the map (Eq. 4) and the VEA prompt, decoded as usual (greedy).
Delegate mode computes the map with model A and answers with model B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from ...engine.adapters.base import ImageLayout
from ...engine.decoding import DecodeOutput
from ...engine.loading import LoadedModel, PreparedBatch, build_inputs, load_model
from ...engine.presets import LAYER_PRESETS, preset_layers  # noqa: F401  (re-exported)
from ...errors import ConfigError
from ..base import EnginePlan, Method, MethodConfig, register_method
from .attribution import attention_rows
from .evidence import block_maps, denoised_scores, evidence_map, highlight, input_highlight
from .profiling import LayerProfile
from .prompts import OPENING, QA_PROMPT, VEA_HINT, VEA_PROMPT, qa_prompt, vea_prompt  # noqa: F401

LayerSet = Literal["auto", "profiled", "all", "first_half", "second_half"]


@dataclass(frozen=True)
class VEAConfig(MethodConfig):
    """VEA's knobs. Source of each default in brackets.

    layer_set: where L_VG comes from: "profiled" (``layers``, else ``profile``, else a preset; an error if
        none), "all" / "first_half" / "second_half" (the paper's fixed-depth attribution baselines), or
        "auto" = profiled when available, else "second_half". ["auto": ours, so any model runs]
    layers: explicit L_VG. [None]
    profile: a profile file from ``seesay profile`` whose chosen layers are L_VG. [None]
    lam: Eq. 2 spike threshold. [10: paper]
    sigma: Eq. 3 blur; <= 1 a fraction of the shorter side, > 1 pixels. [0.5: paper]
    alpha: Eq. 4 brightness floor. [0.5: paper]
    denoise, smooth: turn Eq. 2 / the blur of Eq. 3 off (ablations). [True]
    highlight: answer on the highlighted image; False answers on the plain image with the answer prompt
        (the paper's "Inst" ablation row with ``prompt="vea"``). [True: paper]
    highlight_on: "input" highlights the image as the model sees it (after the processor's resize /
        crop; families with tiles fall back to the original), "original" the original image with the map
        carried to it. ["input": the reference, which highlights its processed image]
    prompt: "vea" (QA prompt + highlight hint for the answer, QA prompt for the map), "qa" (QA prompt for
        both) or "question" (the bare question for both: models trained without instructions, such as
        seesay's demo model). [vea: paper]
    delegate: model (path or hub id) that computes the map; the answering model is the one given. [None]
    save_maps: a folder for PNGs of each sample's heatmap overlay and highlighted image. [None]
    """

    layer_set: LayerSet = "auto"
    layers: tuple[int, ...] | None = None
    profile: str | None = None
    lam: float = 10.0
    sigma: float = 0.5
    alpha: float = 0.5
    denoise: bool = True
    smooth: bool = True
    highlight: bool = True
    highlight_on: Literal["input", "original"] = "input"
    prompt: Literal["vea", "qa", "question"] = "vea"
    delegate: str | None = None
    save_maps: str | None = None

    def __post_init__(self) -> None:
        if self.layer_set not in ("auto", "profiled", "all", "first_half", "second_half"):
            raise ConfigError(
                f"vea layer_set must be auto, profiled, all, first_half or second_half; got "
                f"{self.layer_set!r}"
            )
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
            if not self.layers:
                raise ConfigError("vea layers must name at least one layer (got an empty list)")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"vea alpha must be in [0, 1]; got {self.alpha}")
        if self.lam <= 0 or self.sigma < 0:
            raise ConfigError("vea lam must be > 0 and sigma >= 0")
        if self.prompt not in ("vea", "qa", "question"):
            raise ConfigError(f"vea prompt must be 'vea', 'qa' or 'question'; got {self.prompt!r}")
        if self.highlight_on not in ("input", "original"):
            raise ConfigError(f"vea highlight_on must be 'input' or 'original'; got {self.highlight_on!r}")

    def resolve_layers(self, loaded: LoadedModel) -> tuple[int, ...]:
        """L_VG for ``loaded`` (the attribution model)."""
        n = loaded.adapter.num_layers
        fixed = {
            "all": tuple(range(n)),
            "first_half": tuple(range(n // 2)),
            "second_half": tuple(range(n // 2, n)),
        }
        if self.layer_set in fixed:
            return fixed[self.layer_set]
        layers = self.layers
        if layers is None and self.profile:
            layers = LayerProfile.load(self.profile).layers
        if layers is None:
            layers = preset_layers(loaded.name)
        if layers is None:
            if self.layer_set == "profiled":
                raise ConfigError(
                    f"no visual-grounding layers for {loaded.name or 'this model'}: run `seesay profile` "
                    "and pass profile=FILE, or layers=[...], or layer_set=second_half"
                )
            return fixed["second_half"]
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise ConfigError(f"vea layers {bad} out of range for a {n}-layer model")
        return tuple(layers)


def heat_overlay(image: Image.Image, emap: np.ndarray, weight: float = 0.5) -> Image.Image:
    """The evidence map as a blue-to-red heatmap blended over the image."""
    e = np.clip(emap, 0, 1)[..., None]
    heat = np.concatenate([np.clip(1.5 - np.abs(4 * e - k), 0, 1) for k in (3, 2, 1)], axis=-1) * 255
    base = np.asarray(image.convert("RGB"), dtype=np.float64)
    return Image.fromarray(np.clip((1 - weight) * base + weight * heat, 0, 255).astype(np.uint8))


@dataclass
class EvidenceResult:
    """One image's map: the evidence map [H, W] in [0, 1], the highlighted image, the layers used, the
    Eq. 1 score of every image token and the tokens' layout (to score it against evidence boxes)."""

    emap: np.ndarray
    highlighted: Image.Image
    layers: tuple[int, ...]
    token_scores: np.ndarray
    layout: ImageLayout | None = None
    retrieval_scores: np.ndarray | None = None  # Eq. 1 + Eq. 2 (denoised) scores: what retrieval is scored on


@register_method("vea")
class VEA(Method):
    """VEA on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = VEAConfig
    reads_image_tokens = True

    def __init__(
        self, config: VEAConfig | None = None, trace: bool = False, delegate: LoadedModel | None = None
    ):
        super().__init__(config, trace)
        self._delegate = delegate  # the delegate attribution model, loaded once (not per-call state)

    def attribution_model(self, loaded: LoadedModel) -> LoadedModel:
        cfg: VEAConfig = self.config  # type: ignore[assignment]
        if self._delegate is None and cfg.delegate:
            self._delegate = load_model(cfg.delegate, device=str(loaded.device))
        return self._delegate or loaded

    def evidence(
        self, loaded: LoadedModel, images: list[list[Image.Image]], questions: list[str]
    ) -> list[list[EvidenceResult]]:
        """Eqs. 1-4 for a batch: per sample, per image, the map and the highlighted image (the attribution
        pass, then :meth:`evidence_from_rows`)."""
        cfg: VEAConfig = self.config  # type: ignore[assignment]
        mapper = self.attribution_model(loaded)
        layers = cfg.resolve_layers(mapper)
        batch = build_inputs(mapper, images, [self.map_prompt(q) for q in questions])
        rows = attention_rows(mapper, batch, layers)  # [B, n_layers, T]
        return self.evidence_from_rows(mapper, batch, rows, layers)

    def map_prompt(self, question: str) -> str:
        """The text the attribution pass reads the attention of (the QA prompt, or the bare question)."""
        return question if self.config.prompt == "question" else qa_prompt(question)  # type: ignore[attr-defined]

    def evidence_from_rows(
        self, mapper: LoadedModel, batch: PreparedBatch, rows: np.ndarray, layers: tuple[int, ...]
    ) -> list[list[EvidenceResult]]:
        """Eqs. 1-4 from attention rows already read: ``rows`` [B, len(layers), T] is the last prompt
        token's head-mean attention at ``layers`` (:func:`~seesay.methods.vea.attribution.attention_rows`
        of ``batch``, the map prompt on the original images, or the same rows recorded by a tapped plain
        pass)."""
        cfg: VEAConfig = self.config  # type: ignore[assignment]
        layouts = mapper.adapter.image_layouts(batch.inputs, batch.original_sizes)
        results = []
        for b, per_image in enumerate(layouts):
            sample = []
            for layout, image in zip(per_image, batch.images[b], strict=True):
                scores = rows[b][:, layout.positions].mean(axis=0)  # Eq. 1
                sigma = cfg.sigma if cfg.smooth else 0.0
                maps = block_maps(layout, scores, cfg.lam, sigma, cfg.denoise)  # Eqs. 2-3, once
                emap = evidence_map(layout, scores, maps=maps)
                retrieval = denoised_scores(layout, scores, cfg.lam) if cfg.denoise else scores
                highlighted = None
                if cfg.highlight_on == "input":
                    highlighted = input_highlight(image, layout, scores, alpha=cfg.alpha, maps=maps)
                if highlighted is None:
                    highlighted = highlight(image, emap, cfg.alpha)
                sample.append(EvidenceResult(emap, highlighted, tuple(layers), scores, layout, retrieval))
            results.append(sample)
        return results

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        """The attribution pass and the highlight happen here; decoding then answers from the
        highlighted images with the method's prompt."""
        if not batch.questions:
            raise ConfigError("vea needs the questions of the batch (build it with seesay.build_inputs)")
        return self.plan_from_maps(loaded, batch, self.evidence(loaded, batch.images, batch.questions))

    def plan_from_maps(
        self,
        loaded: LoadedModel,
        batch: PreparedBatch,
        maps: list[list[EvidenceResult]],
        passes_before: int = 1,
    ) -> EnginePlan:
        """The answer pass from each sample's maps (:meth:`evidence` or :meth:`evidence_from_rows`):
        the highlighted images with the method's prompt. ``passes_before``: the attribution passes run
        for them (0 when the rows came from a pass run anyway)."""
        cfg: VEAConfig = self.config  # type: ignore[assignment]
        if not batch.questions:
            raise ConfigError("vea needs the questions of the batch (build it with seesay.build_inputs)")
        if cfg.save_maps:
            self._save(maps, batch.images, Path(cfg.save_maps))
        prompt = {"vea": vea_prompt, "qa": qa_prompt, "question": lambda q: q}[cfg.prompt]
        images = [[m.highlighted for m in sample] for sample in maps] if cfg.highlight else list(batch.images)
        answer_batch = build_inputs(loaded, images, [prompt(q) for q in batch.questions])

        def finish(out: DecodeOutput) -> DecodeOutput:
            if self.trace:
                info = [
                    {"step": 0, "layers": list(sample[0].layers), "evidence_peak_xy": _peak(sample[0].emap)}
                    for sample in maps
                ]
                out.trace = [info] + [[{"step": t}] * len(maps) for t in range(1, out.new_tokens.shape[1])]
            return out

        # passes_before: the attribution pass; evidence: each sample's maps (seesay eval scores them)
        return EnginePlan(
            inputs=answer_batch.inputs, passes_before=passes_before, evidence=maps, finish=finish
        )

    @staticmethod
    def _save(maps: list[list[EvidenceResult]], images: list[list[Image.Image]], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for b, sample in enumerate(maps):
            for k, (result, image) in enumerate(zip(sample, images[b], strict=True)):
                stem = f"{b}" if len(sample) == 1 else f"{b}_{k}"
                heat_overlay(image, result.emap).save(folder / f"{stem}_heatmap.png")
                result.highlighted.save(folder / f"{stem}_highlighted.png")


def _peak(emap: np.ndarray) -> list[int]:
    y, x = np.unravel_index(int(np.argmax(emap)), emap.shape)
    return [int(x), int(y)]


def top_fraction_count(num_layers: int, fraction: float = 0.1) -> int:
    """ceil(fraction * L): how many layers profiling keeps. [10%: paper]"""
    return max(1, math.ceil(fraction * num_layers))


def describe(result: EvidenceResult) -> dict[str, Any]:
    return {"layers": list(result.layers), "peak_xy": _peak(result.emap)}
