"""DeCo: dynamic correction decoding (Wang et al., "MLLM can see? Dynamic Correction Decoding for
Hallucination Mitigation", ICLR 2025), as the official code computes it (github.com/zjunlp/Deco:
``transformers/generation/utils.py``, ``models/llama/modeling_llama.py``).

Per step, with z the final logits, p = softmax(z), and z^(j) = lm_head(norm(hidden_states[j])) for the
early-exit layers j (``hidden_states[0]`` = the embedding output):

    C   = the top_k tokens of p, cut after the first whose cumulative probability reaches top_p
    j*, m = argmax / max over (j, c in C) of softmax(z^(j))_c         (the anchor layer and its confidence)
    scores = z + alpha * m * z^(j*)   on C; -inf elsewhere

Per sample (the official code runs one sample at a time). At ``alpha == 0`` the scores are z on C, whose
argmax is z's: greedy decoding is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..engine.decoding import StepResult, StepState
from ..engine.lens import LogitLens
from ..engine.loading import LoadedModel, PreparedBatch
from ..errors import ConfigError
from .base import EnginePlan, Method, MethodConfig, register_method

# The official interval for 32-layer LLaVA-1.5 7B: early_exit_layers = range(20, 29).
REFERENCE_DEPTH, REFERENCE_FIRST, REFERENCE_LAST = 32, 20, 28


@dataclass(frozen=True)
class DeCoConfig(MethodConfig):
    """DeCo's knobs. Source of each default in brackets.

    alpha: strength of the anchor layer's correction; 0 leaves greedy decoding unchanged. [0.6: DeCo
        README]
    top_k, top_p: the candidate set from the final layer. [20, 0.9: DeCo README]
    layers: ``hidden_states`` indices of the early-exit layers (0 = embedding output, j = output of decoder
        layer j-1), or "auto": the official range(20, 29) of a 32-layer model scaled to the model's depth,
        round(20 L / 32) .. round(28 L / 32), below L. [range(20, 29): DeCo README; the scaling is ours]
    """

    alpha: float = 0.6
    top_k: int = 20
    top_p: float = 0.9
    layers: str | tuple[int, ...] = "auto"

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"deco alpha must be >= 0; got {self.alpha}")
        if self.top_k < 1:
            raise ConfigError(f"deco top_k must be >= 1; got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"deco top_p must be in (0, 1]; got {self.top_p}")
        if isinstance(self.layers, list | tuple):
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
            if not self.layers:
                raise ConfigError("deco layers must not be empty")
        elif self.layers != "auto":
            raise ConfigError(f"deco layers must be 'auto' or a list of indices; got {self.layers!r}")

    def early_exit_layers(self, num_layers: int) -> list[int]:
        """The early-exit ``hidden_states`` indices for a model with ``num_layers`` decoder layers."""
        if isinstance(self.layers, tuple):
            if any(not 0 <= j < num_layers for j in self.layers):
                raise ConfigError(f"deco layers must be hidden_states indices in 0 .. {num_layers - 1}")
            return sorted(set(self.layers))
        first = int(REFERENCE_FIRST * num_layers / REFERENCE_DEPTH + 0.5)
        last = min(int(REFERENCE_LAST * num_layers / REFERENCE_DEPTH + 0.5), num_layers - 1)
        first = max(0, min(first, last))
        return list(range(first, last + 1))


def candidate_mask(probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """[B, V] bool: the top_k tokens, cut after the first whose cumulative probability reaches top_p."""
    k = min(top_k, probs.shape[-1])
    top, ids = probs.topk(k, dim=-1)
    cutoff = torch.searchsorted(top.cumsum(-1), torch.full_like(top[:, :1], top_p), right=False) + 1
    keep = torch.arange(k, device=probs.device)[None] < cutoff.clamp(max=k)
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, ids, keep)


def deco_scores(
    final: torch.Tensor, premature: torch.Tensor, alpha: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores [B, V], anchor index into the early-exit layers [B], its confidence m [B]) from the final
    logits [B, V] and the early-exit logits [C, B, V] (module docstring)."""
    cand = candidate_mask(final.softmax(-1), top_k, top_p)
    probs = premature.softmax(-1).masked_fill(~cand[None], -1.0)  # [C, B, V]
    per_layer = probs.max(dim=-1).values  # [C, B]
    confidence, anchor = per_layer.max(dim=0)  # [B]
    chosen = premature[anchor, torch.arange(final.shape[0], device=final.device)]  # [B, V]
    scores = (final + alpha * confidence[:, None] * chosen).masked_fill(~cand, float("-inf"))
    return scores, anchor, confidence


class DeCoStep:
    """The per-step hook: every early-exit layer's logits in one lm_head call with the final ones."""

    def __init__(self, config: DeCoConfig, loaded: LoadedModel, trace: bool = False):
        self.config = config
        self.layers = config.early_exit_layers(loaded.adapter.num_layers)
        self.capture_layers = [j - 1 for j in self.layers]  # hidden_states[j] = output of layer j-1
        self.lens = LogitLens(loaded.adapter, final_norm=True)  # DeCo: lm_head(norm(hidden_states[j]))
        self.trace_enabled = trace

    def __call__(self, state: StepState) -> StepResult:
        cfg = self.config
        final, *prem = state.readout(*(self.lens.normalize(state.hidden[j]) for j in self.capture_layers))
        scores, anchor, confidence = deco_scores(final, torch.stack(prem), cfg.alpha, cfg.top_k, cfg.top_p)
        trace = None
        if self.trace_enabled:
            trace = [
                {"step": state.step, "anchor_layer": self.layers[int(a)], "confidence": float(c)}
                for a, c in zip(anchor, confidence, strict=True)
            ]
        return StepResult(scores, trace)


@register_method("deco")
class DeCo(Method):
    """DeCo on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = DeCoConfig

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        step = DeCoStep(self.config, loaded, trace=self.trace)  # type: ignore[arg-type]
        return EnginePlan(hook=step, hidden_layers=tuple(step.capture_layers))
