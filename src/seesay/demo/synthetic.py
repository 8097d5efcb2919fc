"""seesay shapes: a deterministic synthetic grounded-VQA benchmark for a tiny demo vision-language model.

Each sample is a small image (``IMAGE_SIZE`` x ``IMAGE_SIZE`` pixels by default, light grey background)
with 2 to 4 non-overlapping coloured shapes (circle, square, triangle; red, blue, green, yellow), one
question about it with a one-word answer, and the evidence boxes (pixels, ``[x0, y0, x1, y1]`` with
exclusive ends) that the answer rests on. Question types: ``color`` (colour of the only object of a
shape), ``shape`` (shape of the only object of a colour), ``exists`` (is there a red circle? yes/no,
balanced), ``count`` (how many circles? zero..four) and ``where`` (is the circle on the left or on the
right?). Records follow the Visual-CoT layout, so :func:`seesay.eval.data.load_visual_cot` reads what
:func:`write_split` writes.

The prior-bias knob: every shape has a usual colour (``USUAL_COLOR``: red circles, blue squares, green
triangles; yellow is never usual). In the ``train`` split an object takes its shape's usual colour with
probability ``prior`` (0.9 by default) and one of the other three colours otherwise, so a model can learn
to answer colour questions from the shape alone. Splits:

* ``train``: the biased distribution above;
* ``iid``: the same distribution as ``train``, from a different random stream (held-out, in-distribution);
* ``counterfactual``: every object has an unusual colour, so answering from the prior always fails and
  only looking at the image helps.

Determinism: :func:`generate` seeds ``np.random.default_rng([seed, SPLIT_CODE[split]])`` and draws the
records one after another from it, so the same arguments always give identical records (and, through
:func:`render`, byte-identical images), and the first ``k`` records of ``generate(split, n)`` equal
``generate(split, k)`` for every ``k < n``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow")
USUAL_COLOR: dict[str, str] = {"circle": "red", "square": "blue", "triangle": "green"}
RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (240, 200, 30),
}
BACKGROUND: tuple[int, int, int] = (211, 211, 211)
IMAGE_SIZE = 64
MIN_SIZE = 32
SPLITS: tuple[str, ...] = ("train", "iid", "counterfactual")
SPLIT_CODE: dict[str, int] = {"train": 0, "iid": 1, "counterfactual": 2}
QTYPES: tuple[str, ...] = ("color", "shape", "exists", "count", "where")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
DATASET = "seesay-shapes"

_MIN_OBJECTS, _MAX_OBJECTS = 2, 4
_MIN_SIDE, _MAX_SIDE = 12, 20  # pixels at IMAGE_SIZE, scaled with size / 64
_GAP = 2  # free pixels kept between any two boxes
_WHERE_MARGIN = 6  # pixels at IMAGE_SIZE between the object's centre and the centre line, scaled
_PLACE_TRIES = 100  # placement attempts per object before the scene starts over

_TEMPLATES: dict[str, str] = {
    "color": "what is the color of the {shape} ?",
    "shape": "what is the shape of the {color} object ?",
    "exists": "is there a {color} {shape} ?",
    "count": "how many {shape}s are there ?",
    "where": "is the {shape} on the left or on the right ?",
}


def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set(SHAPES) | set(COLORS) | set(NUMBER_WORDS) | {"yes", "no", "left", "right"}
    words |= {f"{shape}s" for shape in SHAPES}
    for template in _TEMPLATES.values():
        words |= {w for w in template.split(" ") if "{" not in w}
    return tuple(sorted(words))


VOCABULARY: tuple[str, ...] = _vocabulary()


@dataclass(frozen=True)
class SceneObject:
    """One shape: its name, colour name and box ``(x0, y0, x1, y1)`` in pixels, exclusive ends."""

    shape: str
    color: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """The objects of one image of ``size`` x ``size`` pixels."""

    objects: tuple[SceneObject, ...]
    size: int


# --------------------------------------------------------------------------------------------- scenes


def _scaled(pixels: int, size: int) -> int:
    return max(1, round(pixels * size / IMAGE_SIZE))


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _sample_color(rng: np.random.Generator, shape: str, prior: float, counterfactual: bool) -> str:
    usual = USUAL_COLOR[shape]
    if not counterfactual and rng.random() < prior:
        return usual
    return _pick(rng, tuple(c for c in COLORS if c != usual))


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether boxes ``a`` and ``b`` leave at least ``_GAP`` free pixels between them on some axis."""
    return a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0] or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1]


def _place(rng: np.random.Generator, side: int, size: int, taken: list) -> tuple[int, int, int, int] | None:
    for _ in range(_PLACE_TRIES):
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_apart(box, other) for other in taken):
            return box
    return None


def _check_args(prior: float, size: int) -> None:
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be in [0, 1], got {prior}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")


def sample_scene(
    rng: np.random.Generator, *, prior: float, counterfactual: bool, size: int = IMAGE_SIZE
) -> Scene:
    """2 to 4 non-overlapping shapes at random places; colours follow ``prior`` or, if ``counterfactual``,
    are always unusual for the shape."""
    _check_args(prior, size)
    lo, hi = _scaled(_MIN_SIDE, size), _scaled(_MAX_SIDE, size)
    while True:
        count = int(rng.integers(_MIN_OBJECTS, _MAX_OBJECTS + 1))
        objects: list[SceneObject] = []
        for _ in range(count):
            shape = _pick(rng, SHAPES)
            color = _sample_color(rng, shape, prior, counterfactual)
            box = _place(rng, int(rng.integers(lo, hi + 1)), size, [o.box for o in objects])
            if box is None:
                break
            objects.append(SceneObject(shape, color, box))
        if len(objects) == count:
            return Scene(tuple(objects), size)


# --------------------------------------------------------------------------------------------- images


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, fill) -> None:
    x0, y0, x1, y1 = obj.box
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene) -> Image.Image:
    """The scene as an RGB image: flat colours, no anti-aliasing, so the same scene gives the same pixels."""
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw(draw, obj, RGB[obj.color])
    return image


def object_mask(scene: Scene) -> np.ndarray:
    """``(size, size)`` uint8 array: ``k + 1`` where object ``k`` of ``scene.objects`` is drawn, 0 elsewhere
    (the same pixels :func:`render` paints)."""
    image = Image.new("L", (scene.size, scene.size), 0)
    draw = ImageDraw.Draw(image)
    for k, obj in enumerate(scene.objects):
        _draw(draw, obj, k + 1)
    return np.asarray(image).copy()


# ------------------------------------------------------------------------------------------ questions


def _with_shape(scene: Scene, shape: str) -> list[SceneObject]:
    return [o for o in scene.objects if o.shape == shape]


def _with_color(scene: Scene, color: str) -> list[SceneObject]:
    return [o for o in scene.objects if o.color == color]


def _unique_shapes(scene: Scene) -> list[str]:
    return [s for s in SHAPES if len(_with_shape(scene, s)) == 1]


def _unique_colors(scene: Scene) -> list[str]:
    return [c for c in COLORS if len(_with_color(scene, c)) == 1]


def _side_of(obj: SceneObject, size: int) -> str | None:
    """``left`` / ``right`` of the object's centre, or None when it is too close to the centre line."""
    offset = (obj.box[0] + obj.box[2]) / 2 - size / 2
    if abs(offset) < _WHERE_MARGIN * size / IMAGE_SIZE:
        return None
    return "left" if offset < 0 else "right"


def _sided_shapes(scene: Scene) -> list[str]:
    return [s for s in _unique_shapes(scene) if _side_of(_with_shape(scene, s)[0], scene.size) is not None]


def _possible_qtypes(scene: Scene) -> list[str]:
    possible = {
        "color": bool(_unique_shapes(scene)),
        "shape": bool(_unique_colors(scene)),
        "exists": True,
        "count": True,
        "where": bool(_sided_shapes(scene)),
    }
    return [q for q in QTYPES if possible[q]]


def _boxes(objects: list[SceneObject]) -> list[list[int]]:
    return [list(o.box) for o in objects]


def _ask(rng: np.random.Generator, scene: Scene, qtype: str) -> tuple[str, str, list[list[int]]]:
    """(question, answer, evidence boxes) of one question of ``qtype`` about ``scene``."""
    if qtype == "color":
        shape = _pick(rng, _unique_shapes(scene))
        (obj,) = _with_shape(scene, shape)
        return _TEMPLATES["color"].format(shape=shape), obj.color, [list(obj.box)]
    if qtype == "shape":
        color = _pick(rng, _unique_colors(scene))
        (obj,) = _with_color(scene, color)
        return _TEMPLATES["shape"].format(color=color), obj.shape, [list(obj.box)]
    if qtype == "exists":
        if rng.random() < 0.5:
            obj = _pick(rng, scene.objects)
            color, shape, answer = obj.color, obj.shape, "yes"
            evidence = [o for o in scene.objects if (o.color, o.shape) == (color, shape)]
        else:
            present = {(o.color, o.shape) for o in scene.objects}
            absent = [(c, s) for s in SHAPES for c in COLORS if (c, s) not in present]
            color, shape = _pick(rng, absent)
            answer = "no"
            evidence = _with_shape(scene, shape) or list(scene.objects)
        return _TEMPLATES["exists"].format(color=color, shape=shape), answer, _boxes(evidence)
    if qtype == "count":
        shape = _pick(rng, SHAPES)
        matches = _with_shape(scene, shape)
        evidence = matches or list(scene.objects)
        return _TEMPLATES["count"].format(shape=shape), NUMBER_WORDS[len(matches)], _boxes(evidence)
    if qtype == "where":
        shape = _pick(rng, _sided_shapes(scene))
        (obj,) = _with_shape(scene, shape)
        side = _side_of(obj, scene.size)
        return _TEMPLATES["where"].format(shape=shape), str(side), [list(obj.box)]
    raise ValueError(f"unknown question type {qtype!r}")


def make_sample(
    rng: np.random.Generator, *, prior: float, counterfactual: bool, size: int = IMAGE_SIZE
) -> dict:
    """One Visual-CoT style record (no image path yet) with the :class:`Scene` under ``scene``."""
    while True:
        scene = sample_scene(rng, prior=prior, counterfactual=counterfactual, size=size)
        qtypes = _possible_qtypes(scene)
        if qtypes:
            break
    qtype = _pick(rng, qtypes)
    question, answer, bboxs = _ask(rng, scene, qtype)
    return {
        "question": question,
        "answer": answer,
        "answers": [answer],
        "bboxs": bboxs,
        "width": size,
        "height": size,
        "qtype": qtype,
        "objects": [{"shape": o.shape, "color": o.color, "box": list(o.box)} for o in scene.objects],
        "counterfactual": counterfactual,
        "scene": scene,
    }


# ---------------------------------------------------------------------------------------------- splits


def generate(split: str, n: int, *, seed: int = 0, prior: float = 0.9, size: int = IMAGE_SIZE) -> list[dict]:
    """``n`` records of ``split`` (``train``, ``iid`` or ``counterfactual``), deterministic in the arguments;
    ``prior`` is ignored by the counterfactual split."""
    if split not in SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_args(prior, size)
    rng = np.random.default_rng([seed, SPLIT_CODE[split]])
    counterfactual = split == "counterfactual"
    records = []
    for i in range(n):
        sample = make_sample(rng, prior=prior, counterfactual=counterfactual, size=size)
        records.append({"question_id": f"{split}-{i:06d}", "split": split, "dataset": DATASET, **sample})
    return records


def write_split(
    out_dir: Path, split: str, n: int, *, seed: int = 0, prior: float = 0.9, size: int = IMAGE_SIZE
) -> Path:
    """Render ``split`` to ``out_dir/images/*.png`` and write ``out_dir/{split}.jsonl``; returns that path."""
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split}.jsonl"
    with path.open("w") as fh:
        for record in generate(split, n, seed=seed, prior=prior, size=size):
            name = f"images/{record['question_id']}.png"
            render(record["scene"]).save(out_dir / name)
            row = {k: v for k, v in record.items() if k != "scene"}
            row["image"] = name
            fh.write(json.dumps(row) + "\n")
    return path


__all__ = [
    "COLORS",
    "IMAGE_SIZE",
    "QTYPES",
    "RGB",
    "SHAPES",
    "SPLITS",
    "SPLIT_CODE",
    "USUAL_COLOR",
    "VOCABULARY",
    "Scene",
    "SceneObject",
    "generate",
    "make_sample",
    "object_mask",
    "render",
    "sample_scene",
    "write_split",
]
