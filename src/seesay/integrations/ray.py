"""seesay as a Ray Data ``map_batches`` callable: one model per actor, a left-padded batch per call::

    import ray
    from seesay.integrations.ray import SeesayPredictor

    ds = ray.data.read_json("questions.jsonl")        # columns: image (a path), question
    answers = ds.map_batches(
        SeesayPredictor,
        fn_constructor_kwargs={"model": "PATH", "method": "dualpd", "options": {"rho": 0.2}},
        batch_size=16, concurrency=4, num_gpus=1,      # 4 actors, one GPU each
    )
    answers.write_json("answers/")

Each actor loads the model once; each call answers its batch with :func:`seesay.ask_batch` (the same
tokens as one question at a time) and adds the column ``answer`` (plus ``method``). Ray shards, retries
and schedules; seesay adds no sharding of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..api import ask_batch
from ..engine.decoding import GenerationSettings
from ..engine.loading import load_model
from ..methods import get_method


class SeesayPredictor:
    """``__init__`` loads ``model`` and validates the method; ``__call__`` answers a batch (a dict of
    columns ``image`` and ``question``, as Ray Data passes with ``batch_format="numpy"``)."""

    def __init__(
        self,
        model: str,
        method: str = "base",
        options: dict[str, Any] | None = None,
        max_new_tokens: int = 32,
        image_column: str = "image",
        question_column: str = "question",
        **load_options: Any,
    ) -> None:
        self.runner = get_method(method, **(options or {}))
        self.loaded = load_model(model, **load_options)
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens)
        self.image_column, self.question_column = image_column, question_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [_image(x) for x in batch[self.image_column]]
        questions = [str(q) for q in batch[self.question_column]]
        answers = ask_batch(self.loaded, images, questions, method=self.runner, settings=self.settings)
        out = dict(batch)
        out["answer"] = np.array([a.text for a in answers], dtype=object)
        out["method"] = np.array([self.runner.name] * len(answers), dtype=object)
        return out


def _image(value: Any) -> Any:
    """A path (str), the image's bytes (Ray's ``read_images`` / parquet) or an HxWxC uint8 array."""
    import io

    from PIL import Image

    if isinstance(value, bytes | bytearray):
        return Image.open(io.BytesIO(value)).convert("RGB")
    if isinstance(value, np.ndarray) and value.ndim == 3:
        return Image.fromarray(value.astype(np.uint8)).convert("RGB")
    if isinstance(value, dict) and "bytes" in value:  # a HF-datasets image struct
        return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
    return str(value)
