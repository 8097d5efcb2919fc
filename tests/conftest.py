"""Shared fixtures: tiny random models of the six families, built offline once per session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

from seesay.engine.loading import LoadedModel, build_inputs  # noqa: E402
from seesay.testing.tiny import FAMILIES, build_tiny_vlm, tiny_image  # noqa: E402

QUESTIONS = ["what is the color of the cat ?", "how many dog ?", "is there a red circle in this image ?"]
IMAGE_SIZES = [(20, 36), (40, 24), (32, 32)]  # (width, height): tall, wide, square


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_vlms")


_CACHE: dict[str, LoadedModel] = {}


def loaded_tiny(family: str) -> LoadedModel:
    """The tiny model of ``family`` wrapped as a LoadedModel (built once per test session)."""
    if family not in _CACHE:
        from seesay.engine.adapters import get_adapter

        tiny = build_tiny_vlm(family)
        _CACHE[family] = LoadedModel(
            tiny.model, tiny.processor, get_adapter(tiny.model, tiny.processor), name=f"tiny-random:{family}"
        )
    return _CACHE[family]


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def loaded(family) -> LoadedModel:
    return loaded_tiny(family)


def images(n: int = 3, seed: int = 0):
    return [tiny_image(*IMAGE_SIZES[i % len(IMAGE_SIZES)], seed=seed + i) for i in range(n)]


@pytest.fixture
def batch3(loaded):
    """A left-padded batch of three prompts of different lengths with images of different shapes."""
    return build_inputs(loaded, images(3), QUESTIONS)
