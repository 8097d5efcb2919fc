"""Chunked prefill (a branch's prompt in pieces against its growing KV cache) equals the one pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from seesay.engine import decoding
from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.prefill import chunk_bounds, prefill
from seesay.errors import ConfigError
from tests.helpers import decode_with_other_branch


def _max_cache_diff(a, b) -> float:
    diffs = [
        max((x.keys - y.keys).abs().max().item(), (x.values - y.values).abs().max().item())
        for x, y in zip(a.layers, b.layers, strict=True)
        if x.keys is not None
    ]
    assert diffs, "no cache layer was filled"
    return max(diffs)


CASES = [(5, "one image"), (17, "one image"), (3, "uneven"), (7, "uneven"), (3, "text")]


@pytest.mark.parametrize(("chunk_size", "variant"), CASES)
def test_chunked_prefill_equals_one_pass(loaded, batch3, chunk_size, variant):
    """Every family, a left-padded batch of three prompts with images (one each, or two, one and two:
    feature rows are handed out in placeholder order across samples), or the text-only prompts PAI and
    M3ID contrast with: the last hidden state, every layer's keys and values and the position state agree
    with one pass; the prompt really was split."""
    from seesay.engine.loading import build_inputs
    from seesay.engine.variants import text_only_for
    from tests.conftest import QUESTIONS, images

    inputs = batch3.inputs
    if variant == "uneven":
        ims = images(5)
        inputs = build_inputs(loaded, [ims[:2], ims[2:3], ims[3:]], QUESTIONS).inputs
    elif variant == "text":
        inputs = text_only_for(loaded, batch3)
    last, cache, state, calls = prefill(loaded.adapter, inputs)
    assert calls == 1
    got_last, got_cache, got_state, got_calls = prefill(loaded.adapter, inputs, chunk_size)
    length = inputs["input_ids"].shape[1]
    assert got_calls >= 2 and got_calls >= length // (chunk_size + 8)  # Gemma3 may stretch a chunk
    assert (got_last - last).abs().max().item() <= 1e-5
    assert _max_cache_diff(got_cache, cache) <= 1e-5
    assert got_cache.get_seq_length() == cache.get_seq_length() == length
    assert state.keys() == got_state.keys()
    for key in state:
        assert torch.equal(state[key], got_state[key])


def test_one_pass_when_the_prompt_fits_or_cannot_be_split(loaded, batch3):
    inputs = batch3.inputs
    length = inputs["input_ids"].shape[1]
    assert prefill(loaded.adapter, inputs, length)[3] == 1
    assert prefill(loaded.adapter, inputs, None)[3] == 1
    odd = {**inputs, "unknown_per_sample": torch.zeros(inputs["input_ids"].shape[0], 3)}
    assert prefill(loaded.adapter, odd, 5)[3] == 1  # a tensor it cannot split by position: one pass


@dataclass
class _WithDeepstack(BaseModelOutputWithPooling):
    """An encoder output with a second field the language model reads (Qwen3-VL's deepstack)."""

    deepstack_features: list | None = None


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_one_pass_when_the_image_features_cannot_be_split(family, monkeypatch):
    """An encoder output with a field besides the pooled rows that chunks would have to split: no
    chunks, the one pass's result."""
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny(family)
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    last, _, _, _ = prefill(loaded.adapter, inputs)
    base = loaded.adapter.base_model
    encode = base.get_image_features

    def with_deepstack(*args, **kwargs):
        out = encode(*args, **kwargs)
        return _WithDeepstack(**out, deepstack_features=[out["pooler_output"]])

    monkeypatch.setattr(base, "get_image_features", with_deepstack)
    got_last, _, _, calls = prefill(loaded.adapter, inputs, 3)
    assert calls == 1 and torch.equal(got_last, last)


def test_bidirectional_images_stay_in_one_chunk(loaded_family_gemma3):
    """Gemma3's image tokens attend to their whole image: a boundary inside an image would change the
    keys (checked by splitting there anyway), so none is placed there."""
    loaded, inputs = loaded_family_gemma3
    adapter = loaded.adapter
    image = adapter.image_mask(inputs["input_ids"])
    bounds = chunk_bounds(image, 5, keep_images_whole=True)
    inside = (image[:, :-1] & image[:, 1:]).any(0)
    assert not any(bool(inside[b - 1]) for b in bounds[1:-1])
    assert not adapter.causal_image_attention
    ref_last, _, _, _ = prefill(adapter, inputs)
    split = chunk_bounds(image, 5)
    assert any(bool(inside[b - 1]) for b in split[1:-1]), "the naive split must cut an image for this check"
    try:
        type(adapter).causal_image_attention = True
        cut_last, _, _, _ = prefill(adapter, inputs, 5)
    finally:
        type(adapter).causal_image_attention = False
    assert (cut_last - ref_last).abs().max().item() > 1e-3


@pytest.fixture
def loaded_family_gemma3():
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("gemma3")
    return loaded, build_inputs(loaded, images(3), QUESTIONS).inputs


@pytest.mark.parametrize(
    ("mask", "size", "whole", "expected"),
    [
        ([0, 0, 0, 0, 0, 0, 0], 3, False, [0, 3, 6, 7]),
        ([0, 1, 1, 1, 1, 0, 0], 3, False, [0, 3, 6, 7]),
        ([0, 1, 1, 1, 1, 0, 0], 3, True, [0, 1, 5, 7]),  # before the image, then past it (longer than 3)
        ([0, 0, 1, 1, 0, 0, 0], 3, True, [0, 2, 5, 7]),
        ([1, 1, 1, 1, 1, 1, 1], 3, True, [0, 7]),
    ],
)
def test_chunk_bounds(mask, size, whole, expected):
    image = torch.tensor([mask], dtype=torch.bool)
    assert chunk_bounds(image, size, keep_images_whole=whole) == expected


def test_chunk_bounds_keep_every_rows_images_whole():
    image = torch.tensor([[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]], dtype=torch.bool)
    assert chunk_bounds(image, 2, keep_images_whole=True) == [0, 1, 3, 5, 6]


@pytest.mark.parametrize("separate", [False, True], ids=["merged", "separate"])
def test_branch_prefill_chunks_keep_the_decode(loaded, batch3, separate):
    """A branch prefilled in chunks (merged into the main forward, or its own forward when a hidden
    capture keeps it apart) gives the same tokens and, within 1e-5, the same hidden states at every
    step as its one-pass prefill; the batch's own prompt is never split."""

    def run(chunk: int | None):
        settings = GenerationSettings(max_new_tokens=4, eos_token_id=[], branch_prefill_chunk_size=chunk)
        return decode_with_other_branch(loaded, batch3, settings, hidden_layers=(0,) if separate else ())

    whole, whole_seen = run(None)
    chunked, chunked_seen = run(5)
    steps = whole.new_tokens.shape[1]
    assert whole.forward_calls == (2 * steps if separate else steps + 1)
    assert chunked.forward_calls > whole.forward_calls  # the branch's prompt was split
    assert chunked.forward_passes == whole.forward_passes
    assert torch.equal(whole.sequences, chunked.sequences)
    for (main_a, other_a), (main_b, other_b) in zip(whole_seen, chunked_seen, strict=True):
        assert torch.equal(main_a, main_b)  # the batch's rows: one pass either way
        assert (other_a - other_b).abs().max().item() <= 1e-5


def test_a_tapped_branch_is_prefilled_in_one_pass(loaded, batch3):
    """The tap reads a tapped branch's passes; a chunk would look like a pass of its own, so none."""
    from seesay.engine.tap import AttentionTap

    branch = decoding.Branch("again", batch3.inputs, tapped=True)
    settings = GenerationSettings(max_new_tokens=3, eos_token_id=[], branch_prefill_chunk_size=5)
    out = decode(
        loaded.model, batch3.inputs, adapter=loaded.adapter, settings=settings, tap=AttentionTap(),
        branches=[branch],
    )  # fmt: skip
    assert out.forward_calls == 2 * out.new_tokens.shape[1]


def test_chunk_size_is_validated():
    with pytest.raises(ConfigError, match="branch_prefill_chunk_size"):
        GenerationSettings(branch_prefill_chunk_size=0)
    assert GenerationSettings(branch_prefill_chunk_size=None).branch_prefill_chunk_size is None
