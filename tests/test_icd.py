"""ICD: identity at strength zero on all six families, the disturbed prompt, every step's scores against a
full forward of the disturbed prompt and the tokens so far, batching, ``seesay ask`` and ``seesay eval``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs
from seesay.engine.variants import insert_before_question
from seesay.errors import ConfigError
from seesay.methods import ICD, ICDConfig
from seesay.methods.icd import DISTURBED
from tests.conftest import QUESTIONS, images, loaded_tiny
from tests.helpers import assert_batch_equals_alone

SETTINGS = GenerationSettings(max_new_tokens=5)


def test_icd_at_strength_zero_is_plain_greedy(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=5, do_sample=False)
    out = ICD(ICDConfig(alpha=0.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    assert out.forward_passes == out.new_tokens.shape[1]


@pytest.mark.parametrize("chunk", [None, 4], ids=["one-pass", "chunked"])
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_icd_scores_equal_a_direct_computation(family, chunk):
    """Every step's scores against a full forward of the disturbed prompt, its prefill one pass or in
    chunks of 4 tokens (Qwen2-VL: M-RoPE positions and token types sliced per chunk)."""
    loaded = loaded_tiny(family)
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    config = ICDConfig(alpha=0.7, beta=0.2)
    plan = ICD(config).plan(loaded, batch)
    (branch,) = plan.branches
    assert branch.name == DISTURBED
    prompts = insert_before_question(batch, config.prefix + " ")
    for prompt, original, question in zip(prompts, batch.prompts, QUESTIONS[:2], strict=True):
        assert prompt == original.replace(question, f"You are a confused object detector. {question}", 1)
    assert branch.inputs["input_ids"].shape[1] > batch.inputs["input_ids"].shape[1]
    seen = []

    def spy(state):
        result = plan.hook(state)
        seen.append((result.scores, state.logits))
        return result

    settings = GenerationSettings(max_new_tokens=3, eos_token_id=[], branch_prefill_chunk_size=chunk)
    out = decode(loaded.model, batch.inputs, adapter=loaded.adapter, hook=spy, branches=plan.branches,
                 settings=settings)  # fmt: skip
    t0 = batch.inputs["input_ids"].shape[1]
    chunks = 1 if chunk is None else -(-branch.inputs["input_ids"].shape[1] // chunk)
    # the batch's prefill, the branch's, then one forward of 2B rows per later step
    assert len(seen) == 3 and out.forward_calls == 1 + chunks + 2
    for t, (scores, z) in enumerate(seen):
        new = out.sequences[:, t0 : t0 + t]
        full = {k: v for k, v in branch.inputs.items() if k not in ("input_ids", "attention_mask")}
        for k, v in full.items():  # per-token tensors (Qwen's mm_token_type_ids): text for the new tokens
            if v.shape == branch.inputs["input_ids"].shape:
                full[k] = torch.cat([v, torch.zeros_like(new)], dim=1)
        ids = torch.cat([branch.inputs["input_ids"], new], dim=1)
        mask = torch.cat([branch.inputs["attention_mask"], torch.ones_like(new)], dim=1)
        with torch.no_grad():
            z_d = loaded.model(input_ids=ids, attention_mask=mask, **full).logits[:, -1].float()
        keep = z >= math.log(0.2) + z.max(-1, keepdim=True).values
        want = torch.where(keep, 1.7 * z - 0.7 * z_d, -math.inf)
        assert torch.allclose(scores, want, atol=1e-4), (family, t)


@pytest.mark.parametrize("family", ["llava", "gemma3", "internvl"])
def test_icd_batch_equals_one_at_a_time(family):
    assert_batch_equals_alone(family, "icd", SETTINGS)


def test_icd_config_cli_and_eval(tmp_path, capsys):
    from seesay.cli import main
    from seesay.demo.synthetic_pope import write_pope

    for bad in ({"alpha": -1}, {"beta": 0}, {"prefix": " "}):
        with pytest.raises(ConfigError):
            ICDConfig(**bad)
    image = tmp_path / "x.png"
    images(1)[0].save(image)
    args = ["ask", "--model", "tiny-random:qwen2_vl", "--image", str(image), "--question", "what ?",
            "--method", "icd", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert "icd (qwen2_vl)" in capsys.readouterr().out
    data = write_pope(tmp_path / "pope", "random", 2, seed=1)
    out = tmp_path / "run"
    args = ["eval", "--bench", "pope", "--data", str(data), "--methods", "base,icd", "--out", str(out)]
    assert main(args) == 0  # the bundled model; eval's prompts hold the question + suffix
    summary = json.loads((out / "summary.json").read_text())["pope"]
    assert summary["icd"]["vs_base.n"] == summary["base"]["n"]
