"""DoLa: decoding by contrasting layers (Chuang et al., ICLR 2024), as transformers 4.55 implemented it.

Per step, with z^(j) = lm_head(h_j) read from ``hidden_states[j]`` (j = 0: embedding output) at the last
position and the final logits z:

    candidates J = "low":  range(s, L//2, 2)   (L > 40: range(s, 20, 2)),   s = 2 if tied embeddings else 0
                   "high": range(L//2, L, 2)   (L > 40: range(L-20, L, 2))
    m  = argmax_{j in J} JS(softmax z || softmax z^(j))                        (per sample, or batch mean)
    V_head = {v : log p(v) >= max log p + log relative_top}
    scores = log_softmax(z) - alpha * log_softmax(z^(m))   on V_head; -inf elsewhere
             (the premature side takes -1e-3 outside V_head, as in transformers 4.55)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from ..engine.decoding import StepResult, StepState
from ..engine.lens import LogitLens
from ..engine.loading import LoadedModel, PreparedBatch
from ..errors import ConfigError
from .base import EnginePlan, Method, MethodConfig, register_method
from .contrast import plausible_mask

BASE_FILTER_VALUE = -1e-3  # transformers 4.55 _relative_top_filter


@dataclass(frozen=True)
class DoLaConfig(MethodConfig):
    """DoLa's knobs. Source of each default in brackets.

    layers: "low", "high" or explicit ``hidden_states`` indices (0 = embedding output, j = output of
        decoder layer j-1; indices >= L are dropped, as in 4.55). ["high": transformers' advice for
        short-answer tasks, which VQA is]
    relative_top: plausibility threshold. [0.1: DoLa / transformers 4.55]
    alpha: weight of the premature log-probs; 0 gives plain greedy. [1.0: DoLa; the knob is ours]
    final_norm: apply the final norm to premature layers. [True: seesay's logit lens; 4.55 had it off]
    per_sample: choose the premature layer per sample; False takes the argmax of the batch-mean JS, as
        4.55 did. [True: ours, a batch must not change a sample's answer]
    tied_embeddings: whether "low" starts at 2 (tied) or 0; None reads it as transformers 4.55 did (the
        saved config's ``tie_word_embeddings``, True where the file omits it)
        as 4.55 did. [None: 4.55]
    """

    layers: Literal["low", "high"] | tuple[int, ...] = "high"
    relative_top: float = 0.1
    alpha: float = 1.0
    final_norm: bool = True
    per_sample: bool = True
    tied_embeddings: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, list | tuple):
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
            if not self.layers:
                raise ConfigError("dola layers must not be empty")
        elif self.layers not in ("low", "high"):
            raise ConfigError(f"dola layers must be 'low', 'high' or a list of indices; got {self.layers!r}")
        if not 0 < self.relative_top <= 1:
            raise ConfigError(f"dola relative_top must be in (0, 1]; got {self.relative_top}")
        if self.alpha < 0:
            raise ConfigError(f"dola alpha must be >= 0; got {self.alpha}")

    def candidates(self, num_layers: int, tied: bool) -> list[int]:
        """Candidate ``hidden_states`` indices for a model with ``num_layers`` decoder layers (4.55 rules)."""
        final = num_layers
        if isinstance(self.layers, tuple):
            found = [j for j in self.layers if j < final]
            if not found or any(j < 0 for j in found):
                raise ConfigError(f"dola layers must be hidden_states indices in 0 .. {final - 1}")
            return found
        tied = tied if self.tied_embeddings is None else self.tied_embeddings
        start = 0 if not tied else (2 if final > 2 else (1 if final == 2 else 0))
        if self.layers == "low":
            if start == final // 2:
                return [start]
            return list(range(start, final // 2, 2)) if final <= 40 else list(range(start, 20, 2))
        return list(range(final // 2, final, 2)) if final <= 40 else list(range(final - 20, final, 2))


def _js_to_final(final: torch.Tensor, premature: torch.Tensor) -> torch.Tensor:
    """JS divergence as transformers 4.55 computed it (KL terms averaged over the vocabulary): [C, B]."""
    log_final = final.log_softmax(-1)[None]  # [1, B, V]
    log_prem = premature.log_softmax(-1)  # [C, B, V]
    avg = 0.5 * (log_final.exp() + log_prem.exp())
    kl1 = torch.nn.functional.kl_div(log_final, avg, reduction="none").mean(-1)
    kl2 = torch.nn.functional.kl_div(log_prem, avg, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)


def tied_as_transformers_455(config: Any) -> bool:
    """Whether transformers 4.55's DoLa saw tied embeddings: the top-level config's flag, True where the
    saved config.json omits it (4.55's PretrainedConfig defaulted it to True; 5.x composite configs such
    as LlavaConfig default it to False, so the saved file is read when there is one)."""
    folder = Path(str(getattr(config, "_name_or_path", "") or ""))
    raw_path = folder / "config.json"
    if raw_path.is_file():
        try:
            raw = json.loads(raw_path.read_text())
        except (OSError, json.JSONDecodeError):
            raw = {}
        if isinstance(raw, dict):
            return bool(raw.get("tie_word_embeddings", True))
    return bool(getattr(config, "tie_word_embeddings", True))


class DoLaStep:
    """The per-step hook: premature logits of all candidates in one lm_head call, then the contrast."""

    def __init__(self, config: DoLaConfig, loaded: LoadedModel, trace: bool = False):
        self.config = config
        adapter = loaded.adapter
        self.candidates = config.candidates(adapter.num_layers, tied_as_transformers_455(loaded.model.config))
        self.capture_layers = [j - 1 for j in self.candidates]  # hidden_states[j] = output of layer j-1
        self.lens = LogitLens(adapter, final_norm=config.final_norm)
        self.trace_enabled = trace

    def __call__(self, state: StepState) -> StepResult:
        cfg = self.config
        normed = [self.lens.normalize(state.hidden[layer]) for layer in self.capture_layers]
        final, *prem = state.readout(*normed)
        premature = torch.stack(prem)  # [C, B, V]
        if len(self.candidates) == 1:
            index = torch.zeros(final.shape[0], dtype=torch.long, device=final.device)
        else:
            js = _js_to_final(final, premature)  # [C, B]
            index = js.argmax(0) if cfg.per_sample else js.mean(-1).argmax().expand(final.shape[0])
        base = premature[index, torch.arange(final.shape[0], device=final.device)]  # [B, V]
        final_lp = final.log_softmax(-1)
        keep = plausible_mask(final_lp, cfg.relative_top)
        base_lp = base.log_softmax(-1).masked_fill(~keep, BASE_FILTER_VALUE)
        scores = final_lp.masked_fill(~keep, float("-inf")) - cfg.alpha * base_lp
        trace = None
        if self.trace_enabled:
            trace = [{"step": state.step, "premature_layer": self.candidates[int(i)]} for i in index]
        return StepResult(scores, trace)


@register_method("dola")
class DoLa(Method):
    """DoLa on the seesay engine (see the module docstring)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = DoLaConfig

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        step = DoLaStep(self.config, loaded, trace=self.trace)  # type: ignore[arg-type]
        return EnginePlan(hook=step, hidden_layers=tuple(step.capture_layers))
