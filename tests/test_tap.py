"""The attention tap: identical logits/tokens with the tap on, rows equal eager attention's rows."""

from __future__ import annotations

import copy

import pytest
import torch

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.tap import TAP_ATTENTION, AttentionTap, LayerScores, attention_tap


def _eager_attentions(model, inputs):
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    return out.attentions


def test_tap_keeps_logits_and_tokens(loaded, batch3):
    model, inputs = loaded.model, batch3.inputs
    with torch.no_grad():
        ref = model(**inputs).logits
        tap = AttentionTap(record="heads", record_score_norms=True)
        with attention_tap(model, tap) as active:
            got = model(**inputs).logits
            assert model.config.get_text_config()._attn_implementation == TAP_ATTENTION
        assert sorted(active.records) == list(range(loaded.adapter.num_layers))
    assert model.config.get_text_config()._attn_implementation == "sdpa"  # restored
    assert (ref - got).abs().max().item() <= 1e-5
    settings = GenerationSettings(max_new_tokens=6)
    plain = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    tapped = decode(model, inputs, adapter=loaded.adapter, settings=settings, tap=AttentionTap())
    assert torch.equal(plain, tapped.sequences)
    exact = decode(model, inputs, adapter=loaded.adapter, settings=settings, tap=AttentionTap(exact=True))
    assert torch.equal(plain, exact.sequences)


def test_decode_step_logits_match_sdpa(loaded, batch3):
    """At a cached decode step the tapped row's output comes from the explicit row: logits within 1e-5,
    and bit for bit with ``exact=True``."""
    model, inputs = loaded.model, batch3.inputs
    with torch.no_grad():
        first = model(**inputs, use_cache=True)
        nxt = first.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(nxt)], 1)
        state: dict = {}
        loaded.adapter.position_inputs(inputs, state)
        step = {"input_ids": nxt, "attention_mask": mask, **loaded.adapter.next_position_inputs(mask, state)}
        results = {}
        for name, tap in (("plain", None), ("tap", AttentionTap()), ("exact", AttentionTap(exact=True))):
            cache = copy.deepcopy(first.cache)
            if tap is None:
                results[name] = model(**step, cache=cache).logits
            else:
                with attention_tap(model, tap):
                    results[name] = model(**step, cache=cache).logits
    assert (results["tap"] - results["plain"]).abs().max().item() <= 1e-5
    assert torch.equal(results["exact"], results["plain"])


def test_tap_restores_implementation_on_error(loaded):
    model = loaded.model
    with pytest.raises(RuntimeError), attention_tap(model, AttentionTap()):
        raise RuntimeError("boom")
    assert model.config.get_text_config()._attn_implementation == "sdpa"


def test_prefill_rows_equal_eager(loaded, batch3):
    model, inputs = loaded.model, batch3.inputs
    eager = _eager_attentions(model, inputs)
    tap = AttentionTap(rows="all", record="heads")
    with torch.no_grad(), attention_tap(model, tap):
        model(**inputs)
    valid = inputs["attention_mask"].bool()[:, None, :, None]  # padded query rows are undefined
    for layer, ref in enumerate(eager):
        got = tap.records[layer].probs
        assert got.shape == ref.shape
        diff = (got - ref.float()).abs().masked_fill(~valid, 0).max().item()
        assert diff <= 1e-5, f"layer {layer}: {diff}"
    # The default "last" row and the "mean" reduction agree with the same rows.
    tap_last = AttentionTap(record="mean")
    with torch.no_grad(), attention_tap(model, tap_last):
        model(**inputs)
    for layer, ref in enumerate(eager):
        got = tap_last.records[layer].probs[:, 0, 0]
        assert (got - ref[:, :, -1].float().mean(1)).abs().max().item() <= 1e-5


def test_decode_rows_equal_eager(loaded, batch3):
    """Rows recorded at every cached decode step equal eager rows of the full sequence."""
    model, inputs = loaded.model, batch3.inputs
    n_new = 4
    tap = AttentionTap(record="heads", keep_history=True)
    out = decode(
        model, inputs, adapter=loaded.adapter, settings=GenerationSettings(max_new_tokens=n_new), tap=tap
    )
    tap.new_pass()
    seqs = out.sequences[:, :-1]  # the last token was never fed back
    full = dict(inputs)
    full["input_ids"] = seqs
    extra = seqs.shape[1] - inputs["input_ids"].shape[1]
    full["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(seqs[:, -extra:])], 1)
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in full:
            full[key] = torch.cat([full[key], torch.zeros_like(seqs[:, -extra:])], 1)
    eager = _eager_attentions(model, full)
    t0 = inputs["input_ids"].shape[1]
    assert len(tap.history) == n_new
    for step, records in enumerate(tap.history):
        q = t0 - 1 + step
        for layer, rec in records.items():
            k = rec.probs.shape[-1]
            ref = eager[layer][:, :, q, rec.key_offset : rec.key_offset + k].float()
            assert rec.key_offset + k == q + 1
            diff = (rec.probs[:, :, 0] - ref).abs().max().item()
            assert diff <= 1e-5, f"step {step} layer {layer}: {diff}"


def test_score_norms_match_direct_computation(loaded, batch3):
    model, inputs = loaded.model, batch3.inputs
    seen: dict[int, LayerScores] = {}

    def spy(scores: LayerScores):
        seen[scores.layer] = scores
        return None

    image_keys = loaded.adapter.image_mask(inputs["input_ids"])
    tap = AttentionTap(record="none", record_score_norms=True, head_scale=spy)
    tap_img = AttentionTap(record="none", record_score_norms=True, score_norm_keys=image_keys)
    with torch.no_grad():
        with attention_tap(model, tap):
            model(**inputs)
        with attention_tap(model, tap_img):
            model(**inputs)
    for layer, scores in seen.items():
        s = scores.scores[:, :, 0]
        assert scores.allowed is not None  # the batch is padded, so the mask is explicit
        allowed = scores.allowed.expand_as(scores.scores)[:, :, 0]
        direct = torch.sqrt((torch.where(allowed, s, 0.0) ** 2).sum(-1))
        assert torch.allclose(tap.records[layer].score_norms[:, :, 0], direct)
        direct_img = torch.sqrt((torch.where(allowed & image_keys[:, None], s, 0.0) ** 2).sum(-1))
        assert torch.allclose(tap_img.records[layer].score_norms[:, :, 0], direct_img)
        assert not torch.allclose(direct, direct_img)


@pytest.mark.parametrize("target", ["scores", "output"])
def test_head_scale_changes_only_chosen_heads(target):
    """Scaling head h of sample b changes only that head's output row, as the formula says."""
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    model = loaded.model
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    layer = 1
    captured = {}

    def grab(module, args, kwargs, output):
        captured["o_proj_in"] = args[0][:, -1].detach().clone()

    attn = loaded.adapter.layers[layer].self_attn
    gamma = torch.ones(2, loaded.adapter.num_heads)
    gamma[1, 2] = 0.5
    results = {}
    for name, scale in (("plain", None), ("scaled", {layer: gamma})):
        handle = attn.o_proj.register_forward_hook(grab, with_kwargs=True)
        try:
            with (
                torch.no_grad(),
                attention_tap(model, AttentionTap(layers=[layer], head_scale=scale, target=target)),
            ):
                model(**inputs)
        finally:
            handle.remove()
        results[name] = captured["o_proj_in"].reshape(2, loaded.adapter.num_heads, -1)
    diff = (results["plain"] - results["scaled"]).abs().amax(-1)  # [B, H]
    assert diff[1, 2] > 1e-6
    diff[1, 2] = 0
    assert diff.max().item() == 0.0  # all other heads and samples bit-identical
    if target == "output":
        assert torch.allclose(results["scaled"][1, 2], 0.5 * results["plain"][1, 2])


def _eager_with_bias(bias_by_layer):
    """A test-only attention function: transformers' eager attention, with ``bias_by_layer[layer]``
    ([B, H, 1, K]) added to the last query row's pre-softmax scores through the additive mask."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    def attention(module, query, key, value, attention_mask, **kwargs):
        bias = bias_by_layer.get(module.layer_idx)
        if bias is not None:
            b, h, q_len, k_len = query.shape[0], query.shape[1], query.shape[2], key.shape[2]
            mask = attention_mask[:, :, :, :k_len].expand(b, h, q_len, k_len).clone()
            mask[:, :, -1:, :] += bias
            attention_mask = mask
        return eager_attention_forward(module, query, key, value, attention_mask, **kwargs)

    return attention


def test_additive_score_edit_equals_eager_attention_with_the_bias():
    """s' = s + bias on the last row of one layer, through the tap on top of sdpa, equals eager attention
    given the same bias (an independent computation), and changes the logits."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    from seesay.engine.loading import build_inputs
    from seesay.engine.tap import ScoreChange
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    model = loaded.model
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    b, t, h = inputs["input_ids"].shape[0], inputs["input_ids"].shape[1], loaded.adapter.num_heads
    bias = torch.randn(b, h, 1, t, generator=torch.Generator().manual_seed(0))
    layer = 1
    tap = AttentionTap(layers=[layer], record="none", edits=(lambda s: ScoreChange(bias=bias),))
    with torch.no_grad(), attention_tap(model, tap):
        got = model(**inputs).logits[:, -1]
    with torch.no_grad():
        plain = model(**inputs).logits[:, -1]
    AttentionInterface.register("seesay_test_eager_bias", _eager_with_bias({layer: bias}))
    AttentionMaskInterface.register("seesay_test_eager_bias", ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    model.set_attn_implementation({"text_config": "seesay_test_eager_bias"})
    try:
        with torch.no_grad():
            ref = model(**inputs).logits[:, -1]
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert (got - ref).abs().max().item() <= 1e-4
    assert (got - plain).abs().max().item() > 1e-3  # the edit did something


def test_score_edits_compose_in_order():
    """Each edit sees the scores as the previous ones left them: [x2 on head 0, + bias] gives
    2 s + bias on head 0 and s + bias elsewhere, masked keys still masked."""
    from seesay.engine.loading import build_inputs
    from seesay.engine.tap import ScoreChange
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    inputs = build_inputs(loaded, images(2), QUESTIONS[:2]).inputs
    h = loaded.adapter.num_heads
    scale = torch.ones(h)
    scale[0] = 2.0
    seen = {}

    def first(s):
        seen["raw"] = s.scores.clone()
        return ScoreChange(scale=scale)

    def second(s):
        seen["after_scale"] = s.scores.clone()
        return ScoreChange(bias=torch.full_like(s.scores, 0.25))

    def last(s):
        seen["final"] = s.scores.clone()
        return None

    tap = AttentionTap(layers=[0], record="none", edits=(first, second, last))
    with torch.no_grad(), attention_tap(loaded.model, tap):
        loaded.model(**inputs)
    raw, final = seen["raw"], seen["final"]
    allowed = raw > torch.finfo(raw.dtype).min / 2
    expected = raw * scale[None, :, None, None] + 0.25
    assert torch.allclose(
        seen["after_scale"][allowed.expand_as(raw)],
        (raw * scale[None, :, None, None])[allowed.expand_as(raw)],
    )
    assert torch.allclose(final[allowed], expected[allowed])


def test_zero_edits_keep_greedy_tokens_and_logits():
    """scale 1 and bias 0 (strength zero) leave logits bit for bit and tokens equal to plain greedy."""
    from seesay.engine.loading import build_inputs
    from seesay.engine.tap import ScoreChange
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    batch = build_inputs(loaded, images(3), QUESTIONS)
    settings = GenerationSettings(max_new_tokens=5)
    plain = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings)

    def zero(s):
        return ScoreChange(scale=torch.ones(s.scores.shape[1]), bias=torch.zeros_like(s.scores))

    tap = AttentionTap(record="none", edits=(zero, lambda s: None))
    edited = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings, tap=tap)
    assert torch.equal(edited.sequences, plain.sequences)
    with torch.no_grad(), attention_tap(loaded.model, AttentionTap(record="none")):
        bare = loaded.model(**batch.inputs).logits[:, -1]
    with torch.no_grad(), attention_tap(loaded.model, AttentionTap(record="none", edits=(zero,))):
        zeroed = loaded.model(**batch.inputs).logits[:, -1]
    assert torch.equal(bare, zeroed)
    with pytest.raises(Exception, match="edits must be callables"):
        AttentionTap(edits=(1,))
