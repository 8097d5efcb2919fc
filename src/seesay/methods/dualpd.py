"""DualPD: attention-guided contrastive layer decoding with head-wise filtering (arXiv 2601.07359).

One forward pass per generated token. At step t, for the query q (the last position):

1b. Intra-layer filtering, inside the pass: in each filtered layer, score head h by
        S_h = || (Q_h K_h^T * scale)[q, keys] ||_2
    and damp the floor(rho * H) lowest-scoring heads by gamma, either on their pre-softmax scores
    (softmax(gamma * s_h)) or on their output row (gamma * o_h).
1a. Inter-layer contrast, from the same pass: per layer the visual attention
        a^(l) = reduce_h softmax(s_h)[q, V]   (V = the sample's image keys; renormalised over V)
    (unfiltered softmax), the shift S(l) = hellinger(a^(l), a^(l-1)), the basic layer
        l_b = argmax_{l in candidates} S(l)   (per sample, per step)
    and next-token scores from z^(L-1) (final logits of the filtered pass) and z^(l_b) (logit lens):
        dola:     log_softmax(z^(L-1)) - log_softmax(z^(l_b))   on {p^(L-1) >= alpha max p^(L-1)}
        logits:   z^(L-1) - z^(l_b)                             on the same plausible set
        literal:  z^(L-1) - z^(l_b)                             everywhere (the paper's formula as written)
        residual: z^(L-1) + beta (z^(L-1) - z^(l_b))
"dola" and "logits" differ by a per-row constant (log Z^(L-1) - log Z^(l_b)) on the same set, so they pick
the same tokens under greedy decoding, temperature, top-k and top-p; only processors that are not
shift-invariant (the repetition penalty) tell them apart.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from ..engine.decoding import StepResult, StepState
from ..engine.lens import LogitLens
from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.tap import AttentionTap, LayerScores, keys_from_positions, positions_from_keys
from ..errors import ConfigError
from .base import EnginePlan, Method, MethodConfig, register_method
from .contrast import SHIFT_METRICS, relative_top_filter

Contrast = Literal["dola", "logits", "literal", "residual", "none"]


@dataclass(frozen=True)
class DualPDConfig(MethodConfig):
    """DualPD's knobs. Source of each default in brackets (METHODS.md section 1 gives the full table).

    Inter-layer contrast (1a):
        contrast: how z^(L-1) and z^(l_b) combine ("none" turns 1a off; "literal" is the paper's
            z_final - z_basic with no plausibility mask). ["dola": our choice, the paper builds on DoLa's
            contrast and leaves the exact form open]
        alpha: plausibility threshold of "dola" / "logits" (p >= alpha * max p). [0.1: DoLa's relative_top]
        beta: strength of "residual". [1.0: our choice, the plain difference]
        head_reduction: heads -> one visual attention row, "mean" or "max". [mean: paper's description]
        renormalize: renormalise the row over the image keys. [True: paper, a distribution over V]
        shift_metric: "hellinger", "js" or "kl" (an ablation knob). [hellinger: paper]
        candidate_layers: layers l_b may take; None = 1 .. L-2. [paper's search range, as read in METHODS.md]
        pair_side: of the pair (l-1, l) with the largest shift, take the "later" l or the "earlier" l-1.
            [later: our choice, the layer after the shift has already moved its attention]
        static_layer: a fixed l_b instead of the dynamic choice (ablation). [None: paper, dynamic]
        final_norm: apply the final norm before lm_head on the basic layer (logit lens). [True: our choice]
    Intra-layer head filtering (1b):
        rho: fraction of heads suppressed per layer, rounded down (0 turns 1b off). [0.15: paper]
        min_heads: at least this many heads are suppressed when rho > 0 (floor(rho * H) is 0 for
            H < 7 at rho = 0.15, which a one-time warning points out). [0: the paper's rounding]
        gamma: decay factor (1 turns 1b off). [0.9: paper]
        decay_target: "scores" (pre-softmax logits of the row) or "output" (the head's output row).
            [scores: as the method is described]
        filter_layers: layers whose heads are filtered; None = all. [all: paper]
        filter_rows: the query rows filtered: "last" (the row whose logits are read, at prefill and at
            every decode step) or "prompt" (at prefill every prompt row, each with its own weakest heads:
            the whole-pass reading; then each new row). ["last": ours, the paper speaks of the current
            token's attention]
        score_keys: head score over "all" allowed keys or "image" keys only. [all: paper]
    """

    contrast: Contrast = "dola"
    alpha: float = 0.1
    beta: float = 1.0
    head_reduction: Literal["mean", "max"] = "mean"
    renormalize: bool = True
    shift_metric: Literal["hellinger", "js", "kl"] = "hellinger"
    candidate_layers: tuple[int, ...] | None = None
    pair_side: Literal["later", "earlier"] = "later"
    static_layer: int | None = None
    final_norm: bool = True
    rho: float = 0.15
    min_heads: int = 0
    gamma: float = 0.9
    decay_target: Literal["scores", "output"] = "scores"
    filter_layers: tuple[int, ...] | None = None
    score_keys: Literal["all", "image"] = "all"
    filter_rows: Literal["last", "prompt"] = "last"

    def __post_init__(self) -> None:
        choices = {
            "contrast": ("dola", "logits", "literal", "residual", "none"),
            "head_reduction": ("mean", "max"),
            "shift_metric": ("hellinger", "js", "kl"),
            "pair_side": ("later", "earlier"),
            "decay_target": ("scores", "output"),
            "score_keys": ("all", "image"),
            "filter_rows": ("last", "prompt"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"dualpd {name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
                )
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"dualpd alpha must be in (0, 1]; got {self.alpha}")
        if not 0 <= self.rho < 1:
            raise ConfigError(f"dualpd rho must be in [0, 1); got {self.rho}")
        if self.min_heads < 0:
            raise ConfigError(f"dualpd min_heads must be >= 0; got {self.min_heads}")
        if self.gamma < 0:
            raise ConfigError(f"dualpd gamma must be >= 0; got {self.gamma}")
        for name in ("candidate_layers", "filter_layers"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))

    @property
    def filtering(self) -> bool:
        return self.rho > 0 and self.gamma != 1.0

    def resolved(self, num_layers: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(candidate layers, filter layers) for a model with ``num_layers`` layers, validated."""
        last = num_layers - 1
        if self.static_layer is not None:
            if not 0 <= self.static_layer < last:
                raise ConfigError(f"dualpd static_layer must be in 0 .. {last - 1}; got {self.static_layer}")
            candidates: tuple[int, ...] = (self.static_layer,)
        elif self.candidate_layers is not None:
            candidates = tuple(sorted(set(self.candidate_layers)))
        else:
            candidates = tuple(range(1, last))
        low = 1 if self.pair_side == "later" else 0
        high = last - 1  # l_b is never the final layer itself
        bad = [c for c in candidates if not low <= c <= high]
        if self.static_layer is None and self.candidate_layers is None and not candidates:
            raise ConfigError(
                f"dualpd has no candidate layer on a {num_layers}-layer model (the candidates lie strictly "
                f"between the first and the final layer); use a deeper model or static_layer"
            )
        if self.static_layer is None and (bad or not candidates):
            raise ConfigError(
                f"dualpd candidate_layers must lie in {low} .. {high} for a {num_layers}-layer model "
                f"with pair_side={self.pair_side!r}; got {list(candidates)}"
            )
        filters = (
            tuple(range(num_layers)) if self.filter_layers is None else tuple(sorted(set(self.filter_layers)))
        )
        if any(not 0 <= f < num_layers for f in filters):
            raise ConfigError(f"dualpd filter_layers must lie in 0 .. {last}; got {list(filters)}")
        return candidates, filters


class DualPDStep:
    """The per-step logic: the tap's head scaler (1b) and the decode hook (1a)."""

    def __init__(
        self, config: DualPDConfig, loaded: LoadedModel, image_keys: torch.Tensor, trace: bool = False
    ):
        self.config = config
        self.adapter = loaded.adapter
        n = self.adapter.num_layers
        self.candidates, filters = config.resolved(n)
        self.filter_layers = frozenset(filters) if config.filtering else frozenset()
        heads = self.adapter.num_heads
        if self.filter_layers and int(config.rho * heads) == 0 and config.min_heads == 0:
            warnings.warn(
                f"dualpd: floor(rho * heads) = floor({config.rho} * {heads}) = 0, so the head filter "
                "suppresses no head on this model; set min_heads=1 (or a larger rho) to filter",
                UserWarning,
                stacklevel=2,
            )
        self.image_keys = image_keys  # [B, T_prompt] bool
        self._image_weight = image_keys[:, None, :].float()
        self.lens = LogitLens(self.adapter, final_norm=config.final_norm)
        self.trace_enabled = trace
        self._suppressed: dict[int, torch.Tensor] = {}
        self._ones: torch.Tensor | None = None  # [B, H] ones, made once per batch
        # Candidate c is scored by the shift of the pair (c-1, c) ("later") or (c, c+1) ("earlier").
        self.pairs: tuple[tuple[int, int], ...] = ()
        if config.contrast != "none" and config.static_layer is None:
            later = config.pair_side == "later"
            self.pairs = tuple((c - 1, c) if later else (c, c + 1) for c in self.candidates)
        self.shift_layers: tuple[int, ...] = tuple(sorted({x for pair in self.pairs for x in pair}))
        self._lo = [self.shift_layers.index(a) for a, _ in self.pairs]
        self._hi = [self.shift_layers.index(b) for _, b in self.pairs]
        device = self.adapter.lm_head.weight.device
        self._candidates = torch.tensor(self.candidates, device=device)  # built once, indexed every step

    # ---- 1b: called by the tap inside every filtered layer ---------------------------------------------
    def head_scale(self, scores: LayerScores) -> torch.Tensor | None:
        """gamma for the floor(rho * H) heads with the smallest score norm in this layer, 1 elsewhere."""
        if scores.layer not in self.filter_layers:
            return None
        h = scores.scores.shape[1]
        k = min(h, max(int(self.config.rho * h), self.config.min_heads))
        if k == 0:
            return None
        key_mask = None
        if self.config.score_keys == "image":
            key_mask = keys_from_positions(self.image_keys, scores.key_offset, scores.scores.shape[-1])
        norms = scores.norms(key_mask)  # [B, H, R]
        if norms.shape[-1] > 1:  # filter_rows="prompt": each earlier prompt row its own heads, [B, H, R]
            lowest_rows = norms.topk(k, dim=1, largest=False).indices  # [B, k, R]
            return torch.ones_like(norms).scatter_(1, lowest_rows, self.config.gamma)
        last = norms[:, :, -1]  # [B, H]
        # [B, k]; one head (the usual case: floor(0.15 H) = 1 for H < 14) is an argmin, cheaper than topk
        lowest = last.argmin(-1, keepdim=True) if k == 1 else last.topk(k, dim=-1, largest=False).indices
        if self.trace_enabled:
            self._suppressed[scores.layer] = lowest
        ones = self._ones
        if ones is None or ones.shape != last.shape or ones.device != last.device:
            ones = self._ones = torch.ones_like(last)
        return ones.scatter(1, lowest, self.config.gamma)  # out of place: the cached ones stay ones

    # ---- 1a: called by the decode loop after each pass ------------------------------------------------
    def visual_attention(self, state: StepState) -> torch.Tensor:
        """a^(l) over the prompt positions for the shift layers: [B, n_shift_layers, T_prompt]."""
        t_prompt = self.image_keys.shape[1]
        rows = []
        for layer in self.shift_layers:
            rec = state.tap.records[layer]
            probs = rec.probs[:, :, -1, :]  # [B, H|1, K]
            if probs.shape[1] == 1:  # recorded already reduced (mean over heads)
                row = probs[:, 0]
            else:
                row = probs.mean(1) if self.config.head_reduction == "mean" else probs.amax(1)
            row = positions_from_keys(row, rec.key_offset, t_prompt)
            rows.append(row)
        dist = torch.stack(rows, dim=1) * self._image_weight
        if self.config.renormalize:
            dist = dist / dist.sum(-1, keepdim=True).clamp_min(1e-12)
        return dist

    def basic_layers(self, state: StepState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample l_b [B] and the shift S of each candidate's pair [B, C] (None for a static layer)."""
        index, shift = self._choice(state)
        return self._candidates[index], shift

    def _choice(self, state: StepState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per sample the index of l_b among the candidates [B], and the shifts [B, C] (None: static)."""
        if self.config.static_layer is not None:
            b = state.final_hidden.shape[0]
            return torch.zeros(b, dtype=torch.long, device=self._candidates.device), None
        dist = self.visual_attention(state)
        shift = SHIFT_METRICS[self.config.shift_metric](dist[:, self._hi], dist[:, self._lo])  # [B, C]
        return shift.argmax(-1).to(self._candidates.device), shift

    def __call__(self, state: StepState) -> StepResult:
        index, shift = None, None
        if self.config.contrast == "none":
            scores = state.logits
        else:
            index, shift = self._choice(state)
            if len(self.candidates) == 1:  # a static layer or one candidate: its hidden state as it is
                h_b = state.hidden[self.candidates[0]]
            else:
                hidden = torch.stack([state.hidden[c] for c in self.candidates], dim=1)  # [B, C, d]
                h_b = hidden[torch.arange(hidden.shape[0], device=hidden.device), index.to(hidden.device)]
            final, early = state.readout(self.lens.normalize(h_b))  # one lm_head call for both
            scores = self.combine(final, early)
        trace = None
        if self.trace_enabled:
            trace = self._trace(state, None if index is None else self._candidates[index], shift)
        self._suppressed = {}
        return StepResult(scores, trace)

    def combine(self, final: torch.Tensor, early: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.contrast == "residual":
            return final + cfg.beta * (final - early)
        if cfg.contrast == "literal":
            return final - early
        final_lp = final.log_softmax(-1)
        diff = final_lp - early.log_softmax(-1) if cfg.contrast == "dola" else final - early
        return relative_top_filter(diff, final_lp, cfg.alpha)

    def _trace(self, state: StepState, basic, shift) -> list[dict[str, Any]]:
        b = state.logits.shape[0]
        pairs = [f"{a}->{c}" for a, c in self.pairs]
        out = []
        for i in range(b):
            item: dict[str, Any] = {"step": state.step}
            if shift is not None:
                item["shift"] = dict(zip(pairs, [round(float(v), 6) for v in shift[i]], strict=True))
            if basic is not None:
                item["basic_layer"] = int(basic[i])
            if self._suppressed:
                item["suppressed_heads"] = {
                    int(layer): idx[i].tolist() for layer, idx in self._suppressed.items()
                }
            out.append(item)
        return out


@register_method("dualpd")
class DualPD(Method):
    """DualPD on the seesay engine (see the module docstring for the math)."""

    writes_trace: ClassVar[bool] = True
    config_class: ClassVar[type[MethodConfig]] = DualPDConfig
    reads_image_tokens = True

    def step_for(self, loaded: LoadedModel, batch: PreparedBatch) -> DualPDStep:
        image_keys = loaded.adapter.image_mask(batch.inputs["input_ids"])
        return DualPDStep(self.config, loaded, image_keys, trace=self.trace)

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        cfg: DualPDConfig = self.config  # type: ignore[assignment]
        step = self.step_for(loaded, batch)
        needs_tap = bool(step.shift_layers) or cfg.filtering
        if not needs_tap and cfg.contrast == "none":
            return EnginePlan()  # nothing to read or change: plain decoding
        tap = None
        if needs_tap:
            tap = AttentionTap(
                layers=sorted(set(step.shift_layers) | step.filter_layers),
                record="none"
                if not step.shift_layers
                else ("mean" if cfg.head_reduction == "mean" else "heads"),
                head_scale=step.head_scale if cfg.filtering else None,
                target=cfg.decay_target,
                scale_rows="all" if cfg.filter_rows == "prompt" else "last",
            )
        hidden = tuple(step.candidates) if cfg.contrast != "none" else ()
        return EnginePlan(hook=step, tap=tap, hidden_layers=hidden)
