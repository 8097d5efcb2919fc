"""The attention tap: read and change attention rows of chosen query positions on top of sdpa.

A custom attention function is registered under the name ``"seesay_tap"`` with transformers'
``AttentionInterface`` and, crucially, with ``AttentionMaskInterface`` (otherwise the function would
receive ``attention_mask=None``: no causal and no padding mask). :func:`attention_tap` switches only the
language model to it and restores the previous implementation on exit.

Inside the function every query row is computed by ``sdpa_attention_forward``, unchanged. For the rows
the tap asks for (by default the last position of each sample, which is the row whose next-token logits
are read, at prefill and at every cached decode step) the scores are additionally computed explicitly:

    s_h = (q_h K_h^T) * scale + mask          (pre-softmax, GQA: K_h = K_{h // groups})
    p_h = softmax(s_h)                         (post-softmax attention row over the keys)

which costs O(heads x keys) per layer and row, never O(tokens^2). From these the tap can

* record ``p`` per head or reduced over heads (``record="heads" | "mean"``),
* record each head's score norm ``||s_h||_2`` over the allowed keys (or over a key subset),
* rescale chosen heads of chosen samples: ``target="scores"`` recomputes the row as
  ``softmax(gamma_h * s_h) V_h``; ``target="output"`` multiplies the head's output row by ``gamma_h``.
  Heads with ``gamma_h == 1`` keep the sdpa output bit for bit.

* edit the tapped rows' pre-softmax scores with ``edits``, in order (like accelerate's ``SequentialHook``):
  each edit sees the scores as the edits before it left them and returns a :class:`ScoreChange`,
  ``s <- scale_h * s`` (per head) then ``s <- s + bias`` (key-wise, e.g. on the image keys: PAI, VAR);
  the edited rows' output is ``softmax(s') V``, heads and rows that no edit changed keep the sdpa output
  bit for bit.

Recorded rows are the unmodified softmax of the pass. Key index ``j`` of a record corresponds to the
absolute (padded) sequence position ``key_offset + j`` (non-zero only in sliding-window caches).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import ConfigError

TAP_ATTENTION = "seesay_tap"

RowSelection = Literal["last", "all"]
RecordMode = Literal["heads", "mean", "none"]
ScaleTarget = Literal["scores", "output"]


@dataclass
class LayerScores:
    """Explicit pre-softmax scores of the tapped rows of one layer, handed to a head scaler.

    ``scores``: [B, H, R, K] float32, masked keys set to the dtype minimum; ``allowed``: [B, 1|H, R, K]
    bool, or None when every key is allowed (the usual case at a cached decode step without padding).
    ``query_start``: the absolute (padded) position of the first of the R rows (the rows are consecutive).
    """

    layer: int
    scores: torch.Tensor
    allowed: torch.Tensor | None
    key_offset: int
    query_start: int = 0

    @property
    def query_positions(self) -> torch.Tensor:
        """[R] absolute positions of the rows."""
        return torch.arange(self.scores.shape[2], device=self.scores.device) + self.query_start

    def norms(self, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-head L2 norm of the allowed scores, [B, H, R]; ``key_mask`` [B, K] restricts the keys."""
        keep = self.allowed
        if key_mask is not None:
            subset = key_mask[:, None, None, :]
            keep = subset if keep is None else keep & subset
        if keep is None:
            return torch.linalg.vector_norm(self.scores, dim=-1)
        return torch.linalg.vector_norm(torch.where(keep, self.scores, 0.0), dim=-1)


@dataclass
class TapRecord:
    """What one layer recorded in one forward pass.

    ``probs``: [B, H, R, K] (record="heads") or [B, 1, R, K] (record="mean"), float32, or None;
    ``score_norms``: [B, H, R] or None; ``key_offset``: absolute position of key 0;
    ``head_scale``: the [B, H] multipliers applied in this pass, or None.
    """

    probs: torch.Tensor | None
    score_norms: torch.Tensor | None
    key_offset: int
    head_scale: torch.Tensor | None = None


HeadScaler = Callable[[LayerScores], torch.Tensor | None]


@dataclass
class ScoreChange:
    """One edit's change of a layer's tapped pre-softmax scores ``s`` [B, H, R, K] (float32):
    ``s <- scale * s`` with ``scale`` [H], [B, H] or [B, H, R] (per head), then ``s <- s + bias`` with
    ``bias`` broadcastable to [B, H, R, K] (per key). Masked keys stay masked."""

    scale: torch.Tensor | None = None
    bias: torch.Tensor | None = None


ScoreEdit = Callable[[LayerScores], ScoreChange | None]


@dataclass
class AttentionTap:
    """What to read and change in the language model's attention.

    Args:
        layers: decoder layers to tap (None: all).
        rows: ``"last"`` (the row whose logits are read) or ``"all"`` (every row; O(tokens^2), for tests).
        record: keep post-softmax rows per head (``"heads"``), averaged over heads (``"mean"``) or not.
        record_score_norms: keep ``||s_h||_2`` per head.
        score_norm_keys: optional [B, T] bool mask over absolute key positions for the norms
            (e.g. image keys).
        head_scale: per-layer [B, H] (or [H]) multipliers, or a callable ``LayerScores -> [B, H] | None``
            deciding in the same pass (e.g. from the layer's own scores).
        target: what a multiplier scales: the head's pre-softmax ``"scores"`` or its ``"output"`` row.
        scale_rows: at a pass with several query rows (the prefill), scale and edit the ``"last"`` row
            only, or ``"all"`` rows, each row with the multipliers the callable ``head_scale`` returns for
            it and the ``edits`` (scores of ``scale_chunk`` rows at a time: memory O(heads x chunk x keys),
            never O(T^2)); records stay the last row's.
        scale_chunk: rows per chunk for ``scale_rows="all"``.
        scale_from: with ``scale_rows="all"``, the first absolute position whose row is scaled and
            edited (the last row is always tapped); earlier rows keep sdpa's output without explicit
            scores (an edit that only changes later rows, e.g. VAR's text rows after the image, then
            costs O(heads x later rows x keys) at the prefill, not O(heads x T x keys)).
        edits: score edits of the tapped rows, applied in order after ``head_scale`` (target
            ``"scores"``); each gets the layer's :class:`LayerScores` as the edits before it left them and
            returns a :class:`ScoreChange` or None (no change in this layer).
        keep_history: append each pass's records to :attr:`history` instead of only keeping the latest.
        exact: run sdpa for a decode step's single row too, and keep its output bit for bit wherever no
            edit or head scale changes it; False computes that row's output from the explicit
            probabilities (float32 softmax, p V), so attention is not computed twice. None (default):
            exact in bfloat16 / float16, where p V rounds differently from sdpa and can flip a greedy
            token; explicit in float32, where the two agree to ~1e-6 (greedy tokens identical on all
            six families, tested) and the second attention would cost 10-20% per token on CPU.

    ``seq_len`` (set by the decode loop before each pass) is the padded sequence length so far; it maps
    key indices of sliding-window caches, which hold fewer keys than positions, to absolute positions.
    """

    layers: Iterable[int] | None = None
    rows: RowSelection = "last"
    record: RecordMode = "heads"
    record_score_norms: bool = False
    score_norm_keys: torch.Tensor | None = None
    head_scale: Mapping[int, torch.Tensor] | HeadScaler | None = None
    target: ScaleTarget = "scores"
    scale_rows: Literal["last", "all"] = "last"
    scale_chunk: int = 64
    scale_from: int = 0
    edits: tuple[ScoreEdit, ...] = ()
    keep_history: bool = False
    exact: bool | None = None
    records: dict[int, TapRecord] = field(default_factory=dict, init=False)
    history: list[dict[int, TapRecord]] = field(default_factory=list, init=False)
    seq_len: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rows not in ("last", "all"):
            raise ConfigError(f"AttentionTap.rows must be 'last' or 'all', got {self.rows!r}")
        if self.record not in ("heads", "mean", "none"):
            raise ConfigError(f"AttentionTap.record must be 'heads', 'mean' or 'none', got {self.record!r}")
        if self.target not in ("scores", "output"):
            raise ConfigError(f"AttentionTap.target must be 'scores' or 'output', got {self.target!r}")
        if self.scale_rows not in ("last", "all"):
            raise ConfigError(f"AttentionTap.scale_rows must be 'last' or 'all', got {self.scale_rows!r}")
        if self.scale_chunk < 1:
            raise ConfigError(f"AttentionTap.scale_chunk must be >= 1, got {self.scale_chunk}")
        if self.scale_from < 0:
            raise ConfigError(f"AttentionTap.scale_from must be >= 0, got {self.scale_from}")
        self.edits = tuple(self.edits)
        if not all(callable(e) for e in self.edits):
            raise ConfigError("AttentionTap.edits must be callables LayerScores -> ScoreChange | None")
        self._layer_set = None if self.layers is None else frozenset(int(i) for i in self.layers)

    def wants(self, layer: int) -> bool:
        return self._layer_set is None or layer in self._layer_set

    def new_pass(self) -> None:
        """Start a new forward pass: move the latest records to history (if kept) and clear them."""
        if self.keep_history and self.records:
            self.history.append(self.records)
        self.records = {}

    def _scale_for(self, layer_scores: LayerScores) -> torch.Tensor | None:
        if self.head_scale is None:
            return None
        if callable(self.head_scale):
            return self.head_scale(layer_scores)
        return self.head_scale.get(layer_scores.layer)


_SDPA: Callable | None = None


def _sdpa(*args, **kwargs):
    """transformers' sdpa attention (imported once, on first use: `import seesay` does not pay for it)."""
    global _SDPA
    if _SDPA is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        _SDPA = sdpa_attention_forward
    return _SDPA(*args, **kwargs)


_ACTIVE_TAP: contextvars.ContextVar[AttentionTap | None] = contextvars.ContextVar("seesay_tap", default=None)


def keys_from_positions(mask: torch.Tensor, key_offset: int, k_len: int) -> torch.Tensor:
    """An absolute-position mask [B, T] as a layer's key mask [B, K]; positions beyond T are False.

    Key j of a layer is absolute position ``key_offset + j`` (see :class:`TapRecord`).
    """
    sub = mask[:, key_offset : key_offset + k_len]
    if sub.shape[1] < k_len:  # keys generated after the mask was made
        sub = torch.nn.functional.pad(sub, (0, k_len - sub.shape[1]), value=False)
    return sub


def positions_from_keys(row: torch.Tensor, key_offset: int, length: int) -> torch.Tensor:
    """A layer's key row [B, K] placed on absolute positions [B, length] (zeros where the layer sees none)."""
    if key_offset == 0 and row.shape[1] >= length:
        return row[:, :length]
    out = row.new_zeros(row.shape[0], length)
    n = max(0, min(row.shape[1], length - key_offset))
    out[:, key_offset : key_offset + n] = row[:, :n]
    return out


def _allowed_keys(
    attention_mask: torch.Tensor | None,
    q_len: int,
    k_len: int,
    rows: slice,
    is_causal: bool,
    device: torch.device,
) -> torch.Tensor | None:
    """Bool [B|1, 1|H, R, K] of the keys each tapped row may attend to (sdpa's conventions); None: all."""
    if attention_mask is None:
        if not is_causal or q_len == 1:
            return None
        # sdpa with mask None and q_len > 1 is causal aligned top-left (and crops keys beyond q_len).
        row_idx = torch.arange(q_len, device=device)[rows]
        return (torch.arange(k_len, device=device)[None, :] <= row_idx[:, None])[None, None]
    mask = attention_mask[:, :, rows, :k_len]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def _grouped_scores(query_rows: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(q K^T) for [B, H, R, D] queries against [B, H_kv, K, D] keys without repeating the keys."""
    b, h, r, d = query_rows.shape
    h_kv = key.shape[1]
    if h_kv == h:
        return query_rows @ key.transpose(-1, -2)
    q = query_rows.reshape(b, h_kv, (h // h_kv) * r, d)
    return (q @ key.transpose(-1, -2)).reshape(b, h, r, key.shape[2])


def _grouped_values(probs: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """probs [B, H, R, K] @ value [B, H_kv, K, D] -> [B, H, R, D] without repeating the values."""
    b, h, r, k = probs.shape
    h_kv = value.shape[1]
    if h_kv == h:
        return probs @ value
    out = probs.reshape(b, h_kv, (h // h_kv) * r, k) @ value
    return out.reshape(b, h, r, value.shape[-1])


def _tap_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention function registered as ``seesay_tap``: sdpa for everything, explicit math for tapped rows."""
    tap = _ACTIVE_TAP.get()
    layer = getattr(module, "layer_idx", None)
    if tap is None or layer is None or not tap.wants(layer):
        return _sdpa(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    out = None
    exact = tap.exact if tap.exact is not None else query.dtype != torch.float32
    if query.shape[2] != 1 or exact:
        out, _ = _sdpa(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    q_len, k_len = query.shape[2], key.shape[2]
    rows = slice(None) if tap.rows == "all" else slice(q_len - 1, q_len)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    is_causal = kwargs.get("is_causal")
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)

    scores, allowed = _explicit_scores(query, key, rows, scale, attention_mask, is_causal)
    key_offset = max(0, (tap.seq_len or k_len) - k_len)
    first_row = key_offset + k_len - q_len + (0 if tap.rows == "all" else q_len - 1)
    layer_scores = LayerScores(layer, scores, allowed, key_offset, first_row)

    norms = None
    if tap.record_score_norms:
        key_mask = None
        if tap.score_norm_keys is not None:
            key_mask = keys_from_positions(tap.score_norm_keys.to(query.device), key_offset, k_len)
        norms = layer_scores.norms(key_mask)

    gamma, edited = _changes(tap, layer_scores, query)
    scale_scores = gamma is not None and tap.target == "scores"
    p = None
    if tap.record != "none" or (out is None and not scale_scores and edited is None):
        p = torch.softmax(scores, dim=-1)  # the unmodified row: what is recorded
    if out is None:
        # A decode step's only row: its output straight from the explicit row (sdpa is not run twice),
        # with the heads' decay folded in.
        if edited is not None:
            out = _rows_output(torch.softmax(edited, dim=-1), value)
        elif scale_scores:
            out = _rows_output(_scaled_probs(scores, allowed, gamma), value)
        else:
            out = _rows_output(p, value)
        if gamma is not None and not scale_scores:
            out = out * gamma[:, None, :, None].to(out.dtype)
    else:
        out = _change_rows(out, scores, allowed, gamma, edited, rows, value, tap.target)
    if (
        tap.scale_rows == "all"
        and tap.rows == "last"
        and q_len > 1
        and (callable(tap.head_scale) or tap.edits)
    ):
        out = _scale_earlier_rows(
            tap, layer, out, query, key, value, attention_mask, scale, is_causal, key_offset
        )
    probs = None
    if p is not None and tap.record != "none":
        probs = p if tap.record == "heads" else p.mean(dim=1, keepdim=True)
    tap.records[layer] = TapRecord(probs=probs, score_norms=norms, key_offset=key_offset, head_scale=gamma)
    return out, None


def _explicit_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    rows: slice,
    scale: float,
    attention_mask: torch.Tensor | None,
    is_causal: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pre-softmax scores [B, H, R, K] of ``rows`` (masked keys at the dtype minimum) and the allowed keys.

    As eager attention: q K^T in the model's dtype, everything after it in float32.
    """
    rows_of_query = query if query.shape[2] == 1 else query[:, :, rows]  # a decode step: its only row
    scores = _grouped_scores(rows_of_query, key)
    scores = (scores if scores.dtype == torch.float32 else scores.float()).mul_(scale)
    allowed = _allowed_keys(attention_mask, query.shape[2], key.shape[2], rows, is_causal, query.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return scores, allowed


def _edited_scores(
    tap: AttentionTap, base: LayerScores, gamma: torch.Tensor | None, query: torch.Tensor
) -> torch.Tensor | None:
    """The tapped rows' scores after ``gamma`` (head_scale on scores) and every edit in order; None when
    nothing changed them."""
    current = base.scores
    changed = False
    if gamma is not None:
        current = current * _per_row(gamma)
        changed = True
    floor = torch.finfo(current.dtype).min
    for edit in tap.edits:
        change = edit(LayerScores(base.layer, current, base.allowed, base.key_offset, base.query_start))
        if change is None:
            continue
        if change.scale is not None:
            current = current * _per_row(_multipliers(change.scale, query))
        if change.bias is not None:
            bias = change.bias
            if bias.dtype != current.dtype or bias.device != current.device:
                bias = bias.to(device=current.device, dtype=current.dtype)
            current = current + bias
        changed = True
    if not changed:
        return None
    if base.allowed is not None:
        current = current.masked_fill(~base.allowed, floor)
    return current


def _apply_edited(
    out: torch.Tensor, scores: torch.Tensor, edited: torch.Tensor, rows: slice, value: torch.Tensor
) -> torch.Tensor:
    """Replace the tapped rows of the sdpa output ``out`` [B, q, H, D] by ``softmax(edited) V`` where an
    edit changed a head's row; elsewhere the sdpa output is kept bit for bit (no host sync)."""
    old = out[:, rows].transpose(1, 2).float()  # [B, H, R, D]
    new = _grouped_values(torch.softmax(edited, dim=-1).to(value.dtype), value).float()
    touched = (edited != scores).any(dim=-1, keepdim=True)  # [B, H, R, 1]
    out = out.clone()
    out[:, rows] = torch.where(touched, new, old).to(out.dtype).transpose(1, 2)
    return out


def _multipliers(gamma: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    """A head scaler's answer as float32 on the query's device, [H] broadcast to [B, H]."""
    if gamma is None:
        return None
    if gamma.dtype != torch.float32 or gamma.device != query.device:
        gamma = gamma.to(device=query.device, dtype=torch.float32)
    return gamma.expand(query.shape[0], -1) if gamma.dim() == 1 else gamma


def _per_row(gamma: torch.Tensor) -> torch.Tensor:
    """Multipliers [B, H] (every row alike) or [B, H, R] (per row) as [B, H, 1|R, 1]."""
    return gamma[:, :, None, None] if gamma.dim() == 2 else gamma[..., None]


def _scale_earlier_rows(
    tap: AttentionTap,
    layer: int,
    out: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scale: float,
    is_causal: bool,
    key_offset: int,
) -> torch.Tensor:
    """``scale_rows="all"``: every row before the last (the last is done by the caller) from absolute
    position ``tap.scale_from`` on gets its own multipliers from ``tap.head_scale`` and its own score
    edits, ``tap.scale_chunk`` rows at a time (memory O(heads x chunk x keys))."""
    q_len, k_len = query.shape[2], key.shape[2]
    first = max(0, tap.scale_from - (key_offset + k_len - q_len))  # row index of position scale_from
    for start in range(first, q_len - 1, tap.scale_chunk):
        rows = slice(start, min(start + tap.scale_chunk, q_len - 1))
        scores, allowed = _explicit_scores(query, key, rows, scale, attention_mask, is_causal)
        chunk = LayerScores(layer, scores, allowed, key_offset, key_offset + k_len - q_len + start)
        gamma, edited = _changes(tap, chunk, query, per_row_scales=callable(tap.head_scale))
        out = _change_rows(out, scores, allowed, gamma, edited, rows, value, tap.target)
    return out


def _changes(
    tap: AttentionTap, scores: LayerScores, query: torch.Tensor, per_row_scales: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A layer's head multipliers (None: no head scale; ``per_row_scales=False``: not asked for these
    rows) and its edited scores (None: no edit changed them), gamma folded in for ``target="scores"``."""
    gamma = _multipliers(tap._scale_for(scores), query) if per_row_scales else None
    on_scores = gamma if gamma is not None and tap.target == "scores" else None
    edited = _edited_scores(tap, scores, on_scores, query) if tap.edits else None
    return gamma, edited


def _change_rows(
    out: torch.Tensor,
    scores: torch.Tensor,
    allowed: torch.Tensor | None,
    gamma: torch.Tensor | None,
    edited: torch.Tensor | None,
    rows: slice,
    value: torch.Tensor,
    target: ScaleTarget,
) -> torch.Tensor:
    """``rows`` of the sdpa output ``out`` after the edits and head scales; rows and heads nothing changed
    keep sdpa's output bit for bit."""
    if edited is not None:
        out = _apply_edited(out, scores, edited, rows, value)
        if gamma is not None and target == "output":
            out = _apply_head_scale(out, scores, allowed, gamma, rows, value, "output")
    elif gamma is not None:
        out = _apply_head_scale(out, scores, allowed, gamma, rows, value, target)
    return out


def _rows_output(probs: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Attention output [B, R, H, D] (sdpa's layout) of probability rows [B, H, R, K]."""
    probs = probs if probs.dtype == value.dtype else probs.to(value.dtype)
    return _grouped_values(probs, value).transpose(1, 2)


def _scaled_probs(scores: torch.Tensor, allowed: torch.Tensor | None, gamma: torch.Tensor) -> torch.Tensor:
    """softmax(gamma_h * s_h) per head, masked keys kept out."""
    scaled = scores * _per_row(gamma)
    if allowed is not None:
        scaled = scaled.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scaled, dim=-1)


def _apply_head_scale(
    out: torch.Tensor,
    scores: torch.Tensor,
    allowed: torch.Tensor | None,
    gamma: torch.Tensor,
    rows: slice,
    value: torch.Tensor,
    target: ScaleTarget,
) -> torch.Tensor:
    """Replace the tapped rows of heads with gamma != 1 in the sdpa output ``out`` [B, q, H, D].

    No host sync: heads with gamma == 1 are selected back from the sdpa output with ``torch.where``.
    """
    old = out[:, rows].transpose(1, 2).float()  # [B, H, R, D]
    g = _per_row(gamma)
    if target == "output":
        new = old * g
    else:
        new = _grouped_values(_scaled_probs(scores, allowed, gamma).to(value.dtype), value).float()
    mixed = torch.where(g != 1.0, new, old).to(out.dtype)
    out = out.clone()
    out[:, rows] = mixed.transpose(1, 2)
    return out


_REGISTERED = False


def register_tap_attention() -> str:
    """Register the tap with transformers' attention and mask interfaces (idempotent); returns its name."""
    global _REGISTERED
    if not _REGISTERED:  # transformers' attention code is imported here, not when seesay is
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(TAP_ATTENTION, _tap_attention)
        AttentionMaskInterface.register(TAP_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        _REGISTERED = True
    return TAP_ATTENTION


def _text_config(model: torch.nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


@contextlib.contextmanager
def attention_tap(model: torch.nn.Module, tap: AttentionTap | None = None) -> Iterator[AttentionTap]:
    """Install ``tap`` on the language model of ``model`` for the duration of the block.

    Only the text model is switched (``set_attn_implementation({"text_config": "seesay_tap"})``); the
    vision tower keeps its implementation. On exit the previous implementation is restored, also on error.
    """
    tap = tap if tap is not None else AttentionTap()
    register_tap_attention()
    text_config = _text_config(model)
    previous = text_config._attn_implementation or "sdpa"
    if text_config is model.config:
        model.set_attn_implementation(TAP_ATTENTION)
    else:
        model.set_attn_implementation({"text_config": TAP_ATTENTION})
    token = _ACTIVE_TAP.set(tap)
    try:
        yield tap
    finally:
        _ACTIVE_TAP.reset(token)
        if text_config is model.config:
            model.set_attn_implementation(previous)
        else:
            model.set_attn_implementation({"text_config": previous})


@contextlib.contextmanager
def tap_paused() -> Iterator[None]:
    """Within an installed tap, run a block as plain sdpa: nothing recorded, nothing edited (a branch of
    the same step that the tap's edits are not meant for, e.g. PAI's text-only branch)."""
    token = _ACTIVE_TAP.set(None)
    try:
        yield
    finally:
        _ACTIVE_TAP.reset(token)
