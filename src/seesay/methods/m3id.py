"""M3ID: multi-modal mutual-information decoding (Favero et al., CVPR 2024, arXiv 2403.14003).

Per step t = 1, 2, ... (the t-th new token), with l_c = log_softmax of the logits given the image and
l_u = log_softmax of the logits of the same prompt and tokens without the image (the text-only branch):

    gamma_t = exp(-lam * t)
    scores  = l_c + ((1 - gamma_t) / gamma_t) * (l_c - l_u)      where max_v exp(l_c(v)) < threshold
    scores  = l_c                                                 elsewhere (the model is confident)

The weight (1 - gamma_t) / gamma_t grows with t: the later the token, the more the image's pointwise
mutual information with it, l_c - l_u, is amplified (the paper's finding: reliance on the image fades
as more tokens are generated). At ``lam == 0`` the weight is 0 and no text-only pass runs.

No official code is public. The rule and the gate follow the paper's form as read in
sangminwoo/AvisC issue #9 (the AvisC authors agree it is the paper's); lam = 0.02 and t counted from 1
are AvisC's M3ID baseline (``avisc_utils/avisc_sample.py``, 40b3fc0), which replaces the gate by VCD's
plausibility cutoff: ``gate="plausibility"`` reproduces that variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..engine.decoding import Branch, GenerationSettings
from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.variants import text_only_for
from ..errors import ConfigError
from .base import BranchContrastStep, EnginePlan, Method, MethodConfig, register_method

TEXT_ONLY = "text_only"


@dataclass(frozen=True)
class M3IDConfig(MethodConfig):
    """M3ID's knobs. Source of each default in brackets.

    lam: the rate lambda of gamma_t = exp(-lam t); 0 turns M3ID off. [0.02: AvisC's M3ID baseline]
    gate: "confidence" adds the correction only where the image branch's top probability is below
        ``threshold`` (the paper's rule); "plausibility" always adds it, on the tokens whose image-branch
        probability is at least ``threshold`` x the top one (-inf elsewhere: AvisC's variant).
        ["confidence": paper, as read in AvisC issue #9]
    threshold: the gate's probability. [0.1: AvisC's cd_beta, the value issue #9's paper-form rule uses]
    """

    lam: float = 0.02
    gate: Literal["confidence", "plausibility"] = "confidence"
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"m3id lam must be >= 0 (0: off); got {self.lam}")
        if self.gate not in ("confidence", "plausibility"):
            raise ConfigError(f"m3id gate must be 'confidence' or 'plausibility'; got {self.gate!r}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"m3id threshold must be in (0, 1]; got {self.threshold}")


# (1 - gamma_t) / gamma_t = exp(lam t) - 1 must stay finite in float32, where the scores are computed
_MAX_EXPONENT = math.log(torch.finfo(torch.float32).max)


def _floor4(x: float) -> float:
    """``x`` rounded down to 4 decimals (a bound quoted in a message must itself pass)."""
    return math.floor(x * 1e4) / 1e4


def _overflow(lam: float, t: int) -> str | None:
    """Why the weight exp(lam t) - 1 overflows float32 by step ``t`` (None: it does not), with the
    largest lam that fits.

    A finite weight is necessary, not sufficient: near the bound ``weight x (l_c - l_u)`` can itself
    overflow for tokens whose log-probabilities differ by more than float32's headroom."""
    if lam * t <= _MAX_EXPONENT:
        return None
    return (
        f"the weight exp(lam x t) - 1 overflows float32 (lam x {t} = {lam * t:g} > {_MAX_EXPONENT:.1f}); "
        f"use lam <= {_floor4(_MAX_EXPONENT / t)}"
    )


def _check_weight(lam: float, t: int) -> float:
    """The weight exp(lam t) - 1 of step ``t``; a ConfigError when it overflows float32."""
    reason = _overflow(lam, t)
    if reason is not None:
        raise ConfigError(f"m3id: at step t = {t} {reason}")
    return math.expm1(lam * t)  # without dividing by gamma_t


def m3id_scores(
    image_logits: torch.Tensor, text_logits: torch.Tensor, t: int, config: M3IDConfig
) -> torch.Tensor:
    """The module docstring's scores [B, V] at step ``t`` (1 for the first new token)."""
    weight = _check_weight(config.lam, t)
    lc = torch.log_softmax(image_logits.float(), dim=-1)
    lu = torch.log_softmax(text_logits.float(), dim=-1)
    corrected = lc + weight * (lc - lu)
    top = lc.max(dim=-1, keepdim=True).values
    if config.gate == "confidence":
        return torch.where(top < math.log(config.threshold), corrected, lc)
    return corrected.masked_fill(lc < top + math.log(config.threshold), float("-inf"))


class M3IDStep(BranchContrastStep):
    """Per step: the text-only branch read out with the image branch's, then :func:`m3id_scores`."""

    branch = TEXT_ONLY
    trace_keys = ("image_top", "text_top")

    def combine(self, logits: torch.Tensor, other: torch.Tensor, step: int) -> torch.Tensor:
        return m3id_scores(logits, other, step + 1, self.config)  # type: ignore[arg-type]


@register_method("m3id")
class M3ID(Method):
    """M3ID on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = M3IDConfig
    reads_image_tokens = True

    def check_settings(self, settings: GenerationSettings) -> None:
        """The weight must stay finite up to the last new token: refused before decoding, not at the
        step where it overflows."""
        lam, n = self.config.lam, settings.max_new_tokens  # type: ignore[attr-defined]
        reason = _overflow(lam, n)
        if reason is not None:
            limit = math.floor(_MAX_EXPONENT / lam)  # 0 when even one token overflows: not worth quoting
            fewer = f" or max_new_tokens <= {limit}" if limit >= 1 else ""
            raise ConfigError(f"m3id: with max_new_tokens = {n} {reason}{fewer}")

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        cfg: M3IDConfig = self.config  # type: ignore[assignment]
        if cfg.lam == 0:  # weight 0 at every step: the image branch's own scores, no second branch
            return EnginePlan()
        branch = Branch(TEXT_ONLY, text_only_for(loaded, batch))
        return EnginePlan(hook=M3IDStep(cfg, trace=self.trace), branches=(branch,))
