"""The decode loop equals generate() (greedy, batched, left padded) and its settings behave."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from seesay.engine.decoding import GenerationSettings, StepState, decode
from seesay.errors import ConfigError


def test_greedy_equals_generate(loaded, batch3):
    ref = loaded.model.generate(**batch3.inputs, max_new_tokens=8, do_sample=False)
    out = decode(
        loaded.model, batch3.inputs, adapter=loaded.adapter, settings=GenerationSettings(max_new_tokens=8)
    )
    assert torch.equal(ref, out.sequences)
    assert out.forward_passes <= 8


def test_batch_equals_one_at_a_time(loaded, batch3):
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images

    settings = GenerationSettings(max_new_tokens=6)
    batched = decode(loaded.model, batch3.inputs, adapter=loaded.adapter, settings=settings).new_tokens
    imgs = images(3)
    for i in range(3):
        single = build_inputs(loaded, [imgs[i]], [QUESTIONS[i]])
        alone = decode(loaded.model, single.inputs, adapter=loaded.adapter, settings=settings).new_tokens
        n = alone.shape[1]
        assert torch.equal(batched[i, :n], alone[0])


def test_repetition_penalty_equals_generate(loaded, batch3):
    ref = loaded.model.generate(**batch3.inputs, max_new_tokens=6, do_sample=False, repetition_penalty=1.3)
    settings = GenerationSettings(max_new_tokens=6, repetition_penalty=1.3)
    out = decode(loaded.model, batch3.inputs, adapter=loaded.adapter, settings=settings)
    assert torch.equal(ref, out.sequences)


def test_sampling_is_seeded():
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    settings = GenerationSettings(
        max_new_tokens=8, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=7
    )
    a = decode(loaded.model, inputs, adapter=loaded.adapter, settings=settings).sequences
    b = decode(loaded.model, inputs, adapter=loaded.adapter, settings=settings).sequences
    greedy = decode(
        loaded.model, inputs, adapter=loaded.adapter, settings=GenerationSettings(max_new_tokens=8)
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, greedy.sequences)


def test_hook_sees_state_and_steers():
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    forced = 5
    seen: list[StepState] = []

    def hook(state: StepState) -> torch.Tensor:
        seen.append(state)
        assert state.logits.dtype == torch.float32 and state.logits.shape[0] == 2
        assert state.hidden is not None and set(state.hidden.states) == {0}
        scores = torch.full_like(state.logits, -1e9)
        scores[:, forced] = 0
        return scores

    settings = GenerationSettings(max_new_tokens=4, eos_token_id=[])
    out = decode(
        loaded.model, inputs, adapter=loaded.adapter, settings=settings, hook=hook, hidden_layers=[0]
    )
    assert [s.step for s in seen] == [0, 1, 2, 3]
    assert (out.new_tokens == forced).all()


def test_eos_and_stopping_criteria(loaded, batch3):
    eos = int(
        decode(
            loaded.model, batch3.inputs, adapter=loaded.adapter, settings=GenerationSettings(max_new_tokens=1)
        ).new_tokens[0, 0]
    )
    out = decode(
        loaded.model,
        batch3.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=5, eos_token_id=eos, pad_token_id=0),
    )
    first = out.new_tokens[0]
    assert first[0] == eos and (first[1:] == 0).all()  # finished rows get pad tokens

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full(
                (input_ids.shape[0],), input_ids.shape[1] >= batch3.inputs["input_ids"].shape[1] + 2
            )

    out = decode(
        loaded.model,
        batch3.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=9),
        stopping_criteria=StoppingCriteriaList([StopAfter()]),
    )
    assert out.new_tokens.shape[1] == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"max_new_tokens": 0}, {"temperature": 0}, {"top_p": 0}, {"top_k": -1}, {"repetition_penalty": 0}],
)
def test_settings_validation(kwargs):
    with pytest.raises(ConfigError):
        GenerationSettings(**kwargs)


def test_which_branches_join_the_main_forward(loaded, batch3):
    """A branch merges when its per-token tensors may differ in length and its image tensors match; not
    another image size, nor a text-only branch (padded to the image prompt's length its rows would cost
    as much as the image rows: measured in docs/methods/m3id.md)."""
    from seesay.engine.decoding import _mergeable
    from seesay.engine.variants import insert_before_question, text_only, with_prompts

    inputs, adapter = batch3.inputs, loaded.adapter
    pad = loaded.processor.tokenizer.pad_token_id
    assert _mergeable(inputs, dict(inputs))
    longer = with_prompts(loaded, batch3, insert_before_question(batch3, "You may be wrong."))  # ICD's kind
    assert longer["input_ids"].shape[1] > inputs["input_ids"].shape[1] and _mergeable(inputs, longer)
    assert not _mergeable(inputs, text_only(adapter, inputs, pad))
    smaller = {**inputs, "pixel_values": inputs["pixel_values"][..., :-1]}
    assert not _mergeable(inputs, smaller)
