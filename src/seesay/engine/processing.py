"""Processor loading that works without torchvision.

transformers 5.x ships two backends for image processors: torchvision (the default class names) and PIL
(the ``*Pil`` classes). Without a usable torchvision, several processors cannot be built the stock way:

* Processors whose ``__init__`` takes a ``video_processor`` (Qwen2-VL, Qwen2.5-VL, InternVL, ...) demand a
  video processor, and every video processor needs torchvision. ``AutoProcessor.from_pretrained`` then
  raises (an ImportError or OSError about the video processor) or, for some checkpoint layouts, silently
  returns just the tokenizer.
* A torchvision that is installed but does not import (a wheel built for another torch) makes every
  torchvision-backed image processor fail to load, because transformers only checks that the package exists.

`load_processor` tries ``AutoProcessor`` first and, when that fails or returns something that is not a
processor, rebuilds the saved processor class without its video processor (`image_only_processor_class`) and
with a PIL-backend image processor.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

from seesay.errors import ModelLoadError

__all__ = ["image_only_processor_class", "load_processor"]

_VIDEO_ATTRIBUTE = "video_processor"
# Files that may name the processor class, in the order AutoProcessor reads them.
_CLASS_NAME_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
# from_pretrained keyword arguments that locate files (passed on to cached_file and the sub-loaders).
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")

_IMAGE_ONLY_CLASSES: dict[type[ProcessorMixin], type[ProcessorMixin]] = {}


class _VideoFreeInit(ProcessorMixin):
    """Sits between a stock processor class and `ProcessorMixin` in the MRO of an image-only subclass.

    The stock ``__init__`` ends with ``super().__init__(image_processor, tokenizer, video_processor, ...)``,
    positional in the stock attribute order. This drops the video processor from those arguments before
    `ProcessorMixin.__init__` matches them against the (video-free) attributes of the subclass.
    """

    _stock_attributes: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop(_VIDEO_ATTRIBUTE, None)
        stock = self._stock_attributes
        kept = [arg for arg, name in zip(args, stock, strict=False) if name != _VIDEO_ATTRIBUTE]
        super().__init__(*kept, *args[len(stock) :], **kwargs)


def image_only_processor_class(base: type) -> type:
    """Return a subclass of the processor class ``base`` that has no ``video_processor``.

    Why: ``ProcessorMixin`` derives a processor's sub-processor attributes from the parameter names of its
    ``__init__`` (``get_attributes``), and requires, loads and saves one object per attribute. Every video
    processor needs torchvision, so without it Qwen2-VL, Qwen2.5-VL or InternVL processors cannot be built
    or loaded at all, although images alone need no video processor. The subclass exposes the stock
    ``__init__`` signature minus ``video_processor`` (so ``get_attributes`` no longer lists it), passes
    ``video_processor=None`` to the stock ``__init__`` (which keeps setting the image-token attributes) and
    drops it again before ``ProcessorMixin.__init__`` checks the arguments.

    The subclass keeps the stock ``__name__``, so ``save_pretrained`` writes the stock ``processor_class``
    and the saved files load with the stock class where torchvision works. Classes are cached: the same
    ``base`` always gives the same subclass. A ``base`` without a video processor is returned unchanged.
    """
    if not (isinstance(base, type) and issubclass(base, ProcessorMixin)):
        raise TypeError(f"expected a ProcessorMixin subclass, got {base!r}")
    if _VIDEO_ATTRIBUTE not in base.get_attributes():
        return base
    cached = _IMAGE_ONLY_CLASSES.get(base)
    if cached is not None:
        return cached

    stock_signature = inspect.signature(base.__init__)
    parameters = [p for p in stock_signature.parameters.values() if p.name != _VIDEO_ATTRIBUTE]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        raise TypeError(f"{base.__name__}.__init__ takes *args; cannot derive an image-only signature")
    signature = stock_signature.replace(parameters=parameters)
    var_keyword = next((p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    named = tuple(
        p.name
        for p in parameters[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )

    def __init__(self: ProcessorMixin, *args: Any, **kwargs: Any) -> None:
        arguments = dict(signature.bind(self, *args, **kwargs).arguments)
        del arguments[parameters[0].name]
        extra = arguments.pop(var_keyword, {}) if var_keyword else {}
        base.__init__(self, **arguments, **extra, **{_VIDEO_ATTRIBUTE: None})

    __init__.__signature__ = signature  # type: ignore[attr-defined]

    def validate_init_kwargs(
        processor_config: dict[str, Any], valid_kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # from_args_and_dict reads the accepted keywords from __init__.__code__, which is (*args, **kwargs)
        # here: name the stock keywords, or saved values such as image_seq_length would be dropped.
        return ProcessorMixin.validate_init_kwargs(processor_config, (*valid_kwargs, *named))

    image_only = type(
        base.__name__,
        (base, _VideoFreeInit),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__qualname__": f"{base.__qualname__}[image-only]",
            "__doc__": f"{base.__name__} without a video processor (see seesay.engine.processing).",
            "_stock_attributes": tuple(base.get_attributes()),
            "validate_init_kwargs": staticmethod(validate_init_kwargs),
        },
    )
    _IMAGE_ONLY_CLASSES[base] = image_only
    return image_only


def load_processor(
    path_or_id: str | Path, *, trust_remote_code: bool = False, **kwargs: Any
) -> ProcessorMixin:
    """Load the processor saved at ``path_or_id`` (a directory or a cached hub id).

    Tries ``AutoProcessor.from_pretrained``. If that raises or returns something that is not a
    ``ProcessorMixin`` (a bare tokenizer), reads the ``processor_class`` named in the saved configs
    (processor_config.json, preprocessor_config.json, tokenizer_config.json; else the class transformers
    maps config.json's ``model_type`` to), takes that class from ``transformers`` and loads its image-only
    variant; if that fails too, assembles it from the tokenizer and a PIL-backend image processor. Without
    a usable torchvision the returned processor's image processor is a ``*Pil`` class.

    Raises:
        ModelLoadError: no processor can be loaded; the message names the path and the cause.
    """
    source = str(path_or_id)
    if _looks_local(source) and not Path(source).expanduser().is_dir():
        raise ModelLoadError(f"cannot load a processor from {source}: no such directory")
    try:
        loaded = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except Exception as exc:
        cause = _describe(exc)
    else:
        if isinstance(loaded, ProcessorMixin):
            return _with_usable_image_processor(loaded)
        cause = f"AutoProcessor returned a {type(loaded).__name__}, not a processor"

    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    class_name = _saved_processor_class(source, hub_kwargs)
    if class_name is None:
        raise ModelLoadError(f"cannot load a processor from {source}: {cause}")
    stock = getattr(transformers, class_name, None)
    if not (isinstance(stock, type) and issubclass(stock, ProcessorMixin)):
        raise ModelLoadError(
            f"cannot load a processor from {source}: processor class {class_name} is not in "
            f"transformers {transformers.__version__} ({cause})"
        )
    processor_class = image_only_processor_class(stock)
    try:
        loaded = processor_class.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except Exception:
        try:
            loaded = _assemble_with_pil_backend(processor_class, source, trust_remote_code, hub_kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load a processor from {source}: {cause}; "
                f"{class_name} with a PIL image processor and no video processor: {_describe(exc)}"
            ) from exc
    return _with_usable_image_processor(loaded)


def _looks_local(source: str) -> bool:
    """A filesystem path rather than a hub id ("org/name")."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or Path(source).exists()


def _describe(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line, shortened to ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _saved_processor_class(source: str, hub_kwargs: dict[str, Any]) -> str | None:
    """The ``processor_class`` named by the first saved config that names one; else the processor class
    that transformers maps the ``model_type`` of ``config.json`` to; else None."""
    for filename in _CLASS_NAME_FILES:
        config = _read_json(source, filename, hub_kwargs)
        name = config.get("processor_class")
        if isinstance(name, str) and name:
            return name
    model_type = _read_json(source, "config.json", hub_kwargs).get("model_type")
    name = PROCESSOR_MAPPING_NAMES.get(model_type) if isinstance(model_type, str) else None
    return name if isinstance(name, str) else None


def _read_json(source: str, filename: str, hub_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in ``filename`` of ``source`` (a directory or a cached hub id), or {}."""
    try:
        resolved = cached_file(
            source,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            _raise_exceptions_for_gated_repo=False,
            **hub_kwargs,
        )
        if resolved is None:
            return {}
        config = json.loads(Path(resolved).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _assemble_with_pil_backend(
    processor_class: type[ProcessorMixin], source: str, trust_remote_code: bool, hub_kwargs: dict[str, Any]
) -> ProcessorMixin:
    """Build ``processor_class`` from an ``AutoTokenizer`` and a PIL-backend ``AutoImageProcessor``.

    For a torchvision that is installed but cannot be imported: the stock loader asks for the torchvision
    backend and fails, and its keyword arguments reach the tokenizer too, so ``backend="pil"`` cannot be
    passed through ``from_pretrained``.
    """
    sub_processors: list[Any] = []
    for attribute in processor_class.get_attributes():
        if attribute == "tokenizer":
            sub_processors.append(
                AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub_kwargs)
            )
        elif attribute == "image_processor":
            sub_processors.append(
                AutoImageProcessor.from_pretrained(
                    source, backend="pil", trust_remote_code=trust_remote_code, **hub_kwargs
                )
            )
        else:
            raise ValueError(
                f"{processor_class.__name__} needs a {attribute}, which this loader cannot build"
            )
    processor_dict, extra = processor_class.get_processor_dict(source, **hub_kwargs)
    return processor_class.from_args_and_dict(sub_processors, processor_dict, **extra)


@functools.cache
def _torchvision_usable() -> bool:
    try:
        importlib.import_module("torchvision")
    except Exception:
        return False
    return True


def _with_usable_image_processor(processor: ProcessorMixin) -> ProcessorMixin:
    """Swap a torchvision-backend image processor for its ``*Pil`` twin when torchvision is unusable."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or _torchvision_usable():
        return processor
    name = type(image_processor).__name__
    if name.endswith("Pil"):
        return processor
    pil_class = getattr(transformers, name.removesuffix("Fast") + "Pil", None)
    if pil_class is None:
        return processor
    processor.image_processor = pil_class.from_dict(image_processor.to_dict())
    return processor
