"""Logit lens: last layer = model logits; layer l = lm_head(norm(h_l)); only asked layers are hooked."""

from __future__ import annotations

import torch

from seesay.engine.lens import EMBEDDING_OUTPUT, LogitLens, capture_hidden


def test_lens_equals_direct_readout(loaded, batch3):
    model, adapter, inputs = loaded.model, loaded.adapter, batch3.inputs
    n = adapter.num_layers
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        with capture_hidden(adapter, [EMBEDDING_OUTPUT, *range(n)]) as cap:
            model(**inputs)
        lens = LogitLens(adapter)
        raw = LogitLens(adapter, final_norm=False)
        assert (lens(cap[n - 1], n - 1) - out.logits[:, -1]).abs().max().item() <= 1e-5
        assert (
            raw(cap[n - 1], n - 1) - out.logits[:, -1]
        ).abs().max().item() <= 1e-5  # last layer always normed
        for layer in range(n - 1):
            h = out.hidden_states[layer + 1][:, -1]
            assert torch.allclose(cap[layer], h, atol=1e-6)
            direct = adapter.lm_head(adapter.final_norm(h))
            assert (lens(cap[layer], layer) - direct).abs().max().item() <= 1e-5
            assert (raw(cap[layer], layer) - adapter.lm_head(h)).abs().max().item() <= 1e-5
        assert torch.allclose(cap[EMBEDDING_OUTPUT], out.hidden_states[0][:, -1], atol=1e-6)


def test_capture_hooks_only_requested_layers(loaded, batch3):
    adapter = loaded.adapter
    before = [len(layer._forward_hooks) for layer in adapter.layers]
    with torch.no_grad(), capture_hidden(adapter, [1]) as cap:
        assert [len(layer._forward_hooks) for layer in adapter.layers][1] == before[1] + 1
        loaded.model(**batch3.inputs)
        assert set(cap.states) == {1}
        assert cap[1].shape == (3, adapter.text_config.hidden_size)
        # only the last position is kept, not a view into the layer's whole [B, T, d] output
        assert cap[1].untyped_storage().nbytes() == cap[1].numel() * cap[1].element_size()
    assert [len(layer._forward_hooks) for layer in adapter.layers] == before  # removed on exit


def test_capture_rejects_bad_layer(loaded):
    import pytest

    from seesay.errors import ConfigError

    with pytest.raises(ConfigError, match="out of range"), capture_hidden(loaded.adapter, [99]):
        pass
