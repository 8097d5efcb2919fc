"""ICD: instruction contrastive decoding (Wang et al., Findings of ACL 2024).

A second branch reads the same image with a disturbed instruction: a role prefix that asks for a
confused reading of the image, put right before the question (after the image placeholder, where the
public ICD code puts it). Per step, with z = logits(instruction) and z' = logits(disturbed instruction),
VCD's contrast and plausibility constraint:

    scores = (1 + alpha) z - alpha z'    on {v : z_v >= log beta + max z}; -inf elsewhere

At ``alpha == 0`` no second branch runs and decoding is plain. The branch has its own KV cache; its
images match the batch's, so the engine runs it in the main forward as one left-padded 2B batch (the
disturbed prompt is a few tokens longer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..engine.decoding import Branch
from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.variants import insert_before_question, with_prompts
from ..errors import ConfigError
from .base import BranchContrastStep, EnginePlan, Method, MethodConfig, register_method
from .contrast import contrastive_scores

DISTURBED = "disturbed"


@dataclass(frozen=True)
class ICDConfig(MethodConfig):
    """ICD's knobs. Source of each default in brackets.

    alpha: contrast strength; 0 gives plain decoding. [1.0: VCD's, whose contrast ICD uses]
    beta: plausibility cutoff on the instruction branch. [0.1: VCD's adaptive plausibility constraint]
    prefix: the disturbance, a role prefix. [ICD paper's example and the public ICD scripts:
        "You are a confused object detector."]
    """

    alpha: float = 1.0
    beta: float = 0.1
    prefix: str = "You are a confused object detector."

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"icd alpha must be >= 0; got {self.alpha}")
        if not 0 < self.beta <= 1:
            raise ConfigError(f"icd beta must be in (0, 1]; got {self.beta}")
        if not self.prefix.strip():
            raise ConfigError("icd prefix must not be empty")


class ICDStep(BranchContrastStep):
    """Per step: the disturbed branch's readout with the main one, then the contrast."""

    branch = DISTURBED
    trace_keys = ("top", "disturbed_top")

    def combine(self, logits: torch.Tensor, other: torch.Tensor, step: int) -> torch.Tensor:
        return contrastive_scores(logits, other, self.config.alpha, self.config.beta)


@register_method("icd")
class ICD(Method):
    """ICD on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = ICDConfig

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        cfg: ICDConfig = self.config  # type: ignore[assignment]
        if cfg.alpha == 0:
            return EnginePlan()
        prompts = insert_before_question(batch, cfg.prefix + " ")
        branch = Branch(DISTURBED, with_prompts(loaded, batch, prompts))
        return EnginePlan(hook=ICDStep(cfg, trace=self.trace), branches=(branch,))
