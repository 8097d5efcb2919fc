"""Identity in the dtypes users run: with the tap installed and nothing edited, and every method at
strength zero, greedy tokens equal ``generate()``'s in float32, bfloat16 and float16 on all six tiny
families (``--dtype`` is honoured for ``tiny-random:`` models)."""

from __future__ import annotations

import pytest
import torch

from seesay.engine.decoding import GenerationSettings, decode
from seesay.engine.loading import build_inputs, load_model
from seesay.engine.tap import AttentionTap
from seesay.methods import get_method
from seesay.testing.tiny import FAMILIES
from tests.conftest import QUESTIONS, images

ZERO = {
    "base": {},
    "dualpd": {"contrast": "residual", "beta": 0.0, "rho": 0.0},
    "dola": {"alpha": 0.0},
    "vcd": {"alpha": 0.0},
    "pai": {"alpha": 0.0, "gamma": 1.0},
    "m3id": {"lam": 0.0},
    "icd": {"alpha": 0.0},
    "deco": {"alpha": 0.0},
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_strength_zero_is_plain_greedy_in_every_dtype(family, dtype):
    loaded = load_model(f"tiny-random:{family}", dtype=dtype)
    assert loaded.model.dtype == getattr(torch, dtype)
    batch = build_inputs(loaded, images(3), QUESTIONS)
    plain = loaded.model.generate(**batch.inputs, max_new_tokens=6, do_sample=False)
    settings = GenerationSettings(max_new_tokens=6)
    tapped = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings,
                    tap=AttentionTap(record="heads", record_score_norms=True))  # fmt: skip
    assert torch.equal(tapped.sequences, plain), "tap installed, nothing edited"
    for name, options in ZERO.items():
        out = get_method(name, **options).generate(loaded, batch, settings)
        assert torch.equal(out.sequences, plain), name


def test_dtype_aliases_and_sources_without_a_dtype():
    from seesay.engine.loading import register_model_source
    from seesay.testing.tiny import load_tiny_random

    assert load_tiny_random("llava", dtype="bf16").model.dtype == torch.bfloat16

    @register_model_source("no-dtype-test")
    def _source(spec, *, device=None, name=None):
        return load_tiny_random(spec, device=device, name=name)

    assert load_model("no-dtype-test:llava", dtype="bfloat16").model.dtype == torch.float32  # its default
