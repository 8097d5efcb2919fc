"""The method interface and ``base``: plain decoding on the engine (equals ``generate()``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from transformers import LogitsProcessorList

from ..decoding import DecodeOutput, GenerationSettings, decode
from ..errors import ConfigError
from ..loading import LoadedModel, PreparedBatch
from ..registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register  # @register_method("name") on a Method subclass


@dataclass(frozen=True)
class MethodConfig:
    """Base class of method configs: validated dataclasses whose fields are the method's knobs."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Method:
    """A decoding method: ``generate(loaded, batch, settings)`` -> :class:`DecodeOutput`. Registered by
    name with ``@register_method("name")`` (which sets :attr:`name`)."""

    name: ClassVar[str] = "method"
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    writes_trace: ClassVar[bool] = False  # True: with ``trace`` set, DecodeOutput.trace has a row per step

    def __init__(self, config: MethodConfig | None = None, trace: bool = False):
        self.config = config if config is not None else self.config_class()
        self.trace = trace  # methods that can explain a step log it in DecodeOutput.trace when set

    @classmethod
    def from_overrides(cls, **overrides: Any) -> Method:
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"method {cls.name!r} has no option(s) {', '.join(unknown)}; options: {known}")
        return cls(cls.config_class(**overrides))

    def generate(
        self,
        loaded: LoadedModel,
        batch: PreparedBatch,
        settings: GenerationSettings,
        logits_processor: LogitsProcessorList | None = None,
    ) -> DecodeOutput:
        raise NotImplementedError

    @staticmethod
    def run_engine(
        loaded: LoadedModel,
        inputs: dict,
        settings: GenerationSettings,
        logits_processor: LogitsProcessorList | None = None,
        **engine: Any,
    ) -> DecodeOutput:
        """The decode loop on ``loaded`` with a method's hook / tap / hidden layers (``engine``)."""
        return decode(
            loaded.model,
            inputs,
            adapter=loaded.adapter,
            settings=settings,
            logits_processor=logits_processor,
            **engine,
        )


@dataclass(frozen=True)
class BaseConfig(MethodConfig):
    """``base`` has no knobs: it is the model's own greedy / sampled decoding."""


@register_method("base")
class BaseMethod(Method):
    """Plain decoding through the engine's loop, token for token what ``generate()`` gives."""

    config_class: ClassVar[type[MethodConfig]] = BaseConfig

    def generate(
        self,
        loaded: LoadedModel,
        batch: PreparedBatch,
        settings: GenerationSettings,
        logits_processor: LogitsProcessorList | None = None,
    ) -> DecodeOutput:
        return self.run_engine(
            loaded,
            batch.inputs,
            settings=settings,
            logits_processor=logits_processor,
        )
