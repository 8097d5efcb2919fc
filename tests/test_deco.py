"""DeCo: identity at strength zero on all six families, the scores against the official algorithm written
out per sample, the early-exit logits against ``output_hidden_states``, the layer interval, batching."""

from __future__ import annotations

import pytest
import torch

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.errors import ConfigError
from seesay.methods import DeCo, DeCoConfig
from seesay.methods.deco import deco_scores
from tests.conftest import QUESTIONS, images, loaded_tiny
from tests.helpers import assert_batch_equals_alone

SETTINGS = GenerationSettings(max_new_tokens=5)


def test_deco_at_strength_zero_is_plain_greedy(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    out = DeCo(DeCoConfig(alpha=0.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)


def _official(final: torch.Tensor, early: list[torch.Tensor], alpha: float, top_k: int, top_p: float):
    """One sample as DeCo's generation/utils.py computes it: final [V], early-exit logits [C] x [V]."""
    probs = torch.softmax(final, -1)
    cand_probs, cand_ids = torch.topk(probs, k=top_k)
    cut = torch.searchsorted(cand_probs.cumsum(-1), torch.tensor(top_p), right=False)
    cand_ids = cand_ids[: min(int(cut) + 1, top_k)]
    stacked = torch.softmax(torch.stack(early), -1)[:, cand_ids]  # [C, candidates]
    flat = int(torch.argmax(stacked))
    layer = flat // stacked.shape[1]
    m = stacked.max().item()
    out = final + alpha * m * early[layer]
    remove = torch.ones_like(out, dtype=torch.bool)
    remove[cand_ids] = False
    return out.masked_fill(remove, -float("inf")), layer


def test_deco_scores_follow_the_official_algorithm():
    g = torch.Generator().manual_seed(0)
    final = torch.randn(3, 50, generator=g) * 3
    early = torch.randn(4, 3, 50, generator=g) * 3
    for top_k, top_p in ((20, 0.9), (5, 0.5), (50, 1.0), (1, 0.9)):
        scores, anchor, _ = deco_scores(final, early, 0.6, top_k, top_p)
        for b in range(3):
            want, layer = _official(final[b], list(early[:, b]), 0.6, top_k, top_p)
            assert int(anchor[b]) == layer
            assert torch.equal(scores[b].isinf(), want.isinf())
            assert torch.allclose(scores[b][~want.isinf()], want[~want.isinf()], atol=1e-5)


def test_deco_early_exit_logits_equal_output_hidden_states():
    """At the prefill, the hook's scores equal the official computation on lm_head(norm(hidden_states[j]))
    from the model's own ``output_hidden_states``."""
    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    config = DeCoConfig(alpha=0.6, layers=(1, 2, 3))
    plan = DeCo(config).plan(loaded, batch)
    seen = []

    def spy(state):
        result = plan.hook(state)
        seen.append(result.scores)
        return result

    decode(loaded.model, batch.inputs, adapter=loaded.adapter, hook=spy, hidden_layers=plan.hidden_layers,
           settings=GenerationSettings(max_new_tokens=1))  # fmt: skip
    with torch.no_grad():
        out = loaded.model(**batch.inputs, output_hidden_states=True)
    norm, head = loaded.adapter.final_norm, loaded.adapter.lm_head
    with torch.no_grad():
        early = [head(norm(out.hidden_states[j][:, -1])).float() for j in (1, 2, 3)]
    final = out.logits[:, -1].float()
    for b in range(2):
        want, _ = _official(final[b], [e[b] for e in early], 0.6, 20, 0.9)
        finite = ~want.isinf()
        assert torch.equal(seen[0][b].isinf(), want.isinf())
        assert torch.allclose(seen[0][b][finite], want[finite], atol=1e-4)


def test_deco_layer_interval_and_config():
    assert DeCoConfig().early_exit_layers(32) == list(range(20, 29))  # the official interval
    assert DeCoConfig().early_exit_layers(40) == list(range(25, 36))
    assert DeCoConfig().early_exit_layers(4) == [3]
    assert DeCoConfig(layers=[3, 1, 3]).early_exit_layers(4) == [1, 3]
    for bad in ({"alpha": -1}, {"top_k": 0}, {"top_p": 0}, {"layers": "mid"}, {"layers": []}):
        with pytest.raises(ConfigError):
            DeCoConfig(**bad)
    with pytest.raises(ConfigError, match="hidden_states indices"):
        DeCoConfig(layers=(9,)).early_exit_layers(4)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "internvl"])
def test_deco_batch_equals_one_at_a_time(family):
    assert_batch_equals_alone(family, "deco", SETTINGS)


def test_deco_cli(tmp_path, capsys):
    from seesay.cli import main

    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:gemma3", "--image", str(image), "--question", "what ?",
            "--method", "deco", "--set", "alpha=1.0", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "deco (gemma3)" in capsys.readouterr().out
