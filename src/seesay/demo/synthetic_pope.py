"""POPE (Li et al., EMNLP 2023, "Evaluating object hallucination in large vision-language models") built
from the shapes benchmark's scenes, in POPE's own question-file format.

An *object* is a colour-shape pair ("red circle"; 7 x 4 = 28 categories). Per image, up to
``per_image`` objects that are in it get a "yes" question, and as many that are not get a "no" one
("is there a red circle ?", the shapes benchmark's "exists" wording, which the bundled model was trained
on). The negatives are sampled three ways, as in POPE:

* ``random``: uniformly among the absent objects;
* ``popular``: the absent objects most frequent in the training split (ties by name);
* ``adversarial``: the absent objects that co-occur most often, in the training split, with the objects
  the image holds (summed over them; ties by frequency, then name).

The training-split statistics come from ``STATS_SCENES`` scenes of ``synthetic.generate("train", ...,
seed=0)``, the split the demo model was trained on. :func:`write_pope` writes
``out/pope_{variant}.jsonl`` (one JSON line per question: ``question_id``, ``image``, ``text``,
``label``, plus ``object`` and the evidence ``boxes``) and the images under ``out/images/``.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np

from . import synthetic

VARIANTS = ("random", "popular", "adversarial")
STATS_SCENES = 5000
OBJECTS: tuple[str, ...] = tuple(f"{c} {s}" for s in synthetic.SHAPES for c in synthetic.COLORS)


def _objects(scene: synthetic.Scene) -> list[str]:
    """The distinct objects of a scene, in scene order."""
    return list(dict.fromkeys(f"{o.color} {o.shape}" for o in scene.objects))


@lru_cache(maxsize=4)
def training_stats(prior: float = 0.9, n: int = STATS_SCENES) -> tuple[Counter, Counter]:
    """(frequency of each object, co-occurrence count of each unordered pair) over the training split."""
    freq: Counter = Counter()
    pairs: Counter = Counter()
    for record in synthetic.generate("train", n, seed=0, prior=prior):
        present = _objects(record["scene"])
        freq.update(present)
        pairs.update(frozenset(p) for p in combinations(sorted(present), 2))
    return freq, pairs


def negatives(
    variant: str, present: list[str], k: int, rng: np.random.Generator, freq: Counter, pairs: Counter
) -> list[str]:
    """``k`` absent objects by ``variant``'s rule (see the module docstring)."""
    absent = [o for o in OBJECTS if o not in present]
    if variant == "random":
        return [absent[i] for i in rng.choice(len(absent), size=k, replace=False)]
    if variant == "popular":
        return sorted(absent, key=lambda o: (-freq[o], o))[:k]
    if variant == "adversarial":

        def together(o: str) -> int:
            return sum(pairs[frozenset((o, p))] for p in present)

        return sorted(absent, key=lambda o: (-together(o), -freq[o], o))[:k]
    raise ValueError(f"unknown POPE variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def pope_records(
    variant: str, n_images: int, *, seed: int = 0, split: str = "iid", prior: float = 0.9, per_image: int = 3
) -> list[dict]:
    """POPE questions about the first ``n_images`` scenes of ``synthetic.generate(split, ..., seed)``:
    per image its "yes" questions, then its "no" ones; each record also holds its ``scene``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown POPE variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    freq, pairs = training_stats(prior)
    rng = np.random.default_rng([seed, VARIANTS.index(variant)])
    out: list[dict] = []
    for i, record in enumerate(synthetic.generate(split, n_images, seed=seed, prior=prior)):
        scene = record["scene"]
        present = _objects(scene)
        order = rng.permutation(len(present))
        positives = [present[j] for j in order[:per_image]]
        chosen = [(o, "yes") for o in positives]
        chosen += [(o, "no") for o in negatives(variant, present, len(positives), rng, freq, pairs)]
        for obj, label in chosen:
            color, shape = obj.split(" ")
            same = [o for o in scene.objects if (o.color, o.shape) == (color, shape)]
            evidence = same if label == "yes" else [o for o in scene.objects if o.shape == shape]
            out.append(
                {
                    "question_id": len(out) + 1,
                    "image": f"images/pope-{split}-{seed}-{i:06d}.png",
                    "text": synthetic._TEMPLATES["exists"].format(color=color, shape=shape),
                    "label": label,
                    "object": obj,
                    "boxes": [list(o.box) for o in (evidence or scene.objects)],
                    "scene": scene,
                }
            )
    return out


def write_pope(
    out_dir: str | Path, variant: str, n_images: int, *, seed: int = 0, split: str = "iid", prior: float = 0.9
) -> Path:
    """Write ``out_dir/pope_{variant}.jsonl`` and its images; returns the question file."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = pope_records(variant, n_images, seed=seed, split=split, prior=prior)
    path = out / f"pope_{variant}.jsonl"
    with path.open("w") as fh:
        for record in records:
            image = out / record["image"]
            if not image.exists():
                synthetic.render(record["scene"]).save(image)
            fh.write(json.dumps({k: v for k, v in record.items() if k != "scene"}) + "\n")
    return path
