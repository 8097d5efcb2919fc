"""The Python entry points: ``load_model`` + ``ask`` / ``ask_batch``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .engine.decoding import GenerationSettings, eos_token_ids
from .engine.loading import ImageLike, LoadedModel, build_inputs, load_model
from .errors import ConfigError
from .methods import Method, get_method


@dataclass
class Answer:
    """One generated answer."""

    question: str
    text: str
    token_ids: list[int]
    method: str
    config: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)


def _method(method: str | Method, overrides: dict[str, Any]) -> Method:
    if isinstance(method, Method):
        if overrides:
            raise ConfigError(
                f"pass options either in the {method.name} object's config or as keywords, not both"
            )
        return method
    return get_method(method, **overrides)


def ask_batch(
    model: LoadedModel | str,
    images: Sequence[ImageLike] | Sequence[Sequence[ImageLike]],
    questions: Sequence[str],
    *,
    method: str | Method = "base",
    settings: GenerationSettings | None = None,
    **method_options: Any,
) -> list[Answer]:
    """Answer a left-padded batch of (image, question) pairs with one method."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    runner = _method(method, method_options)
    settings = settings or GenerationSettings()
    batch = build_inputs(loaded, images, questions)
    out = runner.generate(loaded, batch, settings)
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    eos = eos_token_ids(settings, loaded.model)
    answers = []
    for i, question in enumerate(questions):
        ids, trace = out.sample(i, eos)  # up to its EOS, and the trace steps of those tokens
        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
        answers.append(
            Answer(
                question=question,
                text=text,
                token_ids=ids,
                method=runner.name,
                config=runner.config.to_dict(),
                trace=trace,
            )
        )
    return answers


def ask(
    model: LoadedModel | str,
    image: ImageLike | Sequence[ImageLike],
    question: str,
    *,
    method: str | Method = "base",
    settings: GenerationSettings | None = None,
    **method_options: Any,
) -> Answer:
    """Answer one question about one image (or a list of images)."""
    return ask_batch(model, [image], [question], method=method, settings=settings, **method_options)[0]
