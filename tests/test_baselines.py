"""Baselines on the engine: DoLa against transformers 4.55.4's own DoLa, VCD's noise and contrast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seesay.engine.adapters import get_adapter
from seesay.engine.decoding import GenerationSettings
from seesay.engine.loading import LoadedModel, PreparedBatch, build_inputs
from seesay.errors import ConfigError
from seesay.methods import VCD, DoLa, DoLaConfig, VCDConfig
from seesay.methods.vcd import add_diffusion_noise, diffusion_schedule
from seesay.testing.tiny import tiny_image

FIXTURE = Path(__file__).parent / "fixtures" / "dola_455"
SETTINGS = GenerationSettings(max_new_tokens=6)


@pytest.fixture(scope="module")
def reference():
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(FIXTURE).eval()
    loaded = LoadedModel(model, None, get_adapter(model))
    batch = PreparedBatch(
        inputs=load_file(str(FIXTURE / "inputs.safetensors")), prompts=[""] * 3, images=[[]] * 3
    )
    return loaded, batch, json.loads((FIXTURE / "reference.json").read_text())


def test_fixture_model_greedy_matches_455(reference):
    loaded, batch, ref = reference
    out = loaded.model.generate(
        **batch.inputs, max_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=0
    )
    assert out[:, batch.inputs["input_ids"].shape[1] :].tolist() == ref["greedy"]


@pytest.mark.parametrize("run", range(4))
def test_dola_reproduces_transformers_455(reference, run):
    """Norm off + one premature layer per batch = transformers 4.55.4's DoLa, token for token."""
    loaded, batch, ref = reference
    setting = ref["runs"][run]
    layers = setting["dola_layers"]
    config = DoLaConfig(
        layers=tuple(layers) if isinstance(layers, list) else layers,
        final_norm=False,
        per_sample=False,
        tied_embeddings=ref["tie_word_embeddings"],
    )
    settings = GenerationSettings(
        max_new_tokens=10, repetition_penalty=setting["repetition_penalty"], eos_token_id=2, pad_token_id=0
    )
    out = DoLa(config).generate(loaded, batch, settings)
    assert out.new_tokens.tolist() == setting["tokens"]


def test_dola_candidate_layers_follow_455_rules():
    cfg_low, cfg_high = DoLaConfig(layers="low"), DoLaConfig(layers="high")
    assert cfg_low.candidates(32, tied=False) == list(range(0, 16, 2))
    assert cfg_low.candidates(32, tied=True) == list(range(2, 16, 2))
    assert cfg_high.candidates(32, tied=True) == list(range(16, 32, 2))
    assert cfg_low.candidates(48, tied=False) == list(range(0, 20, 2))
    assert cfg_high.candidates(48, tied=False) == list(range(28, 48, 2))
    assert cfg_low.candidates(2, tied=True) == [1]
    assert DoLaConfig(layers=(0, 3, 40)).candidates(8, tied=False) == [0, 3]


def test_dola_identity_and_per_sample(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=6, do_sample=False)
    out = DoLa(DoLaConfig(alpha=0.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    # per sample: a batch gives each sample what it gets alone
    from tests.conftest import QUESTIONS, images

    method = DoLa(DoLaConfig(layers=(0, 1, 2, 3)), trace=True)
    batched = method.generate(loaded, batch3, SETTINGS)
    for i, img in enumerate(images(3)):
        alone = method.generate(loaded, build_inputs(loaded, [img], [QUESTIONS[i]]), SETTINGS)
        n = alone.new_tokens.shape[1]
        assert torch.equal(batched.new_tokens[i, :n], alone.new_tokens[0])
        assert [s[i]["premature_layer"] for s in batched.trace][:n] == [
            s[0]["premature_layer"] for s in alone.trace
        ]


def test_vcd_schedule_closed_form():
    abar = diffusion_schedule(1000, 1e-5, 5e-3)
    t = torch.arange(1000, dtype=torch.float64)
    betas = 1e-5 + (5e-3 - 1e-5) / (1 + torch.exp(-(-6 + 12 * t / 999)))
    closed = torch.exp(torch.cumsum(torch.log1p(-betas), 0))
    assert torch.allclose(abar, closed, rtol=1e-12)
    assert abar[0] == pytest.approx(1 - betas[0].item())
    assert 0 < abar[500] < abar[499] < 1
    # the noised tensor: mean sqrt(abar) v, variance 1 - abar
    v = torch.full((4, 3, 64, 64), 0.7)
    cfg = VCDConfig(noise_step=500, noise_seed=3)
    noisy = add_diffusion_noise(v, cfg)
    a = abar[500].item()
    assert noisy.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=0.01)
    assert noisy.var().item() == pytest.approx(1 - a, rel=0.03)
    assert torch.equal(noisy, add_diffusion_noise(v, cfg))  # seeded


def test_vcd_identity_two_passes_and_batching(loaded, batch3):
    plain = loaded.model.generate(**batch3.inputs, max_new_tokens=6, do_sample=False)
    out = VCD(VCDConfig(alpha=0.0)).generate(loaded, batch3, SETTINGS)
    assert torch.equal(plain, out.sequences)
    steps = out.new_tokens.shape[1]
    assert out.forward_passes == 2 * steps
    # the batch, then the noised branch prefill one after the other (one cache after a join); every later
    # step is one forward of 2B rows. steps + 2 would mean the caches could not be joined.
    assert out.forward_calls == steps + 1
    contrast = VCD(VCDConfig(alpha=1.0)).generate(loaded, batch3, SETTINGS)
    assert contrast.forward_passes == 2 * contrast.new_tokens.shape[1]


def test_vcd_scores_follow_the_formula():
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, [tiny_image(24, 24)], ["what is the color ?"])
    seen = {}
    method = VCD(VCDConfig(alpha=0.5, beta=0.2))
    from seesay.methods.vcd import VCDStep, noised_branch

    step = VCDStep(method.config)
    original = step.__call__

    def spy(state):
        scores = original(state).scores
        seen["scores"], seen["clean"] = scores, state.logits
        return scores

    from seesay.engine.decoding import decode

    decode(
        loaded.model,
        batch.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=1),
        hook=spy,
        branches=(noised_branch(method.config, loaded, batch.inputs),),
    )
    # recompute the noisy branch directly
    noisy_inputs = dict(batch.inputs)
    noisy_inputs["pixel_values"] = add_diffusion_noise(batch.inputs["pixel_values"], method.config)
    with torch.no_grad():
        noisy = loaded.model(**noisy_inputs).logits[:, -1].float()
    clean = seen["clean"]
    keep = clean >= math.log(0.2) + clean.max(-1, keepdim=True).values
    want = torch.where(keep, 1.5 * clean - 0.5 * noisy, float("-inf"))
    assert torch.allclose(seen["scores"], want, atol=1e-5)


def test_vcd_sampling_is_seeded(loaded, batch3):
    settings = GenerationSettings(max_new_tokens=5, do_sample=True, seed=11)
    a = VCD().generate(loaded, batch3, settings).sequences
    b = VCD().generate(loaded, batch3, settings).sequences
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "cls,knobs",
    [
        (DoLaConfig, {"layers": "mid"}),
        (DoLaConfig, {"relative_top": 0}),
        (VCDConfig, {"noise_step": 1000}),
        (VCDConfig, {"beta": 0}),
    ],
)
def test_config_validation(cls, knobs):
    with pytest.raises(ConfigError):
        cls(**knobs)


def test_cli_runs_baselines(tmp_path, capsys):
    from seesay.cli import main
    from seesay.testing.tiny import build_tiny_vlm

    path = build_tiny_vlm("qwen2_vl", save_to=tmp_path / "m").path
    img = tmp_path / "img.png"
    tiny_image(40, 24).save(img)
    for method, option in (("dola", "layers=[0,2]"), ("vcd", "alpha=0.5")):
        code = main(
            [
                "ask",
                "-m",
                str(path),
                "-i",
                str(img),
                "-q",
                "what ?",
                "--method",
                method,
                "--set",
                option,
                "--max-new-tokens",
                "3",
                "--json",
            ]
        )
        assert code == 0
        assert json.loads(capsys.readouterr().out)["method"] == method


def test_dola_auto_tied_embeddings_follow_transformers_455(reference):
    """The fixture's config.json omits tie_word_embeddings: 5.x's LlavaConfig says False, 4.55 said True."""
    from seesay.methods.dola import tied_as_transformers_455

    loaded, batch, ref = reference
    assert loaded.model.config.tie_word_embeddings is False  # what a plain 5.x reading gives
    assert tied_as_transformers_455(loaded.model.config) is ref["tie_word_embeddings"] is True
    for run in ref["runs"]:
        if isinstance(run["dola_layers"], str):  # "low" / "high": the auto start layer matters here
            config = DoLaConfig(layers=run["dola_layers"], final_norm=False, per_sample=False)
            settings = GenerationSettings(
                max_new_tokens=10,
                repetition_penalty=run["repetition_penalty"],
                eos_token_id=2,
                pad_token_id=0,
            )
            assert DoLa(config).generate(loaded, batch, settings).new_tokens.tolist() == run["tokens"]


def test_vcd_batch_equals_one_sample_at_a_time(family):
    """Each sample's noise depends on its own image only, so a batch decodes every sample as alone."""
    import seesay
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny(family)
    settings = GenerationSettings(max_new_tokens=5)
    batch = seesay.ask_batch(
        loaded, images(3), QUESTIONS, method=VCD(VCDConfig(alpha=1.0)), settings=settings
    )
    for i, answer in enumerate(batch):
        alone = seesay.ask_batch(
            loaded, [images(3)[i]], [QUESTIONS[i]], method=VCD(VCDConfig(alpha=1.0)), settings=settings
        )[0]
        assert answer.token_ids == alone.token_ids, (family, i)


@pytest.mark.parametrize("chunk", [None, 4], ids=["one-pass", "chunked"])
@pytest.mark.parametrize("merged", [True, False])
def test_vcd_cached_noisy_steps_equal_a_direct_recomputation(merged, chunk):
    """Every decode step's scores, the noised branch read from its own KV cache, against a full forward
    pass of the noised image and the tokens so far: with the branch in the main forward (a 2B batch) and
    as its own forward (what the engine does when a tap is installed), its prompt prefilled in one pass
    or in chunks of 4 tokens."""
    from seesay.engine.decoding import decode
    from seesay.engine.tap import AttentionTap
    from seesay.methods.vcd import VCDStep, noised_branch
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, [tiny_image(24, 24)], ["what is the color ?"])
    config = VCDConfig(alpha=0.5, beta=0.2)
    step = VCDStep(config)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(state):
        scores = step(state).scores
        seen.append((scores, state.logits))
        return scores

    out = decode(
        loaded.model,
        batch.inputs,
        adapter=loaded.adapter,
        settings=GenerationSettings(max_new_tokens=4, eos_token_id=[], branch_prefill_chunk_size=chunk),
        hook=spy,
        tap=None if merged else AttentionTap(record="none"),
        branches=(noised_branch(config, loaded, batch.inputs),),
    )
    t0 = batch.inputs["input_ids"].shape[1]
    chunks = 1 if chunk is None else -(-t0 // chunk)  # the noised prompt's prefill calls
    assert len(seen) == 4 and out.forward_calls == (4 + chunks if merged else 7 + chunks)
    noisy_pixels = add_diffusion_noise(batch.inputs["pixel_values"], config)
    for t, (scores, clean) in enumerate(seen):
        ids = out.sequences[:, : t0 + t]
        with torch.no_grad():
            noisy = (
                loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=noisy_pixels)
                .logits[:, -1]
                .float()
            )
        keep = clean >= math.log(0.2) + clean.max(-1, keepdim=True).values
        want = torch.where(keep, 1.5 * clean - 0.5 * noisy, float("-inf"))
        assert torch.allclose(scores, want, atol=1e-4), t


def test_a_tapped_branch_of_its_own_sees_its_own_positions():
    """A branch run as its own forward with ``tapped=True``: the tap's edits see the branch's key offset
    and query positions, and the main pass's records (kept per step) are not mixed with the branch's."""
    from seesay.engine.decoding import Branch, decode
    from seesay.engine.tap import AttentionTap
    from seesay.engine.variants import text_only
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, [tiny_image(24, 24)], ["what is the color ?"])
    short = text_only(loaded.adapter, batch.inputs, 0)
    seen = []

    def edit(scores):
        seen.append((scores.scores.shape[-1], scores.key_offset, scores.query_start))

    tap = AttentionTap(layers=[0], record="mean", edits=(edit,), keep_history=True)
    steps = 3
    decode(loaded.model, batch.inputs, adapter=loaded.adapter, tap=tap, hook=lambda s: s.logits,
           branches=(Branch("text", short, tapped=True),),
           settings=GenerationSettings(max_new_tokens=steps, eos_token_id=[]))  # fmt: skip
    t_main, t_text = batch.inputs["input_ids"].shape[1], short["input_ids"].shape[1]
    branch_calls = [s for i, s in enumerate(seen) if i % 2 == 0]  # the branch runs first at every step
    main_calls = [s for i, s in enumerate(seen) if i % 2 == 1]
    assert branch_calls == [(t_text + i, 0, t_text - 1 + i) for i in range(steps)]
    assert main_calls == [(t_main + i, 0, t_main - 1 + i) for i in range(steps)]
    assert len(tap.history) == steps - 1  # one entry per main pass (the last stays in records)
    assert all(rec[0].probs.shape[-1] == t_main + i for i, rec in enumerate(tap.history))
