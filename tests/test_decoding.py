"""The decode loop equals generate() (greedy, batched, left padded) and its settings behave."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from seesay.engine.decoding import GenerationSettings, StepState, decode
from seesay.errors import ConfigError
from tests.helpers import decode_with_other_branch


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


def test_joined_prefill_equals_one_batch(loaded, batch3, monkeypatch):
    """A merged branch (ICD's kind: a longer prompt, left padded) prefills after the batch, one member at
    a time, and their KV caches are joined: every step's hidden states and tokens equal those of the
    rows prefilled as one batch, on every family (Gemma3's sliding-window layers included)."""
    import seesay.engine.decoding as decoding

    def run():
        settings = GenerationSettings(max_new_tokens=5, eos_token_id=[])
        return decode_with_other_branch(loaded, batch3, settings)

    joined, joined_seen = run()
    steps = joined.new_tokens.shape[1]
    assert joined.forward_calls == steps + 1 and joined.forward_passes == 2 * steps
    monkeypatch.setattr(decoding, "join_caches", lambda caches: False)
    one_batch, one_seen = run()
    # the members' prefills, then the rows again as one batch (2B rows more)
    assert one_batch.forward_calls == steps + 2 and one_batch.forward_passes == 2 * steps + 2
    assert torch.equal(joined.sequences, one_batch.sequences)
    for (main_a, other_a), (main_b, other_b) in zip(joined_seen, one_seen, strict=True):
        assert torch.allclose(main_a, main_b, atol=1e-5) and torch.allclose(other_a, other_b, atol=1e-5)


def test_join_caches_refuses_what_it_does_not_know():
    """Caches of other lengths, or not a DynamicCache: False, and the caches are left as they were."""
    from transformers import DynamicCache

    from seesay.engine.decoding import join_caches

    a, b = DynamicCache(), DynamicCache()
    a.update(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4), 0)
    b.update(torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4), 0)
    assert not join_caches([a, b]) and a.layers[0].keys.shape == (1, 2, 3, 4)
    assert not join_caches([a, object()])
    c = DynamicCache()
    c.update(torch.zeros(2, 2, 3, 4), torch.zeros(2, 2, 3, 4), 0)
    assert join_caches([a, c]) and a.layers[0].keys.shape == (3, 2, 3, 4)
    assert torch.equal(a.layers[0].keys[0], torch.ones(2, 3, 4)) and c.layers[0].keys is None
