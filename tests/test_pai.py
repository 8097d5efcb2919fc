"""PAI: identity at strength zero on all six families, the amplification equal to eager attention with
the edit written as PAI's code writes it (an independent attention function under ``generate()``), the
text-only branch and the guided scores against direct computations, batching, ``seesay ask``."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.engine.variants import text_only
from seesay.errors import ConfigError
from seesay.methods import PAI, PAIConfig
from seesay.methods.pai import TEXT_ONLY, guided_scores
from tests.conftest import QUESTIONS, images, loaded_tiny
from tests.helpers import assert_batch_equals_alone

SETTINGS = GenerationSettings(max_new_tokens=5)


def test_pai_at_strength_zero_is_plain_greedy(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    out = PAI(PAIConfig(alpha=0.0, gamma=1.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    assert out.forward_passes == out.new_tokens.shape[1]  # no text-only branch at gamma 1


def _pai_eager(alpha: float, layers: range, image_positions: torch.Tensor):
    """Eager attention as PAI's attention.py computes it: scores + mask, clamp, then on the last query row
    a <- a + alpha |a| over the image keys, float32 softmax, times V."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        weights = torch.matmul(query, key.transpose(2, 3)) * scale
        if attention_mask is not None:
            weights = weights + attention_mask[:, :, :, : key.shape[-2]]
            weights = torch.max(weights, torch.tensor(torch.finfo(weights.dtype).min))
        if module.layer_idx in layers:
            k = key.shape[2]
            img = torch.zeros(query.shape[0], k, dtype=torch.bool)
            n = min(k, image_positions.shape[1])
            img[:, :n] = image_positions[:, :n]
            last = weights[:, :, -1, :]
            weights = weights.clone()
            weights[:, :, -1, :] = torch.where(img[:, None, :], last + alpha * last.abs(), last)
        probs = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs

    return attention


def test_amplification_equals_eager_attention_with_pais_edit():
    """PAI (no guidance) through the tap on sdpa, step by step with its KV cache, against
    ``generate()`` with an eager attention function that applies PAI's edit (written independently,
    like attention.py): the same tokens and logits at every step; and the edit changes the logits."""
    loaded = loaded_tiny("llava")
    model = loaded.model
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    config = PAIConfig(alpha=20.0, gamma=1.0, start_layer=1)  # large: tiny random scores are near 0
    plan = PAI(config).plan(loaded, batch)
    seen: list[torch.Tensor] = []

    def spy(state):
        seen.append(state.logits)
        return state.logits

    steps = 4
    settings = GenerationSettings(max_new_tokens=steps, eos_token_id=[])
    ours = decode(model, batch.inputs, adapter=loaded.adapter, settings=settings, hook=spy, tap=plan.tap)
    image = loaded.adapter.image_mask(batch.inputs["input_ids"])
    name = "seesay_test_pai_eager"
    AttentionInterface.register(name, _pai_eager(20.0, range(1, loaded.adapter.num_layers), image))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    model.set_attn_implementation({"text_config": name})
    try:
        ref = model.generate(
            **batch.inputs, max_new_tokens=steps, do_sample=False, eos_token_id=None,
            output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert torch.equal(ours.sequences, ref.sequences)
    for t, logits in enumerate(ref.logits):
        assert (seen[t] - logits.float()).abs().max().item() <= 1e-4, t
    plain = decode(model, batch.inputs, adapter=loaded.adapter, settings=settings, hook=lambda s: s.logits)
    assert plain.sequences.shape == ours.sequences.shape
    with torch.no_grad():
        base_logits = model(**batch.inputs).logits[:, -1].float()
    assert (seen[0] - base_logits).abs().max().item() > 1e-3  # the amplification did something


def test_text_only_branch_and_guided_scores_equal_a_direct_computation():
    """The text-only branch = the prompt with its image tokens removed (no pixels); every step's scores
    = gamma (s - u) + u on the plausible set, with u from a full forward of that prompt + tokens so far."""
    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    tokenizer = loaded.processor.tokenizer
    inputs = text_only(loaded.adapter, batch.inputs, tokenizer.pad_token_id)
    assert "pixel_values" not in inputs and not loaded.adapter.image_mask(inputs["input_ids"]).any()
    for b in range(2):  # each row: the prompt's non-image tokens, in order, left padded
        kept = batch.inputs["input_ids"][b][~loaded.adapter.image_mask(batch.inputs["input_ids"])[b]
                                            & (batch.inputs["attention_mask"][b] > 0)]  # fmt: skip
        row = inputs["input_ids"][b][inputs["attention_mask"][b] > 0]
        assert torch.equal(row, kept)
    config = PAIConfig(alpha=0.0, gamma=2.0, beta=0.2)
    plan = PAI(config).plan(loaded, batch)
    assert [b.name for b in plan.branches] == [TEXT_ONLY] and plan.tap is None
    seen = []

    def spy(state):
        result = plan.hook(state)
        seen.append((result.scores, state.logits))
        return result

    out = decode(loaded.model, batch.inputs, adapter=loaded.adapter, hook=spy, branches=plan.branches,
                 settings=GenerationSettings(max_new_tokens=3, eos_token_id=[]))  # fmt: skip
    for t, (scores, image_logits) in enumerate(seen):
        new = out.sequences[:, batch.inputs["input_ids"].shape[1] : batch.inputs["input_ids"].shape[1] + t]
        ids = torch.cat([inputs["input_ids"], new], dim=1)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(new)], dim=1)
        with torch.no_grad():
            text = loaded.model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
        s, u = torch.log_softmax(image_logits, -1), torch.log_softmax(text, -1)
        want = torch.where(s >= math.log(0.2) + s.max(-1, keepdim=True).values, 2.0 * (s - u) + u, -math.inf)
        assert torch.allclose(scores, want, atol=1e-4), t
    at_one = guided_scores(image_logits, text, 1.0, 0.5)  # gamma 1: s itself on the plausible set
    s = torch.log_softmax(image_logits, -1)
    assert torch.allclose(at_one[at_one.isfinite()], s[at_one.isfinite()], atol=1e-6)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "gemma3"])
def test_pai_batch_equals_one_at_a_time(family):
    assert_batch_equals_alone(family, "pai", SETTINGS)


def test_pai_config_and_cli(tmp_path, capsys):
    from seesay.cli import main

    for bad in ({"alpha": -1}, {"gamma": 0.5}, {"start_layer": 3, "end_layer": 2}, {"beta": 0}):
        with pytest.raises(ConfigError):
            PAIConfig(**bad)
    tiny = loaded_tiny("llava")
    with pytest.raises(ConfigError, match="past the model's"):
        PAI(PAIConfig(start_layer=50)).plan(tiny, build_inputs(tiny, images(1), QUESTIONS[:1]))
    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:llava", "--image", str(image), "--question", "what ?",
            "--method", "pai", "--set", "gamma=1.5", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "pai (llava)" in capsys.readouterr().out


def test_boost_weights_are_built_once_per_key_range_of_a_step():
    """A hybrid model's sliding-window and full layers alternate two key ranges within a step: each is
    built once and reused (it was rebuilt at every switch); a later step's ranges replace them."""
    from seesay.engine.tap import LayerScores
    from seesay.methods.pai import ImageAttentionBoost

    image = torch.zeros(2, 12, dtype=torch.bool)
    image[:, 2:7] = True
    boost = ImageAttentionBoost(0.2, image)
    full, window = torch.randn(2, 4, 1, 12), torch.randn(2, 4, 1, 6)  # keys 0..11 and 6..11
    first = boost._key_weights(full, 0), boost._key_weights(window, 6)
    for _ in range(3):  # the step's layers alternate: the same tensors come back
        assert boost._key_weights(full, 0) is first[0] and boost._key_weights(window, 6) is first[1]
    assert torch.equal(first[0][0, 0, 0], 0.2 * image[0].float())
    assert torch.equal(first[1][0, 0, 0], 0.2 * image[0, 6:].float())
    change = boost(LayerScores(0, full, None, 0))
    assert torch.allclose(change.bias, full.abs() * 0.2 * image[:, None, None, :].float())
    for k in range(13, 13 + ImageAttentionBoost.MAX_RANGES):  # later steps: the cache stays bounded
        boost._key_weights(torch.randn(2, 4, 1, k), 0)
        assert len(boost._weights) <= ImageAttentionBoost.MAX_RANGES
