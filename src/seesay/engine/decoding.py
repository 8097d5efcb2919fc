"""A batched KV-cache decode loop with one per-step hook, the engine every method runs on.

Per step t the loop runs one forward pass of the new token(s) (the whole prompt at t = 0), reads the
final-layer logits of the last position (``logits_to_keep=1``), lets a hook turn that step's state
(logits, tapped attention rows, captured hidden states) into next-token scores, applies the logits
processors, and picks the next token (argmax, or a sample). Left-padded batches follow ``generate()``:
positions from the attention mask, finished rows receive the pad token. Without a hook, greedy output
equals ``model.generate(do_sample=False)`` token for token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..errors import ConfigError
from .adapters.base import ModelAdapter
from .lens import HiddenCapture, capture_hidden
from .prefill import cached_forward, join_caches, prefill
from .tap import AttentionTap, attention_tap, tap_paused

if TYPE_CHECKING:
    from transformers import LogitsProcessorList, StoppingCriteriaList


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings (the usual ``generate()`` ones).

    Defaults: greedy, 32 new tokens, no penalties (our choice: short VQA answers; benchmarks override).
    """

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None
    # A branch's prompt (never the batch's, which keeps generate()'s bits) is prefilled in chunks of this
    # many tokens (None: one pass), so that its activations are one chunk's beside the batch's KV cache.
    # 512: our choice; VCD's peak memory at 2880 image tokens then drops from 1.12x plain to about 1.04x
    # (benchmarks/tap_overhead.py), at prompts of <= 512 tokens nothing changes.
    branch_prefill_chunk_size: int | None = 512

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.no_repeat_ngram_size < 0:
            raise ConfigError("top_k and no_repeat_ngram_size must be >= 0")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.branch_prefill_chunk_size is not None and self.branch_prefill_chunk_size < 1:
            raise ConfigError(
                f"branch_prefill_chunk_size must be >= 1 or None, got {self.branch_prefill_chunk_size}"
            )

    def logits_processors(self) -> LogitsProcessorList:
        """The standard processors in ``generate()``'s order (penalties, then sampling warpers)."""
        from transformers import (
            LogitsProcessorList,
            NoRepeatNGramLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.no_repeat_ngram_size > 0:
            procs.append(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size))
        if self.do_sample:
            if self.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k > 0:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs


@dataclass
class StepState:
    """What a hook sees at one decoding step (step 0 = the prefill pass).

    ``final_hidden`` is the last position's final-normed hidden state (``branches``: the same for each
    :class:`Branch` of the plan, by name); :attr:`logits` (float32) is
    ``lm_head(final_hidden)``, computed on first use. :meth:`readout` computes the final logits together
    with logits of other (already normed) hidden states in ONE lm_head call, which reads the lm_head weights
    once: at small batch sizes that matmul is memory-bound, so a contrastive method pays for one readout,
    not two.
    """

    step: int
    input_ids: torch.Tensor  # [B, T] prompt (left padded) + tokens so far
    attention_mask: torch.Tensor  # [B, T]
    final_hidden: torch.Tensor  # [B, d]
    unfinished: torch.Tensor  # [B] bool
    adapter: ModelAdapter
    tap: AttentionTap | None = None
    hidden: HiddenCapture | None = None
    branches: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> its last hidden [B, d]
    _logits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def logits(self) -> torch.Tensor:
        """Final-layer next-token logits [B, V], float32."""
        if self._logits is None:
            self._logits = self.adapter.logits_from_hidden(self.final_hidden).float()
        return self._logits

    def readout(self, *normed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(final logits, logits of each ``normed`` [B, d]) from one lm_head call, all float32."""
        b = self.final_hidden.shape[0]
        rows = ([] if self._logits is not None else [self.final_hidden]) + [
            h.to(self.final_hidden.dtype) for h in normed
        ]
        out = self.adapter.logits_from_rows(torch.cat(rows, dim=0)).float().split(b, dim=0)
        if self._logits is None:
            self._logits, out = out[0], out[1:]
        return (self._logits, *out)


@dataclass
class StepResult:
    """What a hook returns for one step: the next-token ``scores`` [B, V] (before the logits
    processors), optionally the step's ``trace`` (one dict per sample) and the forward ``passes`` the hook
    ran itself (a second branch)."""

    scores: torch.Tensor
    trace: list[dict[str, Any]] | None = None
    passes: int = 0


class StepHook(Protocol):
    """Turns a step's state into next-token scores: a :class:`StepResult`, or the bare scores [B, V]."""

    def __call__(self, state: StepState) -> StepResult | torch.Tensor: ...


@dataclass
class DecodeOutput:
    """Result of :func:`decode`. ``sequences`` = prompt + new tokens.

    ``forward_passes`` counts passes of B rows (the main batch and each branch, per step);
    ``forward_calls`` the model invocations that ran them (a merged branch adds rows to every decode
    step's call, and one call at the prefill).
    ``trace`` has one entry per step whose hook returned one (a list with one dict per sample);
    ``evidence``, for methods that compute one, each sample's evidence (VEA: its maps).
    """

    sequences: torch.Tensor
    prompt_length: int
    forward_passes: int
    trace: list[list[dict[str, Any]]] = field(default_factory=list)
    evidence: list[Any] | None = None
    forward_calls: int = 0  # model invocations: merged branches share the decode steps' one

    @property
    def new_tokens(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]

    def sample(self, row: int, eos: Iterable[int]) -> tuple[list[int], list[dict[str, Any]]]:
        """Sample ``row``'s new token ids up to and including its first ``eos`` (the pads after it
        dropped) and the trace steps of those tokens."""
        stop = set(eos)
        ids = self.new_tokens[row].tolist()
        ids = ids[: next((j + 1 for j, t in enumerate(ids) if t in stop), len(ids))]
        steps = [step[row] for step in self.trace if row < len(step)][: len(ids)]
        return ids, steps


def eos_token_ids(settings: GenerationSettings, model: torch.nn.Module) -> list[int]:
    """The end-of-sequence ids in force: the settings', else the model's generation config."""
    eos = settings.eos_token_id
    if eos is None:
        eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]


def _pad_id(settings: GenerationSettings, model: torch.nn.Module, eos: list[int]) -> int:
    pad = settings.pad_token_id
    if pad is None:
        pad = getattr(model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = eos[0] if eos else 0
    return int(pad)


@dataclass(frozen=True)
class Branch:
    """An input variant of the batch decoded in lockstep with it (VCD's noised image, a text-only or a
    disturbed-instruction prompt, an added crop): processor outputs for the same B samples (left
    padded, any prompt length), its own KV cache, and at every step the token the main batch chose.

    ``tapped``: whether an installed attention tap reads and edits this branch's passes too (default
    False: a method's tap edits are for the main pass). Branches whose tensors have the main inputs'
    shapes, with no tap and no hidden-state capture in the plan, run in the main forward as one
    (k+1)B batch (prefilled one after the other, their KV caches then joined); the others as one
    forward each, before the main one.
    """

    name: str
    inputs: Mapping[str, torch.Tensor]
    tapped: bool = False


class _Group:
    """Rows advanced by one forward per step: the main batch (with any branches merged into it) or one
    branch. Holds their inputs, attention mask, position state and KV cache.

    A group of several members (the batch and merged branches) prefills one member at a time and joins
    their KV caches (:func:`join_caches`) before the first decode step, so that the prefill holds one
    member's activations at a time, not all of them; every later step is one forward of all the rows.
    """

    def __init__(
        self,
        names: list[str],
        inputs: list[Mapping[str, torch.Tensor]],
        tapped: bool,
        pad_id: int = 0,
        chunk_sizes: list[int | None] | None = None,
    ):
        self.names = names
        self.tapped = tapped
        self.chunk_sizes = chunk_sizes or [None] * len(names)  # per member, for :func:`prefill`
        # prompts of other lengths are left-padded to the longest (the batch guarantee holds)
        width = max(x["input_ids"].shape[1] for x in inputs)
        self.members: list[dict[str, torch.Tensor]] = []
        for x in inputs:
            member = {k: _left_pad(v, x["input_ids"].shape, width, pad_id, k) for k, v in x.items()}
            if member.get("attention_mask") is None:
                member["attention_mask"] = torch.ones_like(member["input_ids"])
            self.members.append(member)
        self.attention_mask = torch.cat([m["attention_mask"] for m in self.members], dim=0)
        self.position_state: dict[str, Any] = {}
        self.cache: Any = None

    def length_at(self, step: int) -> int:
        """The padded sequence length once ``step``'s tokens are in (what the tap maps key indices by);
        read before :meth:`advance` of that step, which grows the mask."""
        return self.attention_mask.shape[1] + (step > 0)

    def advance(
        self, adapter: ModelAdapter, step: int, tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, int, int]:
        """One step: (the last position's hidden state of every row [kB, d], model calls run, passes of B
        rows run). Step 0 prefills the prompts; a later step feeds ``tokens`` [B] (repeated for each
        member)."""
        if step == 0:
            return self._prefill(adapter)
        assert tokens is not None
        rows = tokens.repeat(len(self.names))[:, None].to(self.attention_mask.device)
        self.attention_mask = torch.cat(
            [self.attention_mask, self.attention_mask.new_ones((self.attention_mask.shape[0], 1))], -1
        )
        inputs = {
            "input_ids": rows,
            "attention_mask": self.attention_mask,
            **adapter.next_position_inputs(self.attention_mask, self.position_state),
        }
        out, self.cache = cached_forward(adapter, inputs, self.cache)
        return out.last_hidden_state[:, -1], 1, len(self.names)

    def _prefill(self, adapter: ModelAdapter) -> tuple[torch.Tensor, int, int]:
        members, self.members = self.members, []  # the prompts are read once
        if len(members) == 1:
            last, self.cache, self.position_state, calls = prefill(adapter, members[0], self.chunk_sizes[0])
            return last, calls, 1
        k = len(members)  # one member at a time, then one cache
        done = [prefill(adapter, m, size) for m, size in zip(members, self.chunk_sizes, strict=True)]
        lasts, caches, states, calls = map(list, zip(*done, strict=True))
        del done
        joined_state = _join_states(states, [m["input_ids"].shape[0] for m in members])
        if joined_state is not None and join_caches(caches):
            self.cache, self.position_state = caches[0], joined_state
            return torch.cat(lasts, dim=0), sum(calls), k
        del caches, lasts, states  # a cache we cannot join: prefill the rows again, as one batch
        full = {name: torch.cat([m[name] for m in members], dim=0) for name in members[0]}
        del members
        last, self.cache, self.position_state, again = prefill(adapter, full)
        return last, sum(calls) + again, 2 * k


def _join_states(states: list[dict[str, Any]], rows: list[int]) -> dict[str, Any] | None:
    """Members' position states as one: per-row tensors (first dimension = the member's ``rows``, e.g.
    ``rope_deltas`` [B, 1]) concatenated, anything else equal in all (else None: the caller then
    prefills the rows as one batch)."""
    joined: dict[str, Any] = {}
    for key, value in states[0].items():
        values = [s.get(key) for s in states]
        if all(
            isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n
            for v, n in zip(values, rows, strict=True)
        ):
            joined[key] = torch.cat(values, dim=0)
        elif not any(isinstance(v, torch.Tensor) for v in values) and all(v == value for v in values):
            joined[key] = value
        else:
            return None
    return joined


def _per_token(tensor: Any, ids_shape: torch.Size) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.dim() == 2 and tensor.shape == ids_shape


def _left_pad(
    tensor: torch.Tensor, ids_shape: torch.Size, width: int, pad_id: int, name: str
) -> torch.Tensor:
    """A per-token tensor [B, T] padded on the left to ``width`` (pad id for input_ids, else 0)."""
    if not _per_token(tensor, ids_shape) or tensor.shape[1] == width:
        return tensor
    fill = pad_id if name == "input_ids" else 0
    return torch.nn.functional.pad(tensor, (width - tensor.shape[1], 0), value=fill)


def _mergeable(main: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> bool:
    """Same keys, the same image tensors and per-token tensors (ids, mask, token types) of any length:
    the two can run as one left-padded batch."""
    if set(main) != set(other) or "attention_mask" not in main:
        return False
    a, b = main["input_ids"].shape, other["input_ids"].shape
    for k in main:
        x, y = main[k], other[k]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.dtype != y.dtype:
            return False
        if _per_token(x, a) and _per_token(y, b):
            continue
        if x.shape != y.shape:
            return False
    return True


def decode(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    *,
    adapter: ModelAdapter,
    settings: GenerationSettings | None = None,
    hook: StepHook | None = None,
    tap: AttentionTap | None = None,
    hidden_layers: Iterable[int] = (),
    branches: Iterable[Branch] = (),
    logits_processor: LogitsProcessorList | None = None,
    stopping_criteria: StoppingCriteriaList | None = None,
) -> DecodeOutput:
    """Generate from processor outputs ``inputs`` with an optional per-step ``hook``.

    ``tap`` is installed on the language model for the whole loop; ``hidden_layers`` are captured at the
    last position of every pass; each of ``branches`` is advanced in lockstep (its last hidden state in
    ``StepState.branches``). The hook returns next-token scores; without one the final logits are used.
    """
    settings = settings or GenerationSettings()
    inputs = dict(inputs)
    if "input_ids" not in inputs:
        raise ConfigError("decode() needs input_ids (use seesay.build_inputs or the model's processor)")
    if inputs.get("attention_mask") is None:
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    branches = tuple(branches)
    if len({b.name for b in branches}) != len(branches):
        raise ConfigError("branch names must be unique")
    batch_size = inputs["input_ids"].shape[0]
    for branch in branches:
        if "input_ids" not in branch.inputs or branch.inputs["input_ids"].shape[0] != batch_size:
            raise ConfigError(f"branch {branch.name!r} needs input_ids for the batch's {batch_size} samples")
    hidden_layers = tuple(hidden_layers)
    # Branches with the main inputs' shapes join the main forward (one (k+1)B batch) unless a tap or a
    # hidden capture would see their rows; the others run as their own forward, before the main one.
    can_merge = tap is None and not hidden_layers
    merged = [b for b in branches if can_merge and _mergeable(inputs, b.inputs)]
    eos = eos_token_ids(settings, model)
    pad = _pad_id(settings, model, eos)
    main_rows = [inputs, *(b.inputs for b in merged)]
    # the batch's own prompt in one pass (generate()'s bits); the branches' in chunks (untapped ones: a
    # tap would read each chunk as a pass)
    chunk = settings.branch_prefill_chunk_size
    sizes = [None] + [chunk] * len(merged)
    main = _Group(["", *(b.name for b in merged)], main_rows, tapped=True, pad_id=pad, chunk_sizes=sizes)
    separate = [
        _Group([b.name], [b.inputs], tapped=b.tapped, chunk_sizes=[None if b.tapped else chunk])
        for b in branches
        if b not in merged
    ]

    input_ids = inputs["input_ids"]
    device = adapter.lm_head.weight.device
    eos_tensor = torch.tensor(eos, device=input_ids.device, dtype=input_ids.dtype)
    procs = settings.logits_processors()
    if logits_processor:
        procs.extend(logits_processor)
    generator = None
    if settings.do_sample and settings.seed is not None:
        generator = torch.Generator(device=device).manual_seed(settings.seed)

    prompt_length = input_ids.shape[1]
    # The hook's view of the batch's mask: the main group's own, unless merged branches padded its rows.
    own_mask = inputs["attention_mask"] if len(main.names) > 1 else None
    unfinished = torch.ones(batch_size, dtype=torch.bool, device=input_ids.device)
    trace: list[list[dict[str, Any]]] = []
    passes = calls = 0
    next_tokens: torch.Tensor | None = None

    with contextlib.ExitStack() as stack:
        active_tap = stack.enter_context(attention_tap(model, tap)) if tap is not None else None
        capture = stack.enter_context(capture_hidden(adapter, hidden_layers)) if hidden_layers else None
        for step in range(settings.max_new_tokens):
            branch_hidden: dict[str, torch.Tensor] = {}
            for group in separate:  # before the main pass, so that its records and captures are the last
                if group.tapped and active_tap is not None:  # its own positions; its records not kept
                    active_tap.new_pass()
                    active_tap.seq_len = group.length_at(step)
                with contextlib.nullcontext() if group.tapped else tap_paused():
                    branch_last, ran, rows_run = group.advance(adapter, step, next_tokens)
                if group.tapped and active_tap is not None:
                    active_tap.records = {}
                branch_hidden[group.names[0]] = branch_last
                passes += rows_run
                calls += ran
            if active_tap is not None:
                active_tap.new_pass()
                active_tap.seq_len = main.length_at(step)
            # The base model, then lm_head on the last position only (what the *ForConditionalGeneration
            # forward does with logits_to_keep=1), so that a hook can batch its own readouts with it.
            last, ran, rows_run = main.advance(adapter, step, next_tokens)
            passes += rows_run
            calls += ran
            for k, name in enumerate(main.names[1:], start=1):
                branch_hidden[name] = last[k * batch_size : (k + 1) * batch_size]
            state = StepState(
                step=step,
                input_ids=input_ids,
                attention_mask=main.attention_mask if own_mask is None else own_mask,
                final_hidden=last[:batch_size],
                unfinished=unfinished,
                adapter=adapter,
                tap=active_tap,
                hidden=capture,
                branches=branch_hidden,
            )
            result = state.logits if hook is None else hook(state)  # a hook may batch its own readouts
            if isinstance(result, StepResult):
                scores = result.scores
                passes += result.passes
                calls += result.passes
                if result.trace is not None:
                    trace.append(result.trace)
            else:
                scores = result
            scores = procs(input_ids, scores)
            if settings.do_sample:
                probs = torch.softmax(scores, dim=-1)
                next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                next_tokens = scores.argmax(dim=-1)
            next_tokens = torch.where(unfinished, next_tokens.to(input_ids.device), pad)
            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
            if own_mask is not None:
                own_mask = torch.cat([own_mask, own_mask.new_ones((batch_size, 1))], -1)
            if eos:
                unfinished = unfinished & ~torch.isin(next_tokens, eos_tensor)
            if stopping_criteria is not None:
                unfinished = unfinished & ~stopping_criteria(input_ids, scores).to(unfinished.device)
            if not bool(unfinished.any()) or step == settings.max_new_tokens - 1:
                break
    return DecodeOutput(
        sequences=input_ids, prompt_length=prompt_length, forward_passes=passes, trace=trace,
        forward_calls=calls,
    )  # fmt: skip
