"""Is left / right in the demo model's image features (docs/demo.md: lost before the fixed positions)?
Logistic-regression probes on the projector output (the language model's image tokens) of 400 "where"
questions (seed 424242, not a demo or training seed): each covered patch's object side (left / right /
near the centre), its colour, and every patch's own column.
Needs scikit-learn. Usage: python scripts/probe_where.py [MODEL]   (docs/demo.md quotes its output)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from seesay import load_model
from seesay.demo import synthetic
from seesay.demo.run import demo_model_path
from seesay.engine.loading import build_inputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_demo_model as script


def main() -> None:
    loaded = load_model(sys.argv[1] if len(sys.argv) > 1 else demo_model_path(), dtype="float32")
    records = [r for r in synthetic.generate("iid", 3000, seed=424242) if r["qtype"] == "where"][:400]
    captured: dict[str, torch.Tensor] = {}
    projector = loaded.model.model.multi_modal_projector
    hook = projector.register_forward_hook(lambda _m, _i, out: captured.__setitem__("p", out))
    covered, side, colour, every, column = [], [], [], [], []
    try:
        for start in range(0, len(records), 100):
            chunk = records[start : start + 100]
            images = [synthetic.render(r["scene"]) for r in chunk]
            batch = build_inputs(loaded, images, [r["question"] for r in chunk])
            with torch.no_grad():
                loaded.adapter.base_model(**batch.inputs, use_cache=False)
            for i, r in enumerate(chunk):
                labels, features = script.patch_labels(r["scene"]), captured["p"][i].numpy()
                for k in range(64):
                    every.append(features[k])
                    column.append(k % 8)
                    if labels[k, 0] > 0:
                        covered.append(features[k])
                        side.append(labels[k, 2])
                        colour.append(labels[k, 1])
    finally:
        hook.remove()

    def probe(x, y) -> float:
        x, y = np.array(x), np.array(y)
        n = len(y) // 2
        return LogisticRegression(max_iter=3000).fit(x[:n], y[:n]).score(x[n:], y[n:])

    majority = np.bincount(side).max() / len(side)
    print(f"covered patches: {len(side)}; object side {probe(covered, side):.3f} (majority {majority:.3f})")
    print(f"object colour {probe(covered, colour):.3f}")
    print(f"patch column {probe(every, column):.3f} (chance 0.125)")


if __name__ == "__main__":
    main()
