"""VAR: visual attention redistribution (Kang, Kim, Kim and Kim, "See What You Are Told: Visual Attention
Sink in Large Multimodal Models", ICLR 2025), as the official code computes it (github.com/seilk/
VisAttnSink, ``src/logic/logic.py``: ``DimProspector``, ``HeadFork``, ``VARProcessor``).

Per decoder layer l in ``start_layer <= l < L - 1`` (the last layer is left alone):

1. **Sink tokens**: positions whose layer input h, RMS-normalised without weight (h / rms(h)), has
   |value| > tau in one of the model's sink dimensions (its massive-activation dimensions).
2. **Image-centric heads**, per (sample, head, query row): the row's image attention S = sum_{image} a,
   the visual sinks' share portion = sum_{visual sinks} a / sum_{image} (a + 1e-6); a head is
   image-centric when portion <= rho and S >= summ (and the layer has a visual sink).
3. **Redistribution** in those rows: every sink's weight (visual and text) is scaled by p, and the
   budget (1 - p) x (their total) goes to the image tokens in proportion to their non-sink attention:

       a'_j = p a_j (j sink);   a'_j = a_j + B a_j / sum_{non-sink image} a (j non-sink image);   a'_j = a_j

The rows: at the prefill, every text row after the image; then each new token's. seesay applies the
result as a pre-softmax score edit on the attention tap, s_j <- log a'_j in the changed rows (a' sums
to 1, so softmax(s') = a'), with sdpa for every row and head not changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.tap import AttentionTap, LayerScores, ScoreChange, keys_from_positions
from ..errors import ConfigError
from .base import EnginePlan, Method, MethodConfig, register_method

# The official sink dimensions (src/logic/constants.py), by the LLM under the LMM.
OFFICIAL_SINK_DIMS = {
    ("llama", 4096): (2533, 1415),  # LLaMA-2 7B: LLaVA-1.5 7B
    ("llama", 5120): (2100, 4743),  # LLaMA-2 13B: LLaVA-1.5 13B, LLaVA-NeXT Vicuna 13B
}


@dataclass(frozen=True)
class VARConfig(MethodConfig):
    """VAR's knobs. Source of each default in brackets.

    p: the share of attention each sink keeps; 1 changes nothing. [0.6: official LogicEngine.activate]
    rho: most share of an image-centric head's image attention its visual sinks may hold. [0.5: official]
    summ: least image attention of an image-centric head. [0.2: official]
    tau: the sink threshold on the RMS-normalised sink dimensions. [20: official]
    start_layer: the first layer redistributed. [2: official sink_select_layers = layers[2:]]
    sink_dims: the model's sink (massive-activation) dimensions; None = the official table for the
        LLaMA-2 7B / 13B language models, else they must be given (``find_sink_dims`` estimates them).
        [official constants.py]
    """

    p: float = 0.6
    rho: float = 0.5
    summ: float = 0.2
    tau: float = 20.0
    start_layer: int = 2
    sink_dims: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ConfigError(f"var p must be in [0, 1]; got {self.p}")
        if not 0 <= self.rho <= 1 or self.summ < 0 or self.tau < 0:
            raise ConfigError("var needs 0 <= rho <= 1, summ >= 0 and tau >= 0")
        if self.start_layer < 0:
            raise ConfigError(f"var start_layer must be >= 0; got {self.start_layer}")
        if self.sink_dims is not None:
            object.__setattr__(self, "sink_dims", tuple(int(d) for d in self.sink_dims))
            if not self.sink_dims:
                raise ConfigError("var sink_dims must not be empty")

    def dims_for(self, loaded: LoadedModel) -> tuple[int, ...]:
        config = loaded.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = int(text.hidden_size)
        dims = self.sink_dims or OFFICIAL_SINK_DIMS.get((text.model_type, hidden))
        if dims is None:
            raise ConfigError(
                f"var needs the sink dimensions of this {text.model_type} language model (hidden size "
                f"{hidden}): pass --set var.sink_dims=[d1,d2] (seesay.methods.var.find_sink_dims "
                "estimates them)"
            )
        if any(not 0 <= d < hidden for d in dims):
            raise ConfigError(f"var sink_dims must be in 0 .. {hidden - 1}")
        return tuple(dims)


def rms_normalised(hidden: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """h / rms(h) over the last axis, in float32 (the official DimProspector.rmsnorm)."""
    h = hidden.float()
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)


def find_sink_dims(hidden: torch.Tensor, count: int = 2) -> tuple[int, ...]:
    """The ``count`` dimensions with the largest median |h / rms(h)| over the tokens of ``hidden``
    [..., T, d] (the calibration the VAR ports to other LLMs use): an estimate, not the paper's list."""
    values = rms_normalised(hidden).abs().reshape(-1, hidden.shape[-1])
    return tuple(int(d) for d in values.median(dim=0).values.topk(count).indices)


class SinkMarks:
    """Per layer, which absolute positions are sink tokens, from forward pre-hooks on the decoder layers
    (each pass appends its new positions: memory O(layers x tokens))."""

    def __init__(self, dims: tuple[int, ...], tau: float):
        self.dims = torch.tensor(dims)
        self.tau = tau
        self.marks: dict[int, torch.Tensor] = {}
        self._dims_on: dict[torch.device, torch.Tensor] = {}  # the dims moved once per device

    def store(self, layer: int, hidden: torch.Tensor) -> None:
        dims = self._dims_on.get(hidden.device)
        if dims is None:
            dims = self._dims_on[hidden.device] = self.dims.to(hidden.device)
        h = hidden.float()
        # |h / rms(h)| on the sink dims only: |h_d| / rms(h) (rms > 0), the same numbers as rms_normalised
        inv_rms = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        new = (h.index_select(-1, dims).abs() * inv_rms).amax(dim=-1) > self.tau  # [B, T_new]
        old = self.marks.get(layer)
        self.marks[layer] = new if old is None else torch.cat([old, new], dim=1)

    @contextlib.contextmanager
    def hooked(self, loaded: LoadedModel, layers: range) -> Iterator[SinkMarks]:
        handles = []
        try:
            for layer in layers:

                def pre_hook(module, args, kwargs, _l=layer):
                    self.store(_l, args[0] if args else kwargs["hidden_states"])

                handles.append(
                    loaded.adapter.layers[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
                )
            yield self
        finally:
            for handle in handles:
                handle.remove()


def redistribute(
    probs: torch.Tensor, image: torch.Tensor, sinks: torch.Tensor, cfg: VARConfig
) -> torch.Tensor:
    """Steps 2-3 on attention rows ``probs`` [B, H, R, K], with ``image`` and ``sinks`` [B, K] bool key
    masks: the redistributed rows (unchanged where a head is not image-centric)."""
    new, centric = _redistributed(probs, image, sinks, cfg)
    return torch.where(centric, new, probs)


def _redistributed(
    probs: torch.Tensor, image: torch.Tensor, sinks: torch.Tensor, cfg: VARConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row redistributed [B, H, R, K], and which rows are image-centric [B, H, R, 1]."""
    visual_sinks = sinks & image
    has_visual_sink = visual_sinks.any(-1)[:, None, None, None]
    image_f, sinks_f, visual_f = (m[:, None, None, :].to(probs.dtype) for m in (image, sinks, visual_sinks))
    image_attn = (probs * image_f).sum(-1, keepdim=True)  # [B, H, R, 1]
    portion = (probs * visual_f).sum(-1, keepdim=True) / ((probs + 1e-6) * image_f).sum(-1, keepdim=True)
    centric = (portion <= cfg.rho) & (image_attn >= cfg.summ) & has_visual_sink
    budget = (1 - cfg.p) * (probs * sinks_f).sum(-1, keepdim=True)
    non_sink_image = probs * (image_f - visual_f)
    ratios = non_sink_image / non_sink_image.sum(-1, keepdim=True).clamp_min(1e-30)
    new = torch.where(sinks[:, None, None, :], probs * cfg.p, probs) + budget * ratios
    return new, centric


class SinkRedistribution:
    """The tap edit: the redistributed rows as a pre-softmax change, s <- log a' in the image-centric
    rows (softmax(log a') = a', as a' sums to 1), s unchanged elsewhere."""

    def __init__(
        self, cfg: VARConfig, marks: SinkMarks, image_positions: torch.Tensor, after_image: torch.Tensor
    ):
        self.cfg = cfg
        self.marks = marks
        self.image_positions = image_positions  # [B, T] bool
        self.after_image = after_image  # [B] first position after each sample's last image token
        self._last_image_end = int(after_image.max()) if after_image.numel() else 0  # once, on the host
        self._image_keys: torch.Tensor | None = None  # image_positions as the latest key mask

    def _image(self, key_offset: int, k: int) -> torch.Tensor:
        """The image key mask [B, K], made once per pass and shared by its layers (K grows each step)."""
        cached = self._image_keys
        if key_offset != 0 or cached is None or cached.shape[1] != k:
            cached = keys_from_positions(self.image_positions, key_offset, k)
            if key_offset == 0:
                self._image_keys = cached
        return cached

    def __call__(self, scores: LayerScores) -> ScoreChange | None:
        marks = self.marks.marks.get(scores.layer)
        if marks is None:
            return None
        k = scores.scores.shape[-1]
        image = self._image(scores.key_offset, k)
        sinks = keys_from_positions(marks, scores.key_offset, k)
        s = scores.scores
        new, centric = _redistributed(torch.softmax(s, dim=-1), image, sinks, self.cfg)
        if scores.query_start < self._last_image_end:  # some rows are not text after the image
            rows = scores.query_positions[None, :] >= self.after_image[:, None]  # [B, R]
            centric = centric & rows[:, None, :, None]
        # softmax(log a') = a' (a' sums to 1): the changed rows' scores become log a', the others stay
        return ScoreChange(bias=torch.where(centric, torch.log(new.clamp_min(1e-38)) - s, 0.0))


@register_method("var")
class VAR(Method):
    """VAR on the seesay engine (see the module docstring)."""

    config_class: ClassVar[type[MethodConfig]] = VARConfig
    reads_image_tokens = True

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        cfg: VARConfig = self.config  # type: ignore[assignment]
        if cfg.p == 1:
            return EnginePlan()
        n = loaded.adapter.num_layers
        layers = range(cfg.start_layer, n - 1)  # the official code leaves the last layer alone
        if not len(layers):
            raise ConfigError(f"var start_layer {cfg.start_layer} leaves no layer of the model's {n}")
        marks = SinkMarks(cfg.dims_for(loaded), cfg.tau)
        image = loaded.adapter.image_mask(batch.inputs["input_ids"])
        positions = torch.arange(image.shape[1], device=image.device)
        after_image = torch.where(image, positions, -1).max(dim=1).values + 1
        edit = SinkRedistribution(cfg, marks, image, after_image)
        # rows before the first sample's first text row after its image never change: left to sdpa
        first_row = int(after_image.min()) if after_image.numel() else 0
        tap = AttentionTap(
            layers=layers, record="none", edits=(edit,), scale_rows="all", scale_from=first_row
        )
        return EnginePlan(tap=tap, contexts=(marks.hooked(loaded, layers),))
