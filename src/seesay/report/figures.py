"""The report's plots (matplotlib, Agg backend), each returned as PNG bytes.

* :func:`method_comparison`: accuracy per method and split with 95% CIs, beside each method's paired
  difference from base with its 95% paired-bootstrap CI;
* :func:`layer_curves`: per-layer scores against depth (evidence AUROC / AUPRC / NDCG, lens accuracy),
  shallow and deep layers shaded, chosen layers marked; :func:`rapt_curves`: RAPT of each prompt segment;
* :func:`shift_profile`: one decode step's Hellinger shift between adjacent layers, the basic layer marked.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

Interval = tuple[float, float, float]  # (value, low, high)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return buf.getvalue()


def _errors(values: Sequence[Interval]) -> np.ndarray:
    return np.array([[v - lo for v, lo, _ in values], [hi - v for v, _, hi in values]])


def method_comparison(
    accuracy: Mapping[str, Mapping[str, Interval]],
    paired: Mapping[str, Mapping[str, Interval]],
    *,
    metric: str = "accuracy",
    title: str = "",
) -> bytes:
    """Left: ``accuracy[method][split] = (value, low, high)`` as grouped bars with 95% CIs. Right:
    ``paired[method][split]`` (the difference from base and its CI) as points with error bars, zero
    marked; percentages when every value lies in [0, 1]."""
    plt = _pyplot()
    methods = list(accuracy)
    splits = list(dict.fromkeys(s for per in accuracy.values() for s in per))
    width = 0.8 / max(1, len(methods))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    x = np.arange(len(splits))
    for k, method in enumerate(methods):
        values = [accuracy[method].get(s, (np.nan, np.nan, np.nan)) for s in splits]
        ax.bar(
            x + (k - (len(methods) - 1) / 2) * width,
            [100 * v[0] for v in values],
            width,
            yerr=100 * _errors(values),
            capsize=3,
            label=method,
        )
    ax.set_xticks(x, splits)
    ax.set_ylabel(f"{metric} (%, 95% CI)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"{metric} per method and split")
    ax = axes[1]
    others = [m for m in paired if paired[m]]
    labels = [f"{m} | {s}" for m in others for s in paired[m]]
    values = [paired[m][s] for m in others for s in paired[m]]
    if values:
        y = np.arange(len(values))[::-1]
        ax.errorbar(
            [100 * v[0] for v in values], y, xerr=100 * _errors(values), fmt="o", capsize=3, color="C3"
        )
        ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel("points (95% paired bootstrap CI)")
    ax.set_title("paired difference from base")
    fig.tight_layout()
    return png_bytes(fig)


def layer_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    shallow: Sequence[int] = (),
    deep: Sequence[int] = (),
    marked: Sequence[int] = (),
    marked_label: str = "chosen layers",
    chance: float | None = 0.5,
    title: str = "",
    ylabel: str = "score",
) -> bytes:
    """Each named per-layer curve against depth; ``shallow`` / ``deep`` layers shaded, ``marked``
    layers drawn as vertical lines, ``chance`` as a dotted line."""
    plt = _pyplot()
    n = max((len(v) for v in curves.values()), default=0)
    layers = np.arange(n)
    fig, ax = plt.subplots(figsize=(7.2, 3.6), dpi=110)
    if len(shallow):
        ax.axvspan(min(shallow) - 0.5, max(shallow) + 0.5, color="0.92", label="shallow")
    if len(deep):
        ax.axvspan(min(deep) - 0.5, max(deep) + 0.5, color="#e3ecf7", label="deep")
    for i, layer in enumerate(marked):
        ax.axvline(layer, color="C2", lw=1, ls="--", label=marked_label if i == 0 else None)
    for k, (name, values) in enumerate(curves.items()):
        ax.plot(np.arange(len(values)), np.asarray(values, dtype=float), "os^vD"[k % 5] + "-", label=name)
    if chance is not None:
        ax.axhline(chance, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if n:
        ax.set_xticks(layers if n <= 40 else layers[:: max(1, n // 20)])
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return png_bytes(fig)


def rapt_curves(rapt: Mapping[str, Sequence[float]], *, title: str = "RAPT per layer") -> bytes:
    """RAPT (mean attention per token of a prompt segment over that of the whole prompt) per layer;
    1 = the segment gets its share of attention."""
    return layer_curves(rapt, chance=1.0, title=title, ylabel="RAPT (1 = fair share)")


def shift_profile(shift: Mapping[str, float], basic_layer: int | None = None, *, title: str = "") -> bytes:
    """One step's shift between adjacent layers (``{"a->b": distance}``) as a small bar plot, the pair
    that ends at the basic layer in red."""
    plt = _pyplot()
    pairs = list(shift)
    ends = [int(p.split("->")[1]) for p in pairs]
    colours = ["C3" if e == basic_layer else "C0" for e in ends]
    fig, ax = plt.subplots(figsize=(3.6, 1.5), dpi=110)
    ax.bar(range(len(pairs)), [shift[p] for p in pairs], color=colours)
    ax.set_xticks(range(len(pairs)), [str(e) for e in ends], fontsize=6)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlabel("layer (pair ending at it)", fontsize=6)
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)
