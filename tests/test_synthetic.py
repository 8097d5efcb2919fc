"""seesay shapes: determinism, grounded evidence, correct answers, the prior knob, the files on disk."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from seesay.demo.synthetic import (
    BACKGROUND,
    COLORS,
    IMAGE_SIZE,
    QTYPES,
    RGB,
    SHAPES,
    USUAL_COLOR,
    VOCABULARY,
    Scene,
    SceneObject,
    generate,
    object_mask,
    render,
    sample_scene,
    write_split,
)
from seesay.eval.data import load_visual_cot

NUMBERS = ("zero", "one", "two", "three", "four")


def _dump(records: list[dict]) -> list[str]:
    return [json.dumps({k: v for k, v in r.items() if k != "scene"}, sort_keys=True) for r in records]


def _png(scene: Scene) -> bytes:
    buf = io.BytesIO()
    render(scene).save(buf, format="PNG")
    return buf.getvalue()


def _centre_rgb(image, box) -> tuple[int, int, int]:
    x0, y0, x1, y1 = box
    return image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))


@pytest.fixture(scope="module")
def train300() -> list[dict]:
    return generate("train", 300, seed=1)


def test_same_arguments_same_records_and_images():
    a, b = generate("train", 30, seed=3), generate("train", 30, seed=3)
    assert _dump(a) == _dump(b)
    assert [_png(r["scene"]) for r in a] == [_png(r["scene"]) for r in b]
    assert _dump(generate("train", 30, seed=4)) != _dump(a)
    assert _dump(generate("iid", 30, seed=3)) != _dump(a)  # another split is another stream


def test_prefix_property():
    full = generate("counterfactual", 25, seed=5)
    for k in (0, 1, 7, 24):
        assert _dump(generate("counterfactual", k, seed=5)) == _dump(full[:k])


def test_record_layout(train300):
    for i, r in enumerate(train300[:20]):
        assert r["question_id"] == f"train-{i:06d}"
        assert r["split"] == "train" and r["dataset"] == "seesay-shapes"
        assert r["answers"] == [r["answer"]]
        assert r["width"] == r["height"] == IMAGE_SIZE
        assert r["counterfactual"] is False
        assert [o["box"] for o in r["objects"]] == [list(o.box) for o in r["scene"].objects]


def test_scenes_are_well_formed(train300):
    for r in train300:
        objs = r["objects"]
        assert 2 <= len(objs) <= 4
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= IMAGE_SIZE and 0 <= y0 < y1 <= IMAGE_SIZE
            assert 12 <= x1 - x0 <= 20 and y1 - y0 == x1 - x0
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                ax0, ay0, ax1, ay1 = a["box"]
                bx0, by0, bx1, by1 = b["box"]
                assert ax1 + 2 <= bx0 or bx1 + 2 <= ax0 or ay1 + 2 <= by0 or by1 + 2 <= ay0


def _expected(r: dict) -> str:
    """The answer recomputed from ``objects`` and the question words alone."""
    words = r["question"].split(" ")
    objs = r["objects"]
    if r["qtype"] == "color":
        (obj,) = [o for o in objs if o["shape"] == words[6]]
        return obj["color"]
    if r["qtype"] == "shape":
        (obj,) = [o for o in objs if o["color"] == words[6]]
        return obj["shape"]
    if r["qtype"] == "exists":
        color, shape = words[3], words[4]
        return "yes" if any(o["color"] == color and o["shape"] == shape for o in objs) else "no"
    if r["qtype"] == "count":
        shape = words[2].removesuffix("s")
        return NUMBERS[sum(o["shape"] == shape for o in objs)]
    if r["qtype"] == "where":
        (obj,) = [o for o in objs if o["shape"] == words[2]]
        cx = (obj["box"][0] + obj["box"][2]) / 2
        assert abs(cx - r["width"] / 2) >= 6
        return "left" if cx < r["width"] / 2 else "right"
    raise AssertionError(r["qtype"])


@pytest.mark.parametrize("split", ["train", "counterfactual"])
def test_answers_are_correct(split):
    for r in generate(split, 300, seed=2):
        assert r["answer"] == _expected(r), r["question"]


def test_evidence_boxes_hold_the_objects(train300):
    for r in train300:
        image = render(r["scene"])
        words = r["question"].split(" ")
        objs = r["objects"]
        if r["qtype"] in ("color", "where"):
            (obj,) = [o for o in objs if o["shape"] == words[6 if r["qtype"] == "color" else 2]]
            assert r["bboxs"] == [obj["box"]]
            assert _centre_rgb(image, obj["box"]) == RGB[obj["color"]]
            if r["qtype"] == "color":
                assert _centre_rgb(image, r["bboxs"][0]) == RGB[r["answer"]]
        elif r["qtype"] == "shape":
            (obj,) = [o for o in objs if o["color"] == words[6]]
            assert r["bboxs"] == [obj["box"]]
            assert _centre_rgb(image, r["bboxs"][0]) == RGB[words[6]]
        elif r["qtype"] == "count":
            count = NUMBERS.index(r["answer"])
            shape = words[2].removesuffix("s")
            if count:
                assert len(r["bboxs"]) == count
                assert sorted(r["bboxs"]) == sorted(o["box"] for o in objs if o["shape"] == shape)
            else:
                assert sorted(r["bboxs"]) == sorted(o["box"] for o in objs)
        elif r["qtype"] == "exists":
            color, shape = words[3], words[4]
            if r["answer"] == "yes":
                assert r["bboxs"]
                for box in r["bboxs"]:
                    (obj,) = [o for o in objs if o["box"] == box]
                    assert (obj["color"], obj["shape"]) == (color, shape)
                    assert _centre_rgb(image, box) == RGB[color]
            else:
                same = [o["box"] for o in objs if o["shape"] == shape] or [o["box"] for o in objs]
                assert sorted(r["bboxs"]) == sorted(same)


def test_object_mask_is_what_render_paints(train300):
    for r in train300[:60]:
        scene = r["scene"]
        mask = object_mask(scene)
        painted = (np.asarray(render(scene)) != np.array(BACKGROUND)).any(-1)
        assert np.array_equal(mask > 0, painted)
        for k, obj in enumerate(scene.objects):
            ys, xs = np.nonzero(mask == k + 1)
            x0, y0, x1, y1 = obj.box
            assert xs.size > 0 and xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1


def test_background_and_shapes_render():
    scene = Scene(
        (
            SceneObject("circle", "red", (2, 2, 18, 18)),
            SceneObject("square", "yellow", (30, 2, 46, 18)),
            SceneObject("triangle", "blue", (2, 30, 22, 50)),
        ),
        64,
    )
    image = render(scene)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert image.getpixel((60, 60)) == image.getpixel((2, 2))  # box corners of a circle are background
    assert image.getpixel((30, 2)) == image.getpixel((45, 17)) == RGB["yellow"]  # a square fills its box
    assert image.getpixel((12, 31)) == RGB["blue"] and image.getpixel((3, 31)) != RGB["blue"]  # apex up
    assert image.getpixel((3, 49)) == RGB["blue"]  # base along the bottom
    colours = {c for _, c in image.getcolors()}
    assert colours == {RGB["red"], RGB["yellow"], RGB["blue"], image.getpixel((60, 60))}  # no blending


def _objects(split: str, n_objects: int, **kw) -> list[dict]:
    objs: list[dict] = []
    for r in generate(split, n_objects, **kw):  # >= 2 objects each, so n records are plenty
        objs.extend(r["objects"])
        if len(objs) >= n_objects:
            break
    return objs[:n_objects]


def test_colour_prior():
    cf = _objects("counterfactual", 500, seed=0)
    assert all(o["color"] != USUAL_COLOR[o["shape"]] for o in cf)
    assert {o["color"] for o in cf} == set(COLORS)
    assert all(o["color"] == USUAL_COLOR[o["shape"]] for o in _objects("train", 500, seed=0, prior=1.0))
    share = np.mean([o["color"] == USUAL_COLOR[o["shape"]] for o in _objects("train", 500, seed=0)])
    assert 0.85 <= share <= 0.95
    iid = np.mean([o["color"] == USUAL_COLOR[o["shape"]] for o in _objects("iid", 500, seed=0)])
    assert 0.85 <= iid <= 0.95


def test_sample_scene_counterfactual_flag():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = sample_scene(rng, prior=1.0, counterfactual=True)
        assert all(o.color != USUAL_COLOR[o.shape] for o in scene.objects)


def test_all_qtypes_and_vocabulary(train300):
    assert {r["qtype"] for r in train300} == set(QTYPES)
    vocab = set(VOCABULARY)
    assert len(vocab) == len(VOCABULARY)
    for r in train300 + generate("counterfactual", 100):
        assert set(r["question"].split(" ")) <= vocab, r["question"]
        assert r["answer"] in vocab
    assert {"?", "circles", "squares", "triangles", "yes", "no", "left", "right", *NUMBERS} <= vocab
    assert set(SHAPES) | set(COLORS) <= vocab
    exists = [r["answer"] for r in train300 if r["qtype"] == "exists"]
    assert 0.3 <= exists.count("yes") / len(exists) <= 0.7


def test_other_sizes_scale():
    for r in generate("iid", 20, size=128):
        assert r["width"] == 128
        for o in r["objects"]:
            side = o["box"][2] - o["box"][0]
            assert 24 <= side <= 40 and o["box"][2] <= 128 and o["box"][3] <= 128
        assert r["answer"] == _expected(r)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        generate("test", 3)
    with pytest.raises(ValueError, match="prior"):
        generate("train", 3, prior=1.5)


def test_write_split_loads_back(tmp_path):
    path = write_split(tmp_path / "shapes", "iid", 12, seed=7)
    assert path == tmp_path / "shapes" / "iid.jsonl"
    records = generate("iid", 12, seed=7)
    loaded = load_visual_cot(path)
    assert len(loaded) == 12
    for rec, ev in zip(records, loaded, strict=True):
        assert ev.id == rec["question_id"] and ev.question == rec["question"]
        assert ev.answers == (rec["answer"],)
        assert ev.image.exists() and ev.image.name == f"{rec['question_id']}.png"
        assert [list(map(int, b)) for b in ev.boxes] == rec["bboxs"]
        assert ev.dataset == "seesay-shapes" and ev.split == "iid" and ev.width == IMAGE_SIZE
        assert "scene" not in ev.extra and ev.extra["qtype"] == rec["qtype"]
        assert ev.image.read_bytes() == _png(rec["scene"])
