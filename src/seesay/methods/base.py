"""The method interface and ``base``: plain decoding on the engine (equals ``generate()``)."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch

from ..engine.decoding import (
    Branch,
    DecodeOutput,
    GenerationSettings,
    StepHook,
    StepResult,
    StepState,
    decode,
)
from ..engine.loading import LoadedModel, PreparedBatch
from ..engine.tap import AttentionTap
from ..errors import ConfigError, NoImageTokensError
from ..registry import Registry

if TYPE_CHECKING:
    from transformers import LogitsProcessorList

METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register  # @register_method("name") on a Method subclass


@dataclass(frozen=True)
class MethodConfig:
    """Base class of method configs: validated dataclasses whose fields are the method's knobs."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_KINDS = {float: "a number", int: "an integer", bool: "true or false", str: "text", type(None): "none"}


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``: False only for a value of a plainly wrong kind
    (text for a number, a number for text, a word not in a Literal); None for a type this check does not
    read (an array, a dict), left to the config. Ints (and numpy numbers) pass for floats, paths for text,
    any sequence (list, range, array) for a tuple; bools only for bools."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_matches(value, a) for a in args]
        return True if any(verdicts) else (None if None in verdicts else False)
    if origin in (tuple, list):
        if isinstance(value, str | bytes | numbers.Number | bool) or value is None:
            return False
        if not isinstance(value, Iterable):
            return None
        element = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else None
        if element not in (int, float):
            return None
        items = list(value) if isinstance(value, list | tuple | range) else None
        if items is None:  # an array, a set: the config converts it
            return None
        return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items)
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if hint is float:
        return isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_ | complex)
    if hint is str:
        return isinstance(value, str | os.PathLike)
    if hint is type(None):
        return value is None
    return None


def _is_word_of(value: str, hint: Any) -> bool:
    """Whether ``value`` is one of the words a Literal in ``hint`` names."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    return origin in (typing.Union, types.UnionType) and any(_is_word_of(value, a) for a in args)


def _describe(hint: Any) -> str:
    """Words for an annotation: ``float | None`` -> "a number or none"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        inner = args[0] if args else None
        return "a list" + (f" of {_describe(inner).removeprefix('a ').removeprefix('an ')}s" if inner else "")
    return _KINDS.get(hint, getattr(hint, "__name__", str(hint)))


class Method:
    """A decoding method: ``generate(loaded, batch, settings)`` -> :class:`DecodeOutput`. Registered by
    name with ``@register_method("name")`` (which sets :attr:`name`)."""

    name: ClassVar[str] = "method"
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    writes_trace: ClassVar[bool] = False  # True: with ``trace`` set, DecodeOutput.trace has a row per step
    # True: the method reads or edits what the prompt's image tokens carry (their attention, the image
    # itself), so a sample without image tokens is refused before any pass, in one line.
    reads_image_tokens: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None, trace: bool = False):
        self.config = config if config is not None else self.config_class()
        self.trace = trace  # methods that can explain a step log it in DecodeOutput.trace when set

    @classmethod
    def from_overrides(cls, **overrides: Any) -> Method:
        """The method with its config's fields set from ``overrides`` (``--set KEY=VALUE``): unknown keys,
        and values of the wrong kind for a field's annotation, are one ConfigError line; the word
        ``none`` (or ``null``) is None for a field that takes None, unless it is one of the field's own
        words (DualPD's ``contrast="none"``)."""
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"method {cls.name!r} has no option(s) {', '.join(unknown)}; options: {known}")
        try:
            hints = typing.get_type_hints(cls.config_class)
        except Exception:  # an annotation we cannot resolve: leave the checks to the config
            hints = {}
        checked: dict[str, Any] = {}
        for key, value in overrides.items():
            hint = hints.get(key)
            if hint is not None:
                word_none = isinstance(value, str) and value.lower() in ("none", "null")
                if word_none and _matches(None, hint) and not _is_word_of(value, hint):
                    value = None
                if _matches(value, hint) is False:
                    raise ConfigError(f"method {cls.name!r}: {key} must be {_describe(hint)}, got {value!r}")
            checked[key] = value
        overrides = checked
        try:
            config = cls.config_class(**overrides)
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError) as err:  # a value of the wrong type (--set k=v)
            shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
            raise ConfigError(f"method {cls.name!r}: invalid option value in {shown} ({err})") from None
        return cls(config)

    def check_settings(self, settings: GenerationSettings) -> None:
        """Refuse, with a ConfigError, generation settings this config cannot run (e.g. a knob that
        overflows by the last new token); called before any forward pass. Default: everything runs."""

    def plan(self, loaded: LoadedModel, batch: PreparedBatch) -> EnginePlan:
        """What this method asks of the engine for ``batch``: its per-step hook, its tap, the hidden
        layers it reads (and, for two-phase methods, other inputs, passes already run, evidence)."""
        return EnginePlan()

    def generate(
        self,
        loaded: LoadedModel,
        batch: PreparedBatch,
        settings: GenerationSettings,
        logits_processor: LogitsProcessorList | None = None,
    ) -> DecodeOutput:
        """The engine's decode loop with what :meth:`plan` declares (the one ``generate`` of every
        method)."""
        if self.reads_image_tokens:
            try:
                loaded.adapter.check_image_tokens(batch.inputs["input_ids"])
            except NoImageTokensError as err:
                raise NoImageTokensError(f"{self.name} reads the prompt's image tokens: {err}") from None
        return self.execute(loaded, batch, self.plan(loaded, batch), settings, logits_processor)

    def execute(
        self,
        loaded: LoadedModel,
        batch: PreparedBatch,
        plan: EnginePlan,
        settings: GenerationSettings,
        logits_processor: LogitsProcessorList | None = None,
    ) -> DecodeOutput:
        """Run ``plan`` (from :meth:`plan`, or built by a method's own helper from work a caller already
        did, e.g. VEA's maps from attention rows it has) through the engine's decode loop."""
        self.check_settings(settings)
        with contextlib.ExitStack() as stack:
            for context in plan.contexts:  # e.g. forward hooks whose readings the tap's edits use
                stack.enter_context(context)
            out = decode(
                loaded.model,
                plan.inputs if plan.inputs is not None else batch.inputs,
                adapter=loaded.adapter,
                settings=settings,
                hook=plan.hook,
                tap=plan.tap,
                hidden_layers=plan.hidden_layers,
                branches=plan.branches,
                logits_processor=logits_processor,
            )
        out.forward_passes += plan.passes_before
        out.forward_calls += plan.passes_before
        if plan.evidence is not None:
            out.evidence = plan.evidence
        return plan.finish(out) if plan.finish is not None else out


class BranchContrastStep:
    """A per-step hook that reads the batch's and one branch's logits in one lm_head call and combines
    them (:meth:`combine`); its trace gives each sample's top token on both sides, under
    :attr:`trace_keys`. VCD, ICD and PAI are this with their own branch and formula."""

    branch: ClassVar[str] = ""
    trace_keys: ClassVar[tuple[str, str]] = ("top", "branch_top")

    def __init__(self, config: MethodConfig, trace: bool = False):
        self.config = config
        self.trace_enabled = trace

    def combine(self, logits: torch.Tensor, other: torch.Tensor, step: int) -> torch.Tensor:
        """Next-token scores [B, V] from the batch's and the branch's logits at decode step ``step``
        (0 for the first new token)."""
        raise NotImplementedError

    def __call__(self, state: StepState) -> StepResult:
        logits, other = state.readout(state.branches[self.branch])
        trace = None
        if self.trace_enabled:
            mine, theirs = self.trace_keys
            trace = [
                {"step": state.step, mine: int(a), theirs: int(b)}
                for a, b in zip(logits.argmax(-1), other.argmax(-1), strict=True)
            ]
        return StepResult(self.combine(logits, other, state.step), trace)


@dataclass
class EnginePlan:
    """A method's request to the engine for one batch (see :meth:`Method.plan`).

    ``hook``: per-step scores (a :class:`~seesay.engine.decoding.StepHook`); ``tap``: the attention tap (rows,
    records, score norms, head scales, score edits); ``hidden_layers``: decoder layers whose last-position
    hidden state the hook reads; ``branches``: input variants advanced in lockstep with their own caches
    (:class:`~seesay.engine.decoding.Branch`: VCD's noised image; their hidden states in the hook's
    ``state.branches``); ``contexts``: context managers held open while decoding (forward hooks whose
    readings the tap's edits use: VAR's sink marks); ``inputs``: inputs to decode instead of the
    batch's (VEA's highlighted images); ``passes_before``: forward passes the method ran before
    decoding; ``evidence``: per-sample evidence to return; ``finish``: a last look at the output (e.g. a
    trace of the whole answer).
    """

    hook: StepHook | None = None
    tap: AttentionTap | None = None
    hidden_layers: tuple[int, ...] = ()
    branches: tuple[Branch, ...] = ()
    contexts: tuple[contextlib.AbstractContextManager, ...] = ()
    inputs: dict | None = None
    passes_before: int = 0
    evidence: list | None = None
    finish: Callable[[DecodeOutput], DecodeOutput] | None = None


@dataclass(frozen=True)
class BaseConfig(MethodConfig):
    """``base`` has no knobs: it is the model's own greedy / sampled decoding."""


@register_method("base")
class BaseMethod(Method):
    """Plain decoding through the engine's loop, token for token what ``generate()`` gives (no hook, no
    tap: the default :class:`EnginePlan`)."""

    config_class: ClassVar[type[MethodConfig]] = BaseConfig
