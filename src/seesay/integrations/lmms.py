"""seesay as an lmms-eval model (``lmms-eval --model seesay``), registered through lmms-eval's
entry-point group ``lmms_eval.models`` (no fork, no plugin variable)::

    lmms-eval --model seesay --model_args pretrained=PATH,method=dualpd,rho=0.2 --tasks pope

``model_args``: ``pretrained`` (a model path or id, as ``seesay --model``), ``method`` (a seesay method,
default ``base``), ``dtype``, ``device_map``, ``max_pixels``, ``trust_remote_code``; every other key is
an option of the method's config (validated as ``--set``). ``--batch_size N`` gives left-padded batches
of N questions (the same tokens as one at a time); ``--device`` the device.

lmms-eval owns the rest: it shards the documents over ranks (this model never shards again), writes
the prompts (its ``doc_to_text``, passed to the model's chat template unchanged, no seesay suffix), the
stop strings and ``max_new_tokens`` (its ``generation_kwargs``). ``generate_until`` only: seesay's
methods change what is generated, so ``loglikelihood`` tasks are refused in one line.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms
from PIL import Image

from ..engine.decoding import GenerationSettings, eos_token_ids
from ..engine.loading import build_inputs, load_model
from ..errors import ConfigError, SeesayError
from ..methods import get_method

MODEL_ID = "seesay"
# lmms-eval's HF models' default when a task gives no max_new_tokens (lmms_eval/models/simple/llava_hf.py).
DEFAULT_MAX_NEW_TOKENS = 1024


def manifest() -> Any:
    """The entry point lmms-eval's model registry loads (group ``lmms_eval.models``)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.SeesayLMM")


def _device(device: str | None) -> str:
    """``--device`` as lmms-eval passes it; ``cuda`` becomes this rank's GPU under several processes."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device here (use --device cpu)")
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"
    return device


def generation_settings(gen_kwargs: dict[str, Any]) -> tuple[GenerationSettings, list[str]]:
    """lmms-eval's ``generation_kwargs`` -> seesay's settings and the stop strings (``until``).

    ``temperature`` 0 (or ``do_sample`` false) is greedy decoding; ``num_beams`` > 1 is refused (seesay's
    methods edit one greedy or sampled path)."""
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None) or []
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, list):
        raise ConfigError(f"generation_kwargs until must be a string or a list, got {type(until).__name__}")
    if int(kwargs.get("num_beams") or 1) > 1:
        raise ConfigError("seesay decodes one path per question: num_beams > 1 is not supported")
    temperature = float(kwargs.get("temperature") or 0.0)
    sample = bool(kwargs.get("do_sample", temperature > 0)) and temperature > 0
    settings = GenerationSettings(
        max_new_tokens=int(kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        do_sample=sample,
        temperature=temperature if sample else 1.0,
        top_p=float(kwargs.get("top_p") or 1.0) if sample else 1.0,
    )
    return settings, [s for s in until if s]


def cut_at_stops(text: str, until: list[str]) -> str:
    """``text`` up to the first stop string (lmms-eval's ``until``)."""
    for stop in until:
        text = text.split(stop, 1)[0]
    return text


class SeesayLMM(lmms):
    """A seesay model and method behind lmms-eval's ``lmms`` interface (``generate_until``, batched)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        method: str = "base",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        device_map: str | None = None,
        max_pixels: int | str | None = "preset",
        trust_remote_code: bool = False,
        **method_options: Any,
    ) -> None:
        super().__init__()
        try:
            self.batch_size_per_gpu = int(batch_size)
        except (TypeError, ValueError):
            raise ConfigError(f"--batch_size {batch_size}: seesay needs a number (no 'auto')") from None
        if self.batch_size_per_gpu < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1 and device_map:
            raise ConfigError(
                f"device_map={device_map} in a {world}-process run would put {world} copies of the model "
                "on the same GPUs; leave it out (each rank gets its own GPU)"
            )
        self.runner = get_method(str(method), **method_options)  # validated before the model loads
        self.loaded = load_model(
            str(pretrained),
            dtype=dtype,
            device=None if device_map else _device(device),
            device_map=device_map,
            trust_remote_code=bool(trust_remote_code),
            max_pixels=None if str(max_pixels).lower() == "none" else max_pixels,
        )
        self.tokenizer = getattr(self.loaded.processor, "tokenizer", self.loaded.processor)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise SeesayError(
            "seesay's lmms-eval model generates text only (output_type generate_until): loglikelihood "
            "tasks (multiple-choice scoring) are not supported"
        )

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise SeesayError("seesay's lmms-eval model answers single-round generate_until tasks only")

    def _visuals(self, doc_to_visual: Any, task: str, split: str, doc_id: int) -> list[Image.Image]:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = visuals if isinstance(visuals, list | tuple) else [visuals]
        if not visuals or not all(isinstance(v, Image.Image) for v in visuals):
            kinds = ", ".join(sorted({type(v).__name__ for v in visuals})) or "none"
            raise SeesayError(
                f"{task} document {doc_id}: seesay's methods need one or more images per question, "
                f"got {kinds}"
            )
        return [v.convert("RGB") for v in visuals]

    def generate_until(self, requests: list[Any]) -> list[GenerationResult]:
        """Answers for lmms-eval's requests, ``batch_size`` at a time (grouped by generation kwargs, the
        longest prompts first), cut at the task's stop strings, in the requests' order, with their token
        counts (prompt tokens with the image's, generated tokens up to EOS)."""
        from tqdm import tqdm

        collator = lmms_utils.Collator(
            [req.args for req in requests], lambda x: (-len(x[0]), x[0]), grouping=True
        )
        results: list[GenerationResult] = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="seesay " + self.runner.name)
        for chunk in collator.get_batched(n=self.batch_size_per_gpu, batch_fn=None):
            contexts, all_kwargs, doc_to_visual, doc_ids, tasks, splits = zip(*chunk, strict=True)
            settings, until = generation_settings(all_kwargs[0])  # one group: the same kwargs
            images = [
                self._visuals(fn, task, split, doc_id)
                for fn, task, split, doc_id in zip(doc_to_visual, tasks, splits, doc_ids, strict=True)
            ]
            batch = build_inputs(self.loaded, images, list(contexts))
            out = self.runner.generate(self.loaded, batch, settings)
            eos = eos_token_ids(settings, self.loaded.model)
            prompt_lengths = batch.inputs["attention_mask"].sum(dim=1).tolist()
            for i, (context, kwargs) in enumerate(zip(contexts, all_kwargs, strict=True)):
                ids, _ = out.sample(i, eos)
                text = cut_at_stops(self.tokenizer.decode(ids, skip_special_tokens=True), until).strip()
                counts = TokenCounts(input_tokens=int(prompt_lengths[i]), output_tokens=len(ids))
                results.append(GenerationResult(text=text, token_counts=counts))
                self.cache_hook.add_partial("generate_until", (context, kwargs), text)
            bar.update(len(chunk))
        bar.close()
        return collator.get_original(results)
