"""Load a model, its processor and adapter; turn images + questions into model inputs.

``load_model`` never runs remote code unless asked (``trust_remote_code=False``) and fails fast with a
one-line :class:`~seesay.errors.SeesayError` for a missing path, an unsupported architecture or a config
without an image token. ``build_inputs`` applies the model's chat template, left-pads the batch and keeps
each image's original size (needed to map image tokens back to pixels).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import (
    ConfigError,
    ImageError,
    ModelLoadError,
    NoImageTokensError,
    SeesayError,
    UnsupportedModelError,
)
from ..registry import Registry
from .adapters import SUPPORTED_ARCHITECTURES, ModelAdapter, adapter_class_for, get_adapter

MODEL_SOURCES_GROUP = "seesay.model_sources"  # entry points: NAME = "module:loader" serves NAME:SPEC

ImageLike = Image.Image | str | os.PathLike


@dataclass
class LoadedModel:
    """A model with its processor and adapter, ready for :func:`build_inputs` and the methods."""

    model: torch.nn.Module
    processor: Any
    adapter: ModelAdapter
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.adapter.family

    @property
    def device(self) -> torch.device:
        return self.adapter.lm_head.weight.device


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in names:
        raise SeesayError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(names)}")
    return names[dtype]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _looks_like_path(name: str) -> bool:
    """Local paths start with ./ / ~, have several separators, or exist; ``org/name`` is a hub id."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_source(name: str, revision: str | None = None) -> str:
    """Where to load hub id ``name`` from, checked in one quick call instead of minutes of retries.

    Offline mode (``HF_HUB_OFFLINE``): it must be in the local hub cache. Online: the hub is asked once;
    a missing repository fails at once, and when the hub cannot be reached a cached copy is used (its
    snapshot folder) or the error says so.
    """
    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision)
    except HFValidationError as err:
        raise ModelLoadError(f"{name}: no such folder, and not a valid hub id ({_one_line(err)})") from err
    cached_dir = str(Path(cached).parent) if isinstance(cached, str) else None
    if _offline():
        if cached_dir is None:
            raise ModelLoadError(
                f"{name}: no such folder, and not in the local hub cache "
                "(offline mode: HF_HUB_OFFLINE is set)"
            )
        return name
    try:
        model_info(name, revision=revision, timeout=10)
    except GatedRepoError:
        return name  # exists; transformers reports the access problem
    except RevisionNotFoundError as err:
        raise ModelLoadError(f"{name}: the hub has no revision {revision!r}") from err
    except RepositoryNotFoundError as err:
        raise ModelLoadError(f"{name}: no such folder, and no such model on the hub") from err
    except HfHubHTTPError:
        return name  # the hub answered (auth, rate limit ...): transformers gives the precise message
    except Exception as err:  # no route to the hub: DNS, refused, timeout (httpx / requests / OSError)
        if cached_dir is not None:
            return cached_dir
        raise ModelLoadError(
            f"{name}: no such folder, and not reachable as a hub id (the hub cannot be reached: "
            f"{_one_line(err)}; set HF_HUB_OFFLINE=1 to use only local files)"
        ) from err
    return name


SETTINGS_FILE = "seesay.json"  # beside config.json: a model's own seesay defaults, e.g. its prompt suffix


def model_settings(folder: Path) -> dict[str, Any]:
    """A saved model's seesay settings (``seesay.json``: ``{"prompt_suffix": str}``), {} when absent."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    suffix = settings.get("prompt_suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise ModelLoadError(f"{path}: prompt_suffix must be a string")
    return settings


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "auto",
    device_map: str | dict | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    max_pixels: int | str | None = "preset",
) -> LoadedModel:
    """Load a supported VLM from a local path or hub id (or ``tiny-random:<family>``, built offline).

    ``max_pixels`` caps Qwen2-VL / Qwen2.5-VL inputs (the image processor's pixel budget): "preset" =
    512 x 512 for the models with published VEA presets (the VEA reference passes it to every processor,
    so every method of a run sees the same inputs), else the processor's own; an int caps any Qwen-family
    model; None keeps the processor's own. Returns model (eval mode, sdpa attention), processor, adapter.
    """
    name = str(name_or_path)
    source = model_source(name)
    if source is not None:  # NAME:SPEC served by a registered source (the test kit's tiny-random:FAMILY)
        loader, spec = source
        options: dict[str, Any] = {"device": device, "name": name}
        if dtype not in (None, "auto") and _takes(loader, "dtype"):  # else: the source's own default
            options["dtype"] = _resolve_dtype(dtype)
        return apply_max_pixels(loader(spec, **options), max_pixels)

    path = Path(name).expanduser()
    if _looks_like_path(name) and not path.exists():
        raise ModelLoadError(f"model path not found: {name}")
    if path.is_dir() and not (path / "config.json").exists():
        raise ModelLoadError(f"{name} has no config.json: not a saved transformers model")

    from transformers import AutoConfig, AutoModelForImageTextToText

    from .processing import load_processor

    source = str(path) if path.exists() else hub_source(name, revision)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        raise ModelLoadError(f"cannot load {name}: {_one_line(err)}") from err
    except Exception as err:  # config validation errors come in several types
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"{name} needs remote code; pass trust_remote_code=True if you trust it"
            ) from err
        raise ModelLoadError(f"invalid config in {name}: {_one_line(err)}") from err
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise UnsupportedModelError(
            f"unsupported model class {archs[0]}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype), "trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, config=config, **kwargs).eval()
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load the weights of {name}: {_one_line(err)}") from err
    adapter_class_for(model)  # unsupported classes fail here, before the processor is loaded
    if device is not None and device_map is None:
        model = model.to(device)
    processor = load_processor(source, trust_remote_code=trust_remote_code)
    info: dict[str, Any] = {"revision": revision, "dtype": str(model.dtype)}
    if Path(source).is_dir():
        info.update(model_settings(Path(source)))
        info["weights"] = weights_fingerprint(Path(source))
    loaded = LoadedModel(model, processor, get_adapter(model, processor), name=name, info=info)
    return apply_max_pixels(loaded, max_pixels)


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name`` (by name or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


MODEL_SOURCES: Registry[Callable[..., LoadedModel]] = Registry("model source")
_ENTRY_POINTS_READ = False


def register_model_source(prefix: str):
    """``@register_model_source("name")`` on ``loader(spec, *, device, name) -> LoadedModel``: then
    ``load_model("name:spec")`` calls it. Packages register theirs with the entry-point group
    ``seesay.model_sources`` (read on first use); seesay's own test kit serves ``tiny-random:FAMILY``."""
    return MODEL_SOURCES.register(prefix)


def model_source(name: str) -> tuple[Callable[..., LoadedModel], str] | None:
    """The registered loader for ``NAME:SPEC`` and its spec, or None (a path or hub id)."""
    global _ENTRY_POINTS_READ
    prefix, sep, spec = name.partition(":")
    if not sep or len(prefix) < 2 or "/" in prefix or "\\" in prefix:  # not C:\..., not a path
        return None
    if not _ENTRY_POINTS_READ:
        from importlib.metadata import entry_points

        _ENTRY_POINTS_READ = True
        for point in entry_points(group=MODEL_SOURCES_GROUP):
            if point.name not in MODEL_SOURCES:
                MODEL_SOURCES.add(point.name, point.load())
    loader = MODEL_SOURCES.get(prefix)
    return (loader, spec) if loader is not None else None


def weights_fingerprint(folder: Path, edge: int = 1 << 20) -> str:
    """What identifies a local model folder's weights, cheaply: sha256 over config.json and each weight
    file's name, size, first and last MiB (a retrained model saved to the same path gets a new one, so a
    resumed eval run cannot mix its answers with the old model's)."""
    import hashlib

    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as f:
            digest.update(f.read(edge))
            if size > edge:
                f.seek(max(edge, size - edge))
                digest.update(f.read(edge))
    return digest.hexdigest()[:16]


QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
VEA_MAX_PIXELS = 512 * 512  # ZhiningLiu1998/VEA c03e995: max_pixels passed to every processor it builds


def apply_max_pixels(loaded: LoadedModel, max_pixels: int | str | None = "preset") -> LoadedModel:
    """Cap a Qwen-family processor's pixel budget (see :func:`load_model`); recorded in ``info``."""
    if max_pixels == "preset":
        from .presets import preset_layers

        qwen_preset = loaded.family in QWEN_FAMILIES and preset_layers(loaded.name) is not None
        max_pixels = VEA_MAX_PIXELS if qwen_preset else None
    if max_pixels is None:
        return loaded
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ConfigError(
            f"max_pixels must be a positive number of pixels, 'preset' or None; got {max_pixels!r}"
        )
    if loaded.family not in QWEN_FAMILIES:
        raise ConfigError(f"max_pixels applies to Qwen2-VL / Qwen2.5-VL processors, not to {loaded.family}")
    image_processor = loaded.processor.image_processor
    size = getattr(image_processor, "size", None)
    low = size.get("shortest_edge") if size is not None else None
    low = low if low is not None else getattr(image_processor, "min_pixels", None)
    if low is not None and max_pixels < low:
        raise ConfigError(f"max_pixels {max_pixels} is below the processor's minimum of {low} pixels")
    if isinstance(size, dict) or size is None:
        image_processor.size = {**(size or {}), "longest_edge": max_pixels}
    else:  # transformers' SizeDict: a copy with the new budget, same type
        capped = copy.copy(size)
        capped.longest_edge = max_pixels
        image_processor.size = capped
    if getattr(image_processor, "max_pixels", None) is not None:
        image_processor.max_pixels = max_pixels
    loaded.info["max_pixels"] = max_pixels
    return loaded


def load_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image or a file path; :class:`ImageError` names what is wrong."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"image path is a directory, not an image file: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"cannot decode image {path}: {err}") from err


@dataclass
class PreparedBatch:
    """Model inputs for a batch plus what the methods need beside them."""

    inputs: dict[str, torch.Tensor]
    prompts: list[str]
    images: list[list[Image.Image]]
    questions: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the user texts the prompts were built from

    @property
    def original_sizes(self) -> list[list[tuple[int, int]]]:
        """Per sample, per image: (width, height) of the original image."""
        return [[img.size for img in imgs] for imgs in self.images]

    def __len__(self) -> int:
        return len(self.prompts)


def build_prompt(processor: Any, question: str, num_images: int = 1) -> str:
    """The model's chat-template prompt for ``num_images`` images followed by ``question``."""
    template = getattr(processor, "chat_template", None)
    if not template:
        raise SeesayError(
            f"{type(processor).__name__} has no chat template: "
            "pass prompts with the image placeholder yourself"
        )
    content: list[dict[str, str]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": question})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def build_inputs(
    loaded: LoadedModel,
    images: Sequence[ImageLike] | Sequence[Sequence[ImageLike]],
    questions: Sequence[str] | str,
    *,
    prompts: Sequence[str] | None = None,
) -> PreparedBatch:
    """Left-padded model inputs for one image (or a list of images) per question.

    ``prompts`` replaces the chat template with ready prompts containing the image placeholder.
    """
    if isinstance(questions, str):
        questions = [questions]
    per_sample: list[list[Image.Image]] = []
    if len(images) != len(questions):
        raise SeesayError(f"got {len(images)} images for {len(questions)} questions")
    for item in images:
        group = item if isinstance(item, list | tuple) else [item]
        per_sample.append([load_image(x) for x in group])
    processor = loaded.processor
    if prompts is None:
        prompts = [
            build_prompt(processor, q, len(imgs)) for q, imgs in zip(questions, per_sample, strict=True)
        ]
    placeholder = getattr(processor, "boi_token", None) or getattr(processor, "image_token", None)
    if placeholder:
        for i, prompt in enumerate(prompts):
            if placeholder not in prompt:
                raise NoImageTokensError(
                    f"prompt {i} has no image placeholder {placeholder!r}: the model would see no image"
                )
    tokenizer = getattr(processor, "tokenizer", processor)
    previous_side = getattr(tokenizer, "padding_side", "left")
    tokenizer.padding_side = "left"
    try:
        batch = processor(images=per_sample, text=list(prompts), return_tensors="pt", padding=True)
    except (ValueError, TypeError) as err:
        raise SeesayError(f"{type(processor).__name__} rejected the inputs: {_one_line(err)}") from err
    finally:
        tokenizer.padding_side = previous_side
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    loaded.adapter.check_image_tokens(inputs["input_ids"])
    device = loaded.device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.model.dtype)
    return PreparedBatch(
        inputs=inputs,
        prompts=list(prompts),
        images=per_sample,
        questions=list(questions),
        texts=list(questions),
    )
