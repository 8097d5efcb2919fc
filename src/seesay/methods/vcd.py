"""VCD: visual contrastive decoding (Leng et al., CVPR 2024).

A second branch reads the same prompt with a noised image, with its own KV cache. The noise is the forward
diffusion process on the normalised pixel tensor,

    v' = sqrt(abar_t) v + sqrt(1 - abar_t) eps,   eps ~ N(0, I),   abar_t = prod_{s <= t} (1 - beta_s),
    beta_s = sigmoid(linspace(-6, 6, T))_s * (beta_max - beta_min) + beta_min,

and per step, with z = logits(v) and z' = logits(v'),

    scores = (1 + alpha) z - alpha z'   on {v : z_v >= log beta + max z}; -inf elsewhere.

Two passes per token, run by the engine as one forward of 2B rows (the noised branch has the batch's
shapes). Greedy and sampling both use these scores (the original code patched only
sampling, so greedy silently ignored VCD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..engine.decoding import Branch
from ..engine.loading import LoadedModel, PreparedBatch
from ..errors import ConfigError
from .base import BranchContrastStep, EnginePlan, Method, MethodConfig, register_method
from .contrast import contrastive_scores


@dataclass(frozen=True)
class VCDConfig(MethodConfig):
    """VCD's knobs. Source of each default in brackets.

    alpha: contrast strength; 0 gives plain decoding. [1.0: VCD paper / code]
    beta: plausibility cutoff on the clean logits. [0.1: VCD]
    noise_step: diffusion step t of the noised image. [500: VCD]
    num_steps: T of the schedule. [1000: VCD]
    beta_min, beta_max: ends of the sigmoid beta schedule. [1e-5, 5e-3: VCD]
    noise_seed: seed of eps, so a run is reproducible (None: torch's global generator, as VCD). [0: ours]
    """

    alpha: float = 1.0
    beta: float = 0.1
    noise_step: int = 500
    num_steps: int = 1000
    beta_min: float = 1e-5
    beta_max: float = 5e-3
    noise_seed: int | None = 0

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"vcd alpha must be >= 0; got {self.alpha}")
        if not 0 < self.beta <= 1:
            raise ConfigError(f"vcd beta must be in (0, 1]; got {self.beta}")
        if not 0 <= self.noise_step < self.num_steps:
            raise ConfigError(f"vcd noise_step must be in 0 .. {self.num_steps - 1}; got {self.noise_step}")
        if not 0 < self.beta_min < self.beta_max < 1:
            raise ConfigError("vcd needs 0 < beta_min < beta_max < 1")


def diffusion_schedule(num_steps: int = 1000, beta_min: float = 1e-5, beta_max: float = 5e-3) -> torch.Tensor:
    """abar_t for t = 0 .. T-1 of VCD's sigmoid beta schedule (float64)."""
    betas = (
        torch.sigmoid(torch.linspace(-6, 6, num_steps, dtype=torch.float64)) * (beta_max - beta_min)
        + beta_min
    )
    return torch.cumprod(1 - betas, dim=0)


def add_diffusion_noise(
    pixel_values: torch.Tensor, config: VCDConfig, rows_per_sample: list[int] | None = None
) -> torch.Tensor:
    """v' = sqrt(abar_t) v + sqrt(1 - abar_t) eps on the normalised pixel tensor (any layout).

    With ``rows_per_sample`` (how many leading rows of ``pixel_values`` each sample owns) and a seed, each
    sample's eps is drawn from a generator seeded afresh with ``noise_seed``: a sample gets the same
    noise in any batch as alone, so a batch decodes each sample as it would one at a time.
    """
    abar = float(diffusion_schedule(config.num_steps, config.beta_min, config.beta_max)[config.noise_step])
    device = pixel_values.device

    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        generator = None
        if config.noise_seed is not None:
            generator = torch.Generator(device=device).manual_seed(config.noise_seed)
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)

    if rows_per_sample is None or config.noise_seed is None:
        eps = draw(tuple(pixel_values.shape))
    else:
        rest = tuple(pixel_values.shape[1:])
        eps = torch.cat([draw((rows, *rest)) for rows in rows_per_sample], dim=0)
    noisy = math.sqrt(abar) * pixel_values.float() + math.sqrt(1 - abar) * eps
    return noisy.to(pixel_values.dtype)


def rows_per_sample(inputs: dict[str, torch.Tensor], image_mask: torch.Tensor) -> list[int]:
    """How many leading rows of ``pixel_values`` belong to each sample of the batch.

    One row (image) each when the first dimension is the batch (LLaVA, LLaVA-NeXT, Gemma3); Qwen2-VL's
    patch rows from ``image_grid_thw`` (t * h * w per image); else (InternVL's tiles) in proportion to
    each sample's image tokens, which is a fixed number per row.
    """
    pixels = inputs["pixel_values"]
    batch = image_mask.shape[0]
    per_sample_tokens = image_mask.sum(-1).tolist()
    if pixels.shape[0] == batch:
        return [1] * batch
    grid = inputs.get("image_grid_thw")
    if grid is not None and grid.shape[0] == batch:
        return [int(t * h * w) for t, h, w in grid.tolist()]
    total = sum(per_sample_tokens)
    rows = [pixels.shape[0] * n // total for n in per_sample_tokens] if total else []
    if sum(rows) != pixels.shape[0]:
        raise ConfigError("vcd cannot tell which image rows belong to which sample of this batch")
    return rows


NOISED = "noised"


class VCDStep(BranchContrastStep):
    """The per-step hook: contrasts the clean logits with the noised branch's (engine-run, its own cache)."""

    branch = NOISED
    trace_keys = ("clean_top", "noisy_top")

    def combine(self, logits: torch.Tensor, other: torch.Tensor, step: int) -> torch.Tensor:
        return contrastive_scores(logits, other, self.config.alpha, self.config.beta)


def noised_branch(config: VCDConfig, loaded: LoadedModel, inputs: dict[str, torch.Tensor]) -> Branch:
    """The batch with each sample's image noised (same shapes: the engine runs it in the main forward)."""
    noisy = dict(inputs)
    rows = rows_per_sample(inputs, loaded.adapter.image_mask(inputs["input_ids"]))
    noisy["pixel_values"] = add_diffusion_noise(inputs["pixel_values"], config, rows)
    return Branch(NOISED, noisy)


@register_method("vcd")
class VCD(Method):
    """VCD on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = VCDConfig
    reads_image_tokens = True

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        if "pixel_values" not in batch.inputs:
            raise ConfigError("vcd needs pixel_values in the inputs (an image to noise)")
        cfg: VCDConfig = self.config  # type: ignore[assignment]
        return EnginePlan(
            hook=VCDStep(cfg, trace=self.trace), branches=(noised_branch(cfg, loaded, batch.inputs),)
        )
