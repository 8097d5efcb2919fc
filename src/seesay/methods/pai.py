"""PAI: paying more attention to the image (Liu et al., ECCV 2024).

Two parts, each checked against the official code (github.com/LALBJ/PAI: ``attention.py``, ``CFG.py``):

* **Attention amplification.** In decoder layers ``start_layer <= l < end_layer``, the last query row's
  pre-softmax scores on the image keys (after the mask) are pushed up by their magnitude,

      a_j <- a_j + alpha |a_j|        for every image key j,

  then softmax as usual. seesay does it as a score edit on the attention tap (sdpa for every other row).
* **Logit refinement** against the text-only branch (the prompt without the image, no amplification),
  with s = log_softmax(z_image), u = log_softmax(z_text):

      scores = gamma (s - u) + u = s + (gamma - 1)(s - u)    on {v : s_v >= log beta + max s}, -inf else

  At ``gamma == 1`` the scores are ``s`` and no text-only pass runs (PAI's processor returns ``s`` there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..engine.decoding import Branch
from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.tap import AttentionTap, LayerScores, ScoreChange, keys_from_positions
from ..engine.variants import text_only_for
from ..errors import ConfigError
from .base import BranchContrastStep, EnginePlan, Method, MethodConfig, register_method

TEXT_ONLY = "text_only"


@dataclass(frozen=True)
class PAIConfig(MethodConfig):
    """PAI's knobs. Source of each default in brackets.

    alpha: image-attention amplification; 0 leaves attention alone. [0.2: PAI README, POPE and CHAIR]
    gamma: guidance against the text-only branch; 1 turns it off. [1.1: PAI README, POPE and CHAIR]
    start_layer: first amplified decoder layer (0-based). [2: PAI README --start-layer 2]
    end_layer: one past the last amplified layer; None = every layer from ``start_layer`` on.
        [PAI README --end-layer 32: all of LLaVA-1.5 7B's 32 layers]
    beta: plausibility cutoff on the image branch's probabilities. [0.1: PAI CFG.py, fixed there]
    """

    alpha: float = 0.2
    gamma: float = 1.1
    start_layer: int = 2
    end_layer: int | None = None
    beta: float = 0.1

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"pai alpha must be >= 0; got {self.alpha}")
        if self.gamma < 1:
            raise ConfigError(f"pai gamma must be >= 1 (1: no guidance); got {self.gamma}")
        if self.start_layer < 0 or (self.end_layer is not None and self.end_layer <= self.start_layer):
            raise ConfigError("pai needs 0 <= start_layer < end_layer")
        if not 0 < self.beta <= 1:
            raise ConfigError(f"pai beta must be in (0, 1]; got {self.beta}")


class ImageAttentionBoost:
    """The tap edit ``a <- a + alpha |a|`` on the image keys of the tapped (last) row.

    The bias is ``|a| * (alpha m)`` with ``m`` the layer's image-key mask; ``alpha m`` is built once per
    key range (every layer of a step shares it; a hybrid model's sliding-window and full layers each have
    theirs), so a layer pays two kernels (abs, multiply). The edit belongs to one plan (one ``generate``
    call): its cache is that call's, never the method's."""

    MAX_RANGES = 4  # key ranges kept: a step has one per kind of layer; the next step's are new ones

    def __init__(self, alpha: float, image_positions: torch.Tensor):
        self.alpha = alpha
        self.image_positions = image_positions  # [B, T] bool, absolute positions
        self._weights: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def _key_weights(self, scores: torch.Tensor, key_offset: int) -> torch.Tensor:
        """alpha on the image keys, 0 elsewhere, [B, 1, 1, K] in the scores' dtype and device."""
        spec = (key_offset, scores.shape[-1], scores.device, scores.dtype)
        weights = self._weights.get(spec)
        if weights is None:
            if len(self._weights) >= self.MAX_RANGES:
                self._weights.clear()  # an earlier step's key ranges: the keys have grown since
            keys = keys_from_positions(self.image_positions.to(scores.device), key_offset, spec[1])
            weights = self._weights[spec] = keys[:, None, None, :].to(scores.dtype) * self.alpha
        return weights

    def __call__(self, scores: LayerScores) -> ScoreChange:
        return ScoreChange(bias=scores.scores.abs().mul_(self._key_weights(scores.scores, scores.key_offset)))


def guided_scores(
    image_logits: torch.Tensor, text_logits: torch.Tensor, gamma: float, beta: float
) -> torch.Tensor:
    """gamma (s - u) + u on the plausible set of s (log-probabilities of each branch), -inf elsewhere."""
    s = torch.log_softmax(image_logits, dim=-1)
    u = torch.log_softmax(text_logits, dim=-1)
    cutoff = math.log(beta) + s.max(dim=-1, keepdim=True).values
    return (gamma * (s - u) + u).masked_fill(s < cutoff, float("-inf"))


class PAIStep(BranchContrastStep):
    """Per step: the text-only branch's readout with the image branch's, then :func:`guided_scores`."""

    branch = TEXT_ONLY
    trace_keys = ("image_top", "text_top")

    def combine(self, logits: torch.Tensor, other: torch.Tensor, step: int) -> torch.Tensor:
        return guided_scores(logits, other, self.config.gamma, self.config.beta)


@register_method("pai")
class PAI(Method):
    """PAI on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = PAIConfig
    reads_image_tokens = True

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        cfg: PAIConfig = self.config  # type: ignore[assignment]
        adapter = loaded.adapter
        end = adapter.num_layers if cfg.end_layer is None else min(cfg.end_layer, adapter.num_layers)
        if cfg.start_layer >= end:
            raise ConfigError(
                f"pai start_layer {cfg.start_layer} is past the model's {adapter.num_layers} layers"
            )
        tap = None
        if cfg.alpha > 0:
            image = adapter.image_mask(batch.inputs["input_ids"])
            tap = AttentionTap(
                layers=range(cfg.start_layer, end),
                record="none",
                edits=(ImageAttentionBoost(cfg.alpha, image),),
            )
        if cfg.gamma == 1:  # PAI's processor returns log_softmax(s) at guidance 1: plain scores
            return EnginePlan(tap=tap)
        branch = Branch(TEXT_ONLY, text_only_for(loaded, batch))  # not tapped: no amplification
        return EnginePlan(hook=PAIStep(cfg, trace=self.trace), tap=tap, branches=(branch,))
