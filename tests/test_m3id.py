"""M3ID: identity at strength zero, every step's scores against a direct computation (full forwards of
the prompt with and without its image, the formula written out), the gate by hand, batching and
``seesay ask``."""

from __future__ import annotations

import math
import re

import pytest
import torch

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.engine.variants import text_only
from seesay.errors import ConfigError
from seesay.methods import M3ID, M3IDConfig
from seesay.methods.m3id import TEXT_ONLY, m3id_scores
from tests.conftest import QUESTIONS, images, loaded_tiny
from tests.helpers import assert_batch_equals_alone

SETTINGS = GenerationSettings(max_new_tokens=5)


def test_m3id_at_strength_zero_is_plain_greedy(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    out = M3ID(M3IDConfig(lam=0.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    assert out.forward_passes == out.new_tokens.shape[1]  # no text-only branch at lam 0


def test_m3id_at_a_negligible_strength_takes_the_branch_and_is_plain_greedy(loaded, batch3):
    """lam = 1e-9: the text-only branch runs and the formula applies (weight ~1e-9 t), and the tokens
    are still greedy's: the identity of the path that lam = 0 skips."""
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    out = M3ID(M3IDConfig(lam=1e-9, threshold=1.0)).generate(loaded, batch3, SETTINGS)
    assert out.forward_passes == 2 * out.new_tokens.shape[1]  # the branch ran at every step
    assert torch.equal(plain, out.sequences)


def _last_logits(loaded, inputs, new):
    """A full forward (no cache) of ``inputs`` plus the tokens ``new``: the last position's logits."""
    ids = inputs["input_ids"]
    extra = {}
    for k, v in inputs.items():
        if k not in ("input_ids", "attention_mask"):  # per-token tensors grow with the new tokens
            extra[k] = torch.cat([v, torch.zeros_like(new)], 1) if v.shape == ids.shape else v
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(new)], dim=1)
    with torch.no_grad():
        out = loaded.model(input_ids=torch.cat([ids, new], dim=1), attention_mask=mask, **extra)
    return out.logits[:, -1].float()


@pytest.mark.parametrize(
    ("family", "gate"),
    [
        ("llava", "confidence"),
        ("llava", "plausibility"),
        ("qwen2_vl", "confidence"),
        ("gemma3", "confidence"),
    ],
)
def test_every_steps_scores_equal_the_formula_on_full_forwards(family, gate):
    """Step t's scores = l_c + (1 - g)/g (l_c - l_u), g = exp(-lam t), t = 1, 2, ..., gated, with l_c and
    l_u from full forwards (no cache) of the prompt with its image and of the prompt without it, each
    with the tokens chosen so far."""
    loaded = loaded_tiny(family)
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    pad = loaded.processor.tokenizer.pad_token_id
    no_image = text_only(loaded.adapter, batch.inputs, pad)
    lam = 0.7  # large: the weights 1.01, 3.06, 7.17 change the tokens of a random model
    with (
        torch.no_grad()
    ):  # a threshold between the two samples' first top probabilities: one fires, one holds
        tops = torch.softmax(_last_logits(loaded, batch.inputs, batch.inputs["input_ids"][:, :0]), -1).amax(
            -1
        )
    threshold = float(tops.mean()) if gate == "confidence" else 0.9
    config = M3IDConfig(lam=lam, gate=gate, threshold=threshold)
    plan = M3ID(config).plan(loaded, batch)
    assert [b.name for b in plan.branches] == [TEXT_ONLY] and plan.tap is None
    seen = []

    def spy(state):
        result = plan.hook(state)
        seen.append(result.scores)
        return result

    out = decode(loaded.model, batch.inputs, adapter=loaded.adapter, hook=spy, branches=plan.branches,
                 settings=GenerationSettings(max_new_tokens=3, eos_token_id=[]))  # fmt: skip
    assert out.forward_calls == 6  # the text-only branch runs as its own forward (docs/methods/m3id.md)
    start = batch.inputs["input_ids"].shape[1]
    fired = []
    for step, scores in enumerate(seen):
        new = out.sequences[:, start : start + step]
        image, text = _last_logits(loaded, batch.inputs, new), _last_logits(loaded, no_image, new)
        lc, lu = torch.log_softmax(image, -1), torch.log_softmax(text, -1)
        g = math.exp(-lam * (step + 1))
        corrected = lc + (1 - g) / g * (lc - lu)
        for b in range(2):
            top = lc[b].max()
            if gate == "confidence":
                want = corrected[b] if top.exp() < threshold else lc[b]
                fired.append(bool(top.exp() < threshold))
            else:
                want = torch.where(lc[b] >= top + math.log(threshold), corrected[b], -math.inf)
            finite = want.isfinite()
            assert torch.equal(scores[b].isfinite(), finite), (step, b)
            assert torch.allclose(scores[b][finite], want[finite], atol=1e-4), (step, b)
    if gate == "confidence":
        assert any(fired) and not all(fired)  # both sides of the gate were checked


def test_the_gate_by_hand():
    """Two samples: a confident one (top probability 0.95) keeps l_c; an unsure one gets the correction."""
    confident = torch.log(torch.tensor([0.95, 0.03, 0.02]))
    unsure = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    image = torch.stack([confident, unsure])
    text = torch.log(torch.tensor([[0.2, 0.4, 0.4], [0.6, 0.2, 0.2]]))
    t, lam = 2, 0.5
    got = m3id_scores(image, text, t, M3IDConfig(lam=lam, threshold=0.9))
    w = (1 - math.exp(-lam * t)) / math.exp(-lam * t)  # the paper's form; the code computes expm1(lam t)
    assert torch.allclose(got[0], confident, atol=1e-6)
    assert torch.allclose(got[1], unsure + w * (unsure - text[1]), atol=1e-6)
    assert got[1].argmax() == 1  # the image raised "1" over "0", which the text alone favoured
    plausible = m3id_scores(image, text, t, M3IDConfig(lam=lam, gate="plausibility", threshold=0.5))
    assert plausible[1].isfinite().tolist() == [True, True, False]  # 0.2 < 0.5 x 0.5
    assert plausible[0].isfinite().tolist() == [True, False, False]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "gemma3"])
def test_m3id_batch_equals_one_at_a_time(family):
    assert_batch_equals_alone(family, "m3id", SETTINGS)


def test_m3id_config_and_cli(tmp_path, capsys):
    from seesay.cli import main

    for bad in ({"lam": -0.1}, {"gate": "always"}, {"threshold": 0}, {"threshold": 1.5}):
        with pytest.raises(ConfigError):
            M3IDConfig(**bad)
    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:llava", "--image", str(image), "--question", "what ?",
            "--method", "m3id", "--set", "lam=0.1", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "m3id (llava)" in capsys.readouterr().out


def test_an_overflowing_weight_is_refused_before_decoding(loaded, batch3, monkeypatch):
    """exp(lam t) - 1 beyond float32 turns the scores into inf and nan: refused with one line before
    the first forward pass (``Method.check_settings``), with a lam and a token count that pass."""
    calls = []
    monkeypatch.setattr(loaded.adapter.base_model, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(ConfigError, match=r"max_new_tokens = 5 .*lam <= 17\.7445 or max_new_tokens <= 4$"):
        M3ID(M3IDConfig(lam=20.0)).generate(loaded, batch3, SETTINGS)
    assert calls == []  # nothing ran
    with pytest.raises(ConfigError, match=r"lam x 5 = 500 > 88\.7\); use lam <= 17\.7445$"):  # no "<= 0"
        M3ID(M3IDConfig(lam=100.0)).check_settings(SETTINGS)
    M3ID(M3IDConfig(lam=17.7445)).check_settings(SETTINGS)  # the quoted bound itself passes
    for t in (7, 512, 4096):  # the quoted bound is rounded down, so it passes at every step count
        settings = GenerationSettings(max_new_tokens=t)
        bound = float(re.search(r"lam <= ([0-9.]+)", _refusal(settings)).group(1))
        M3ID(M3IDConfig(lam=bound)).check_settings(settings)
    logits = torch.zeros(1, 4)
    assert torch.isfinite(m3id_scores(logits, logits, 5, M3IDConfig(lam=17.7, threshold=1.0))).all()
    with pytest.raises(ConfigError, match="at step t = 5"):
        m3id_scores(logits, logits, 5, M3IDConfig(lam=17.8))


def _refusal(settings: GenerationSettings) -> str:
    with pytest.raises(ConfigError) as err:
        M3ID(M3IDConfig(lam=1000.0)).check_settings(settings)
    return str(err.value)
