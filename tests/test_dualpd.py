"""DualPD: identity, layer choice against eager attention, batching, head decay targets, knobs, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seesay.engine.adapters import get_adapter
from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import LoadedModel, build_inputs
from seesay.engine.tap import AttentionTap, attention_tap
from seesay.errors import ConfigError
from seesay.methods import DualPD, DualPDConfig, get_method
from seesay.testing.tiny import build_tiny_vlm, tiny_image

SETTINGS = GenerationSettings(max_new_tokens=6)


@pytest.mark.parametrize(
    "knobs",
    [
        {"contrast": "residual", "beta": 0.0, "rho": 0.0},  # the tap reads every shift layer; no effect
        {"contrast": "residual", "beta": 0.0, "gamma": 1.0, "rho": 0.5},  # the filter's knob off too
        {"contrast": "residual", "beta": 0.0, "rho": 0.0, "static_layer": 1},  # the lens path, no tap
    ],
)
def test_identity_with_everything_off(loaded, batch3, knobs):
    """DualPD's own machinery runs (its hook traces every step) and still gives plain greedy tokens."""
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=6, do_sample=False)
    out = DualPD(DualPDConfig(**knobs), trace=True).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    assert len(out.trace) == out.new_tokens.shape[1]  # the hook ran at every step: not the base path
    assert all("basic_layer" in row for step in out.trace for row in step)


_DEEP: dict[str, LoadedModel] = {}


def deep(family: str) -> LoadedModel:
    """A 6-layer tiny model, so that the candidate range 1 .. L-2 has several layers."""
    if family not in _DEEP:
        tiny = build_tiny_vlm(family, num_layers=6, seed=3)
        _DEEP[family] = LoadedModel(tiny.model, tiny.processor, get_adapter(tiny.model, tiny.processor))
    return _DEEP[family]


def _eager_attentions(model, inputs):
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            return model(**inputs, output_attentions=True).attentions
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})


def _direct_basic_layers(loaded, batch, sequences, n_steps, metric, side):
    """The basic layer at every step, recomputed from eager attention rows of the full sequence."""
    from seesay.methods.contrast import SHIFT_METRICS

    inputs = dict(batch.inputs)
    t0 = inputs["input_ids"].shape[1]
    seqs = sequences[:, : t0 + n_steps - 1]
    extra = seqs.shape[1] - t0
    inputs["input_ids"] = seqs
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(seqs[:, t0:])], 1)
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = torch.cat([inputs[key], torch.zeros_like(seqs[:, t0:])], 1)
    assert extra == n_steps - 1
    att = torch.stack(_eager_attentions(loaded.model, inputs), 1).float()  # [B, L, H, T, T]
    image = loaded.adapter.image_mask(batch.inputs["input_ids"]).float()  # [B, t0]
    n = loaded.adapter.num_layers
    out = []
    for step in range(n_steps):
        q = t0 - 1 + step
        a = att[:, :, :, q, :t0].mean(2) * image[:, None]  # [B, L, t0]
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        cands = list(range(1, n - 1))
        pairs = [(c - 1, c) if side == "later" else (c, c + 1) for c in cands]
        shift = torch.stack([SHIFT_METRICS[metric](a[:, hi], a[:, lo]) for lo, hi in pairs], -1)
        out.append([cands[i] for i in shift.argmax(-1).tolist()])
    return out


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "internvl"])
@pytest.mark.parametrize("metric,side", [("hellinger", "later"), ("js", "earlier"), ("kl", "later")])
def test_basic_layer_matches_eager(family, metric, side):
    from tests.conftest import QUESTIONS, images

    loaded = deep(family)
    batch = build_inputs(loaded, images(3), QUESTIONS)
    method = DualPD(DualPDConfig(rho=0.0, shift_metric=metric, pair_side=side), trace=True)
    out = method.generate(loaded, batch, GenerationSettings(max_new_tokens=5, eos_token_id=[]))
    got = [[sample["basic_layer"] for sample in step] for step in out.trace]
    want = _direct_basic_layers(loaded, batch, out.sequences, len(out.trace), metric, side)
    assert got == want
    assert len({layer for step in got for layer in step}) >= 2  # the choice varies: not a constant


def test_batch_equals_one_at_a_time():
    loaded = deep("llava")
    questions = [
        "what ?",
        "what is the color of the cat ?",
        "how many dog are there in this image ?",
        "is there a red circle ?",
    ]
    imgs = [tiny_image(20 + 8 * i, 36 - 4 * i, seed=i) for i in range(4)]
    method = DualPD(DualPDConfig(rho=0.25))  # 4 heads: one suppressed per layer
    settings = GenerationSettings(max_new_tokens=6)
    batched = method.generate(loaded, build_inputs(loaded, imgs, questions), settings)
    lengths = build_inputs(loaded, imgs, questions).inputs["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 4  # four different prompt lengths
    for i in range(4):
        alone = method.generate(loaded, build_inputs(loaded, [imgs[i]], [questions[i]]), settings)
        n = alone.new_tokens.shape[1]
        assert torch.equal(batched.new_tokens[i, :n], alone.new_tokens[0])


@pytest.mark.parametrize("target", ["scores", "output"])
def test_decay_changes_only_the_lowest_heads(target):
    """The heads DualPD suppresses are the lowest-norm ones, and only their outputs change."""
    from tests.conftest import QUESTIONS, images

    loaded = deep("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    config = DualPDConfig(rho=0.5, gamma=0.5, decay_target=target, contrast="none", filter_layers=(2,))
    step = DualPD(config, trace=True).step_for(loaded, batch)
    attn = loaded.adapter.layers[2].self_attn
    captured = {}

    def grab(module, args, output):
        captured["o"] = args[0][:, -1].reshape(2, loaded.adapter.num_heads, -1).clone()

    outputs, norms = {}, {}

    def spy(scores):
        norms["n"] = scores.norms()[:, :, -1]
        return step.head_scale(scores)

    handle = attn.o_proj.register_forward_hook(grab)
    try:
        for name, scaler in (("plain", None), ("dualpd", spy)):
            tap = AttentionTap(layers=[2], record="none", head_scale=scaler, target=target)
            with torch.no_grad(), attention_tap(loaded.model, tap):
                loaded.model(**batch.inputs)
            outputs[name] = captured["o"]
    finally:
        handle.remove()
    lowest = norms["n"].topk(2, largest=False).indices  # rho * H = 2 heads
    assert sorted(step._suppressed[2][0].tolist()) == sorted(lowest[0].tolist())
    changed = (outputs["plain"] - outputs["dualpd"]).abs().amax(-1) > 0  # [B, H]
    expected = torch.zeros_like(changed).scatter_(1, lowest, True)
    assert torch.equal(changed, expected)
    if target == "output":
        sel = expected
        assert torch.allclose(outputs["dualpd"][sel], 0.5 * outputs["plain"][sel])


def test_contrast_modes_follow_their_formulas():
    step_cfg = {"rho": 0.0}
    loaded = deep("llava")
    batch = build_inputs(loaded, [tiny_image(24, 24)], ["what is the color ?"])
    final = torch.randn(1, loaded.adapter.vocab_size)
    early = torch.randn(1, loaded.adapter.vocab_size)
    for mode in ("dola", "logits", "literal", "residual"):
        step = DualPD(DualPDConfig(contrast=mode, alpha=0.2, beta=0.7, **step_cfg)).step_for(loaded, batch)
        got = step.combine(final, early)
        lp = final.log_softmax(-1)
        keep = lp >= lp.max() + math.log(0.2)
        if mode == "residual":
            want = final + 0.7 * (final - early)
        elif mode == "literal":  # the paper's z_final - z_basic, no plausibility mask
            want = final - early
            assert torch.isfinite(got).all()
        elif mode == "dola":
            want = torch.where(keep, lp - early.log_softmax(-1), float("-inf"))
        else:
            want = torch.where(keep, final - early, float("-inf"))
        assert torch.allclose(got, want)


def test_static_layer_uses_that_layer(monkeypatch):
    loaded = deep("qwen2_vl")
    batch = build_inputs(loaded, [tiny_image(40, 24)], ["what is the color ?"])
    out = DualPD(DualPDConfig(static_layer=2, rho=0.0), trace=True).generate(loaded, batch, SETTINGS)
    assert all(step[0]["basic_layer"] == 2 for step in out.trace)
    # and the contrast is what the lens at layer 2 gives
    from seesay.engine.lens import LogitLens

    captured = {}
    ref = decode(
        loaded.model,
        batch.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=1),
        hook=lambda s: captured.setdefault("s", (s.logits, s.hidden[2])) and s.logits,
        hidden_layers=[2],
    )
    final, h2 = captured["s"]
    early = LogitLens(loaded.adapter)(h2, 2)
    lp = final.log_softmax(-1)
    scores = torch.where(
        lp >= lp.max(-1, keepdim=True).values + math.log(0.1), lp - early.log_softmax(-1), float("-inf")
    )
    assert out.new_tokens[0, 0] == scores.argmax(-1)[0]
    assert ref.new_tokens.shape == (1, 1)


@pytest.mark.parametrize(
    "knobs,needle",
    [
        ({"contrast": "bogus"}, "contrast"),
        ({"rho": 1.0}, "rho"),
        ({"alpha": 0.0}, "alpha"),
        ({"shift_metric": "l2"}, "shift_metric"),
        ({"gamma": -1}, "gamma"),
    ],
)
def test_config_validation(knobs, needle):
    with pytest.raises(ConfigError, match=needle):
        DualPDConfig(**knobs)


def test_candidate_range_validated():
    loaded = deep("llava")
    batch = build_inputs(loaded, [tiny_image(24, 24)], ["what ?"])
    with pytest.raises(ConfigError, match="candidate_layers"):
        DualPD(DualPDConfig(candidate_layers=(0, 5))).generate(loaded, batch, SETTINGS)
    with pytest.raises(ConfigError, match="static_layer"):
        DualPD(DualPDConfig(static_layer=5)).generate(loaded, batch, SETTINGS)
    with pytest.raises(ConfigError, match="no option"):
        get_method("dualpd", rhoo=0.1)
    for side in ("later", "earlier"):  # a 2-layer model has no layer strictly between the ends
        with pytest.raises(ConfigError, match="no candidate layer on a 2-layer model"):
            DualPDConfig(pair_side=side).resolved(2)
    assert DualPDConfig(static_layer=0).resolved(2)[0] == (0,)  # the way out the message names
    with pytest.raises(ConfigError, match="candidate_layers must lie"):  # an empty list of the user's own
        DualPDConfig(candidate_layers=()).resolved(4)


def test_cli_dualpd_with_overrides_and_trace(tmp_path, capsys):
    from seesay.cli import main

    path = build_tiny_vlm("llava", num_layers=6, save_to=tmp_path / "m").path
    img = tmp_path / "img.png"
    tiny_image(30, 20).save(img)
    trace = tmp_path / "trace.jsonl"
    code = main(
        [
            "ask",
            "-m",
            str(path),
            "-i",
            str(img),
            "-q",
            "what is the color ?",
            "--method",
            "dualpd",
            "--set",
            "rho=0.25",
            "--set",
            "shift_metric=js",
            "--set",
            "candidate_layers=[2,3]",
            "--max-new-tokens",
            "3",
            "--trace",
            str(trace),
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["config"]["rho"] == 0.25 and payload["config"]["candidate_layers"] == [2, 3]
    lines = [json.loads(x) for x in trace.read_text().splitlines()]
    assert len(lines) == len(payload["token_ids"])
    assert {"token_id", "step", "shift", "basic_layer", "suppressed_heads"} <= set(lines[0])
    assert lines[0]["basic_layer"] in (2, 3) and set(lines[0]["shift"]) == {"1->2", "2->3"}
    assert all(len(heads) == 1 for heads in lines[0]["suppressed_heads"].values())


def test_dola_and_logits_contrasts_decode_the_same_tokens():
    """They differ by a per-row constant on the same plausible set: equal greedy and sampled tokens."""
    from tests.conftest import QUESTIONS, images

    loaded = deep("llava")
    batch = build_inputs(loaded, images(3), QUESTIONS)
    for settings in (
        GenerationSettings(max_new_tokens=6),
        GenerationSettings(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.9, seed=3),
    ):
        tokens = [
            DualPD(DualPDConfig(contrast=c, rho=0.0)).generate(loaded, batch, settings).new_tokens.tolist()
            for c in ("dola", "logits")
        ]
        assert tokens[0] == tokens[1]


def test_rho_rounding_to_zero_warns_and_min_heads_keeps_one(recwarn):
    from tests.conftest import QUESTIONS, images

    loaded = deep("llava")
    heads = loaded.adapter.num_heads
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    rho = 0.5 / heads  # floor(rho * heads) = 0
    with pytest.warns(UserWarning, match=r"floor\(rho \* heads\) = .* = 0"):
        DualPD(DualPDConfig(rho=rho, contrast="none")).step_for(loaded, batch)
    method = DualPD(DualPDConfig(rho=rho, min_heads=1, contrast="none"), trace=True)
    out = method.generate(loaded, batch, GenerationSettings(max_new_tokens=2))
    rows = [row for step in out.trace for row in step]
    assert rows and all(len(v) == 1 for row in rows for v in row["suppressed_heads"].values())
    with pytest.raises(ConfigError, match="min_heads"):
        DualPDConfig(min_heads=-1)


def test_prompt_row_filtering_scales_each_rows_own_weakest_heads():
    """filter_rows="prompt": at prefill every prompt row's own floor(rho H) lowest-norm heads are scaled
    (target "output": their o_proj input times gamma exactly), every other head of every row untouched;
    the rows' scores are computed a chunk at a time (chunking does not change anything)."""
    from tests.conftest import QUESTIONS, images

    loaded = deep("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    config = DualPDConfig(
        rho=0.5, gamma=0.5, decay_target="output", contrast="none", filter_layers=(2,), filter_rows="prompt"
    )
    step = DualPD(config).step_for(loaded, batch)
    attn = loaded.adapter.layers[2].self_attn
    heads = loaded.adapter.num_heads
    captured, norms = {}, []

    def grab(module, args, output):
        captured["o"] = args[0].reshape(2, args[0].shape[1], heads, -1).clone()  # [B, T, H, D]

    def spy(scores):
        norms.append(scores.norms())  # [B, H, R] per chunk (and the last row's call)
        return step.head_scale(scores)

    outputs = {}
    handle = attn.o_proj.register_forward_hook(grab)
    try:
        for name, scaler, chunk in (
            ("plain", None, 64),
            ("prompt", spy, 3),
            ("one chunk", step.head_scale, 10**6),
        ):
            tap = AttentionTap(
                layers=[2],
                record="none",
                head_scale=scaler,
                target="output",
                scale_rows="all",
                scale_chunk=chunk,
            )
            with torch.no_grad(), attention_tap(loaded.model, tap):
                loaded.model(**batch.inputs)
            outputs[name] = captured["o"]
    finally:
        handle.remove()
    t = outputs["plain"].shape[1]
    row_norms = torch.cat([*norms[1:], norms[0]], dim=-1)  # the chunks in order, then the last row
    assert row_norms.shape[-1] == t
    lowest = row_norms.topk(2, dim=1, largest=False).indices  # [B, 2, T]: rho * H = 2 heads per row
    expected = (
        torch.zeros(2, heads, t, dtype=torch.bool).scatter_(1, lowest, True).transpose(1, 2)
    )  # [B, T, H]
    plain, filtered = outputs["plain"], outputs["prompt"]
    changed = (plain - filtered).abs().amax(-1) > 0
    valid = batch.inputs["attention_mask"].bool()  # padded rows attend to nothing that matters
    assert torch.equal(changed[valid], expected[valid] & (plain.abs().amax(-1) > 0)[valid])
    assert torch.allclose(filtered[expected], 0.5 * plain[expected])
    assert torch.allclose(outputs["one chunk"], filtered)  # chunking changes nothing


def test_prompt_row_filtering_decodes_and_differs_from_last_row_filtering():
    from tests.conftest import QUESTIONS, images

    loaded = deep("llava")
    batch = build_inputs(loaded, images(3), QUESTIONS)
    settings = GenerationSettings(max_new_tokens=4)
    base = get_method("base").generate(loaded, batch, settings)
    off = DualPD(DualPDConfig(contrast="none", gamma=1.0, filter_rows="prompt")).generate(
        loaded, batch, settings
    )
    assert torch.equal(off.new_tokens, base.new_tokens)  # gamma = 1: plain greedy decoding
    kw = dict(contrast="none", rho=0.5, gamma=0.0)
    prompt = DualPD(DualPDConfig(**kw, filter_rows="prompt")).generate(loaded, batch, settings)
    assert prompt.new_tokens.shape == base.new_tokens.shape
    logits = {}
    for rows in ("last", "all"):
        step = DualPD(DualPDConfig(**kw)).step_for(loaded, batch)
        tap = AttentionTap(record="none", head_scale=step.head_scale, scale_rows=rows)
        with torch.no_grad(), attention_tap(loaded.model, tap):
            logits[rows] = loaded.model(**batch.inputs).logits[:, -1]
    assert not torch.allclose(logits["last"], logits["all"])  # the prompt rows' filtering reaches the logits
    with pytest.raises(ConfigError, match="filter_rows"):
        DualPDConfig(filter_rows="all")
