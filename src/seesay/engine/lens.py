"""Hidden states of chosen layers at the last position, and the logit lens on them.

:func:`capture_hidden` registers forward hooks on the chosen decoder layers only and keeps the last
query position of each sample, so a pass costs O(layers asked x hidden) extra memory instead of
``output_hidden_states``' O(layers x tokens x hidden).

Layer indices: ``l`` in ``0 .. L-1`` is the OUTPUT of decoder layer ``l`` (= ``hidden_states[l + 1]``
in transformers, before the final norm); :data:`EMBEDDING_OUTPUT` (-1) is the input of layer 0
(= ``hidden_states[0]``, embeddings with image features merged).

Logit lens (arXiv 2601.07359 / DoLa):  z^(l) = lm_head(norm(h^(l)))  with the final norm optional for
l < L-1; for l = L-1 the norm is always applied, so the lens equals the model's own logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

from ..errors import ConfigError
from .adapters.base import ModelAdapter

EMBEDDING_OUTPUT = -1


class HiddenCapture:
    """Last-position hidden states of chosen layers, refreshed at every forward pass."""

    def __init__(self, layers: Iterable[int]):
        self.layers = tuple(sorted(set(int(i) for i in layers)))
        self.states: dict[int, torch.Tensor] = {}

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        # clone at a pass of several rows: a view would keep the layer's whole [B, T, d] output alive
        # (O(layers x tokens) memory); a decode step's output is that one row already
        last = hidden[:, -1]
        self.states[layer] = last if hidden.shape[1] == 1 else last.clone()

    def __getitem__(self, layer: int) -> torch.Tensor:
        return self.states[layer]


def _first_tensor(x):
    return x[0] if isinstance(x, tuple | list) else x


@contextlib.contextmanager
def capture_hidden(adapter: ModelAdapter, layers: Iterable[int]) -> Iterator[HiddenCapture]:
    """Hook the chosen decoder layers; the hooks are removed on exit."""
    capture = HiddenCapture(layers)
    n = adapter.num_layers
    for layer in capture.layers:
        if not EMBEDDING_OUTPUT <= layer < n:
            raise ConfigError(
                f"layer {layer} out of range: the model has {n} decoder layers (-1 = embeddings)"
            )
    handles = []
    try:
        for layer in capture.layers:
            if layer == EMBEDDING_OUTPUT:

                def pre_hook(module, args, kwargs, _l=layer):
                    hidden = args[0] if args else kwargs["hidden_states"]
                    capture._store(_l, hidden)

                handles.append(adapter.layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
            else:

                def hook(module, args, output, _l=layer):
                    capture._store(_l, _first_tensor(output))

                handles.append(adapter.layers[layer].register_forward_hook(hook))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


class LogitLens:
    """Read next-token logits out of intermediate layers.

    Args:
        adapter: the model adapter (gives final norm and lm_head).
        final_norm: apply the final norm to layers before the last (default True; DoLa's code had it off).
    """

    def __init__(self, adapter: ModelAdapter, final_norm: bool = True):
        self.adapter = adapter
        self.final_norm = final_norm

    def __call__(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Logits [..., V] from the output ``hidden`` [..., d] of decoder layer ``layer``."""
        return self.readout(hidden, last=layer == self.adapter.num_layers - 1)

    def readout(self, hidden: torch.Tensor, last: bool = False) -> torch.Tensor:
        """lm_head(norm(hidden)), the norm skipped for an early layer when ``final_norm`` is off."""
        return self.adapter.logits_from_hidden(self.normalize(hidden, last))

    def normalize(self, hidden: torch.Tensor, last: bool = False) -> torch.Tensor:
        """What lm_head is applied to: norm(hidden), or hidden for an early layer with ``final_norm`` off."""
        return self.adapter.final_norm(hidden) if (last or self.final_norm) else hidden

    def logits(self, capture: HiddenCapture, layers: Iterable[int] | None = None) -> dict[int, torch.Tensor]:
        """Float32 lens logits for each captured layer (or the ``layers`` given)."""
        layers = capture.layers if layers is None else layers
        return {layer: self(capture[layer], layer).float() for layer in layers}
