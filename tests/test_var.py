"""VAR: identity at p = 1 on all six families, the redistribution against the official VARProcessor
loop, the whole method against eager attention with the official redistribution under ``generate()``,
a left-padded batch against one sample at a time, the sink dimensions, ``seesay ask``."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface, LogitsProcessor, LogitsProcessorList
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.errors import ConfigError
from seesay.methods import VAR, VARConfig
from seesay.methods.var import find_sink_dims, redistribute, rms_normalised
from tests.conftest import QUESTIONS, images, loaded_tiny

SETTINGS = GenerationSettings(max_new_tokens=5)


def _dims(loaded, batch):
    with torch.no_grad():
        hidden = loaded.model(**batch.inputs, output_hidden_states=True).hidden_states
    return find_sink_dims(hidden[len(hidden) // 2])


def test_var_at_p_one_is_plain_greedy(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    dims = _dims(loaded, batch3)
    assert torch.equal(
        VAR(VARConfig(p=1.0, sink_dims=dims)).generate(loaded, batch3, SETTINGS).sequences, plain
    )
    # no head qualifies (summ > 1): the tap and its edit run, and every row keeps sdpa's output
    none = VAR(VARConfig(summ=2.0, sink_dims=dims, tau=0.5)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(none.sequences, plain)


class _KeepScores(LogitsProcessor):
    def __init__(self):
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.float().clone())
        return scores


def _var_scores(loaded, imgs, questions, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(new tokens [B, n], every step's scores [B, n, V]) of VAR with ``cfg``."""
    keep = _KeepScores()
    batch = build_inputs(loaded, imgs, questions)
    out = VAR(cfg).generate(loaded, batch, SETTINGS, logits_processor=LogitsProcessorList([keep]))
    return out.new_tokens, torch.stack(keep.steps, dim=1)


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "internvl"])
def test_var_batch_equals_one_at_a_time(family):
    """Per-sample image spans, text rows after the image and sink marks under left padding: a batch of
    three prompts of different lengths gives each sample's tokens and step scores as it alone gets them,
    with the redistribution firing in every sample (its scores move away from p = 1's)."""
    loaded = loaded_tiny(family)
    imgs = images(3)
    cfg = VARConfig(sink_dims=(0, 1), tau=0.5, summ=0.0, rho=1.0, start_layer=0)  # sinks on a random model
    tokens, scores = _var_scores(loaded, imgs, QUESTIONS, cfg)
    _, unchanged = _var_scores(loaded, imgs, QUESTIONS, VARConfig(sink_dims=(0, 1), p=1.0))
    for i in range(3):
        alone_tokens, alone_scores = _var_scores(loaded, [imgs[i]], [QUESTIONS[i]], cfg)
        n = alone_tokens.shape[1]  # alone it stops at its end of sequence; in the batch, pads follow
        assert tokens[i, :n].tolist() == alone_tokens[0].tolist(), (family, i)
        assert torch.allclose(scores[i, :n], alone_scores[0], atol=1e-4), (family, i)
        assert (scores[i] - unchanged[i]).abs().max() > 1e-3, (family, i)  # the edit changed this sample


def _official_rows(attn, image, sink_list, p, rho, summ):
    """VARProcessor.attn_redist + HeadFork for one sample: attn [H, Q, K] rows, image = (start, end),
    sink_list = the layer's sink positions (visual and text)."""
    im, end = image
    out = attn.clone()
    vis = [i for i in sink_list if im <= i < end]
    text = [i for i in sink_list if not im <= i < end]
    if not vis:
        return out
    img = attn[:, :, im:end]
    portion = img[:, :, [i - im for i in vis]].sum(-1) / (img + 1e-6).sum(-1)
    heads = (portion <= rho) & (img.sum(-1) >= summ)
    for h, q in heads.nonzero().tolist():
        row = attn[h, q].clone()
        copied = row.clone()
        row[text] *= p
        row[vis] *= p
        budget = copied[vis].sum() * (1 - p) + copied[text].sum() * (1 - p)
        copied[vis] *= 0
        ratios = copied[im:end] / copied[im:end].sum()
        row[im:end] += budget * ratios
        out[h, q] = row
    return out


def test_redistribution_equals_the_official_loop():
    g = torch.Generator().manual_seed(0)
    for trial in range(6):
        k = 30
        probs = torch.softmax(torch.randn(1, 4, 3, k, generator=g) * 2, dim=-1)
        image = torch.zeros(1, k, dtype=torch.bool)
        image[0, 5:20] = True
        sinks = torch.zeros(1, k, dtype=torch.bool)
        sinks[0, [0, 6, 11] if trial % 2 else [0, 3]] = True  # odd trials: visual sinks too
        cfg = VARConfig(p=0.6, rho=0.5 + 0.1 * trial, summ=0.2, sink_dims=(0,))
        got = redistribute(probs, image, sinks, cfg)[0]
        want = _official_rows(probs[0], (5, 20), sinks[0].nonzero().flatten().tolist(), 0.6, cfg.rho, 0.2)
        assert torch.allclose(got, want, atol=1e-6), trial


def _var_eager(cfg: VARConfig, dims, layers: range, image: torch.Tensor, marks: dict):
    """Eager attention with the official redistribution (written on post-softmax rows) in ``layers``:
    rows after the image at the prefill, then each new row; the sinks from ``marks`` (pre-hooks)."""
    after = int(image[0].nonzero().max()) + 1

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask[:, :, :, : key.shape[-2]]
        probs = torch.softmax(weights.float(), dim=-1)
        layer = module.layer_idx
        if layer in layers:
            q_len, k_len = query.shape[2], key.shape[2]
            first = k_len - q_len
            rows = [q for q in range(q_len) if first + q >= after]
            sink_list = marks[layer][0, :k_len].nonzero().flatten().tolist()
            end = int(image[0].nonzero().max()) + 1
            start = int(image[0].nonzero().min())
            if rows:
                probs[0, :, rows] = _official_rows(probs[0, :, rows], (start, end), sink_list, cfg.p, cfg.rho,
                                                   cfg.summ)  # fmt: skip
        return torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous(), probs

    return attention


def test_var_equals_eager_attention_with_the_official_redistribution():
    loaded = loaded_tiny("llava")
    model = loaded.model
    batch = build_inputs(loaded, images(1), QUESTIONS[:1])
    dims = _dims(loaded, batch)
    cfg = VARConfig(sink_dims=dims, tau=1.2, start_layer=1, summ=0.05, rho=0.9, p=0.2)
    method = VAR(cfg)
    seen = []
    plan = method.plan(loaded, batch)
    steps = 4
    settings = GenerationSettings(max_new_tokens=steps, eos_token_id=[])
    with plan.contexts[0]:
        ours = decode(model, batch.inputs, adapter=loaded.adapter, settings=settings, tap=plan.tap,
                      hook=lambda s: seen.append(s.logits) or s.logits)  # fmt: skip
    # the reference: its own sink marks from pre-hooks, eager attention, generate()
    layers = range(1, loaded.adapter.num_layers - 1)
    marks: dict[int, torch.Tensor] = {}

    def mark(layer):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            new = rms_normalised(h)[..., list(dims)].abs().max(-1).values > cfg.tau
            marks[layer] = new if layer not in marks else torch.cat([marks[layer], new], dim=1)

        return hook

    handles = [loaded.adapter.layers[i].register_forward_pre_hook(mark(i), with_kwargs=True) for i in layers]
    image = loaded.adapter.image_mask(batch.inputs["input_ids"])
    name = "seesay_test_var_eager"
    AttentionInterface.register(name, _var_eager(cfg, dims, layers, image, marks))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    model.set_attn_implementation({"text_config": name})
    try:
        ref = model.generate(**batch.inputs, max_new_tokens=steps, do_sample=False, eos_token_id=None,
                             output_logits=True, return_dict_in_generate=True)  # fmt: skip
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
        for handle in handles:
            handle.remove()
    assert any(m.any() for m in marks.values())  # some sinks were found
    assert torch.equal(ours.sequences, ref.sequences)
    for t, logits in enumerate(ref.logits):
        assert (seen[t] - logits.float()).abs().max().item() <= 1e-4, t
    with torch.no_grad():
        plain = model(**batch.inputs).logits[:, -1].float()
    assert (seen[0] - plain).abs().max().item() > 1e-4  # the redistribution did something


def test_var_leaves_rows_before_the_text_after_the_image_to_sdpa():
    """The tap's ``scale_from``: at the prefill VAR computes explicit scores only for rows from the first
    text row after the image (a left-padded batch: the earliest sample's), and its output is bit for bit
    that of editing every row (the rows before are never changed)."""
    import dataclasses

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, images(2), ["what is it ?", "what is the color of the big shape ?"])
    dims = _dims(loaded, batch)
    cfg = VARConfig(sink_dims=dims, tau=1.2, start_layer=1, summ=0.05, rho=0.9, p=0.2)
    plan = VAR(cfg).plan(loaded, batch)
    image = loaded.adapter.image_mask(batch.inputs["input_ids"])
    last_image = torch.where(image, torch.arange(image.shape[1]), -1).max(dim=1).values
    assert plan.tap.scale_from == int(last_image.min()) + 1 > 0
    settings = GenerationSettings(max_new_tokens=4, eos_token_id=[])
    results = []
    for scale_from in (plan.tap.scale_from, 0):
        plan = VAR(cfg).plan(loaded, batch)  # its own sink marks
        tap = dataclasses.replace(plan.tap, scale_from=scale_from)
        rows: list[int] = []
        edit = tap.edits[0]

        def counted(scores, _edit=edit, _rows=rows):
            _rows.append(scores.scores.shape[2])
            return _edit(scores)

        tap = dataclasses.replace(tap, edits=(counted,))
        seen: list[torch.Tensor] = []
        with plan.contexts[0]:
            out = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings, tap=tap,
                         hook=lambda s, _seen=seen: _seen.append(s.logits) or s.logits)  # fmt: skip
        results.append((out.sequences, seen, sum(rows)))
    (ours, ours_logits, ours_rows), (every, every_logits, every_rows) = results
    assert torch.equal(ours, every)
    assert all(torch.equal(a, b) for a, b in zip(ours_logits, every_logits, strict=True))
    assert ours_rows < every_rows


def test_var_sink_dims_and_config(tmp_path, capsys):
    from types import SimpleNamespace

    from seesay.cli import main

    loaded = loaded_tiny("llava")
    with pytest.raises(ConfigError, match="var needs the sink dimensions"):
        VARConfig().dims_for(loaded)
    fake = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(model_type="llama", hidden_size=4096))
    )
    assert VARConfig().dims_for(fake) == (2533, 1415)  # the official LLaMA-2 7B dimensions
    for bad in ({"p": 1.5}, {"rho": 2}, {"tau": -1}, {"start_layer": -1}, {"sink_dims": []}):
        with pytest.raises(ConfigError):
            VARConfig(**bad)
    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:qwen2_vl", "--image", str(image), "--question", "what ?",
            "--method", "var", "--set", "sink_dims=[3,7]", "--set", "tau=1",
            "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "var (qwen2_vl)" in capsys.readouterr().out
