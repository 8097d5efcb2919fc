"""`seesay report`: figures, gallery, readers of every source, the page, and the CLI end to end."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from seesay.demo import synthetic
from seesay.errors import DataError
from seesay.methods.vea.evidence import compact_map, expand_map
from seesay.report import figures, write_report, write_sections
from seesay.report.gallery import GalleryItem, draw_boxes, pick
from seesay.report.model import Figure, Section, Table
from seesay.report.sources import comparison, read_source, trace_tokens


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).convert("RGB")


def _drawn(image: Image.Image) -> bool:
    """More than one colour: something was drawn."""
    return len(set(image.getdata())) > 1


def test_figures_are_non_empty_pngs():
    acc = {"base": {"iid": (0.9, 0.85, 0.93), "cf": (0.5, 0.45, 0.55)}, "x": {"iid": (0.8, 0.7, 0.85)}}
    paired = {"x": {"iid": (-0.1, -0.15, -0.05)}}
    for data in (
        figures.method_comparison(acc, paired),
        figures.layer_curves({"a": [0.5, 0.6, 0.9]}, shallow=[0], deep=[1, 2], marked=[2]),
        figures.rapt_curves({"image": [1.0, 2.0], "question": [0.5, 0.4]}),
        figures.shift_profile({"0->1": 0.1, "1->2": 0.4}, basic_layer=2),
    ):
        image = _png(data)
        assert min(image.size) > 50 and _drawn(image)


def test_compact_map_round_trip():
    emap = np.zeros((64, 96))
    emap[16:32, 48:80] = 1.0
    stored = compact_map(emap, side=32)
    assert stored["shape"] == [21, 32] and len(stored["values"]) == 21 * 32
    back = expand_map(stored, (96, 64))
    assert back.shape == (64, 96) and back.min() >= 0 and back.max() <= 1
    assert back[24, 64] > 0.9 and back[5, 5] < 0.05  # the bright block stays where it was
    assert expand_map(compact_map(np.full((10, 10), 0.25)), (10, 10)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="values for shape"):
        expand_map({"shape": [2, 2], "values": [0.0]}, (4, 4))


def _item(name: str, correct: dict[str, bool], **kw) -> GalleryItem:
    return GalleryItem(
        name, "q?", ["red"], {m: "red" for m in correct}, correct, Image.new("RGB", (8, 8)), **kw
    )


def test_gallery_tags_and_pick():
    fixed = _item("f", {"base": False, "dualpd": True, "vea": False})
    broken = _item("b", {"base": True, "dualpd": False, "vea": True})
    both = _item("fb", {"base": False, "dualpd": True, "vea": True})
    agree = _item("a", {"base": True, "dualpd": True, "vea": True})
    assert fixed.tags() == ["fixed:dualpd"]
    assert broken.tags() == ["broken:dualpd"]
    assert both.tags() == ["fixed:dualpd", "fixed:vea"]
    assert agree.tags() == ["agree"]
    items = [agree, fixed, agree, broken, both]
    chosen = pick(items, limit=3)
    assert [i.id for i in chosen] == ["f", "b", "fb"]  # changes first, each tag's queue in turn
    assert [i.id for i in pick([agree, fixed], limit=5)] == ["f", "a"]


def test_gallery_panels_and_json_round_trip():
    image = synthetic.render(synthetic.generate("iid", 1, seed=3)[0]["scene"])
    emap = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    item = _item("x", {"base": True}, boxes=[[8, 8, 24, 24]], emap=emap)
    item.image = image
    captions = [c for c, _ in item.panels()]
    assert captions == ["image", "evidence boxes", "evidence map", "highlighted"]
    assert all(t.size[1] > 64 for _, t in item.panels())
    boxed = np.asarray(draw_boxes(image, [[8, 8, 24, 24]]))
    assert tuple(boxed[8, 12]) == (0, 230, 0) and tuple(boxed[30, 30]) == tuple(np.asarray(image)[30, 30])
    back = GalleryItem.from_json(json.loads(json.dumps(item.to_json())))
    assert back.correct == item.correct and back.boxes == item.boxes
    assert np.asarray(back.image).tolist() == np.asarray(image).tolist()  # PNG is lossless
    assert np.abs(back.emap - emap).max() < 0.05


def test_comparison_matches_stats():
    from seesay.eval.stats import mean_interval, paired_difference

    base = {f"{i:03d}": float(i % 2) for i in range(40)}
    other = {f"{i:03d}": float(i % 3 != 0) for i in range(40)}
    accuracy, paired, table = comparison({"base": {"s": base}, "x": {"s": other}}, "acc")
    assert accuracy["x"]["s"] == mean_interval(list(other.values()))
    d = paired_difference(list(base.values()), list(other.values()))
    assert paired["x"]["s"] == (d.diff, d.low, d.high)
    assert table.rows[1][-1] == f"{d.p_value:.3g}" and table.rows[0][-1] == ""


def test_trace_tokens_read_dualpd_rows():
    rows = [
        {"token_id": 5, "token": "red", "step": 0, "shift": {"0->1": 0.1, "1->2": 0.3}, "basic_layer": 2,
         "suppressed_heads": {"1": [0], "2": [3]}},
        {"token_id": 2, "token": "</s>", "step": 1},
    ]  # fmt: skip
    tokens = trace_tokens(rows)
    assert tokens[0].basic_layer == 2 and tokens[0].suppressed == {"1": [0], "2": [3]}
    assert tokens[0].figure is not None and _drawn(_png(tokens[0].figure.png))
    assert tokens[1].figure is None and tokens[1].basic_layer is None


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', html)


def check_page(html: str, kinds: set[str]) -> None:
    """Self-contained: every figure an inline, decodable, non-empty PNG; no URL leaves the file."""
    sources = _img_sources(html)
    assert sources
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert _png(base64.b64decode(src.split(",", 1)[1])).size[0] > 0
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "http://" not in html and "https://" not in html
    found = set(re.findall(r'<section class="(\w+)"', html))
    assert kinds <= found, found


def test_page_escapes_and_names_figures(tmp_path):
    png = figures.shift_profile({"0->1": 0.2}, 1)
    sections = [
        Section("methods", "a <b> & c", figures=[Figure("x.png", png), Figure("x.png", png)],
                tables=[Table("t", ["<col>"], [["<cell>"]])]),
    ]  # fmt: skip
    result = write_sections(sections, tmp_path / "r.html")
    html = result.html.read_text()
    assert "a &lt;b&gt; &amp; c" in html and "&lt;cell&gt;" in html and "<cell>" not in html
    assert sorted(p.name for p in result.figures) == ["x.png", "x_2.png"]  # same names kept apart
    assert all(p.read_bytes() == png for p in result.figures)
    check_page(html, {"methods"})


def test_profile_and_trace_sources(tmp_path):
    from seesay.methods.vea.profiling import LayerProfile

    rapt = {"image": [1, 2, 3, 2], "question": [1, 0.5, 0.4, 0.3]}
    profile = LayerProfile("m", 4, (2,), [0.5, 0.6, 0.9, 0.8], [0.3] * 4, [0.4] * 4, rapt=rapt, n_samples=7)
    profile.save(tmp_path / "p.json")
    (section,) = read_source(tmp_path / "p.json")
    assert section.kind == "layers" and len(section.figures) == 2
    assert section.tables[0].rows[2][:2] == ["2", "0.900"]
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        json.dumps({"token_id": 1, "token": "a", "basic_layer": 1, "shift": {"0->1": 0.5}}) + "\n"
    )
    (section,) = read_source(trace)
    assert section.kind == "trace" and section.traces[0].tokens[0].basic_layer == 1
    trace.write_text('{"nope": 1}\n')
    with pytest.raises(DataError, match="no token_id"):
        read_source(trace)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """A finished eval run of the bundled model: base, dualpd (traced) and vea on 6 synthetic questions."""
    from seesay.cli import main

    root = tmp_path_factory.mktemp("report_eval")
    data = synthetic.write_split(root / "data", "counterfactual", 6, seed=91)
    out = root / "run"
    args = ["eval", "--bench", "visual_cot", "--data", str(data), "--methods", "base,dualpd,vea",
            "--out", str(out), "--batch-size", "3", "--trace",
            "--report", str(root / "eval.html")]  # fmt: skip
    assert main(args) == 0
    return root, out


def test_eval_run_report(eval_run):
    root, out = eval_run
    html = (root / "eval.html").read_text()
    check_page(html, {"methods", "gallery", "trace"})
    rows = [json.loads(x) for x in (out / "visual_cot" / "vea" / "predictions.jsonl").open()]
    assert all(len(r["evidence_map"]["values"]) == np.prod(r["evidence_map"]["shape"]) for r in rows)
    traced = [json.loads(x) for x in (out / "visual_cot" / "dualpd" / "predictions.jsonl").open()]
    assert all(r["trace"] and "basic_layer" in r["trace"][0] for r in traced)
    sections = read_source(out)
    gallery = next(s for s in sections if s.kind == "gallery")
    assert len(gallery.gallery) == 6 and all(i.emap is not None for i in gallery.gallery)
    assert {len(i.panels()) for i in gallery.gallery} == {4}
    methods = next(s for s in sections if s.kind == "methods")
    assert [r[0] for r in methods.tables[0].rows] == ["base", "dualpd", "vea"]
    # each card carries the tags the filter buttons select
    for item in gallery.gallery:
        assert f'data-tags="{" ".join(item.tags())}"' in html


def test_eval_report_without_data_says_so(eval_run, tmp_path):
    import shutil

    _root, out = eval_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["benches"]["visual_cot"]["data"] = str(tmp_path / "gone.jsonl")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    gallery = next(s for s in read_source(copy) if s.kind == "gallery")
    assert not gallery.gallery and "no gallery" in gallery.notes[0]


def test_sweep_folder_report(tmp_path):
    from seesay.eval.sweep import SweepResult, SweepRow, write_sweep

    base = SweepRow({}, "base", "acc", 0.5, 0.4, 0.6, 50)
    rows = [
        SweepRow({"gamma": g}, f"gamma={g}", "acc", m, m - 0.1, m + 0.1, 50,
                 {"vs_base.diff": m - 0.5, "vs_base.ci_low": m - 0.6, "vs_base.ci_high": m - 0.4,
                  "vs_base.mcnemar_p": 0.5})
        for g, m in ((0.5, 0.55), (0.9, 0.6))
    ]  # fmt: skip
    result = SweepResult("dualpd", "visual_cot", "acc", {"gamma": [0.5, 0.9]}, {"gamma": 0.9}, base, rows)
    write_sweep(tmp_path, result, {})
    (section,) = read_source(tmp_path)
    assert section.kind == "sweep" and len(section.figures) == 1 and _drawn(_png(section.figures[0].png))
    assert [r[0] for r in section.tables[0].rows] == ["base", "gamma=0.5", "gamma=0.9"]
    report = write_report([tmp_path], tmp_path / "s.html")
    check_page(report.html.read_text(), {"sweep"})


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """``seesay demo --report`` on 30 questions per split, and its JSON."""
    from seesay.cli import main

    root = tmp_path_factory.mktemp("report_demo")
    args = ["demo", "--n", "30", "--png", str(root / "d.png"), "--layers-png", str(root / "l.png"),
            "--report", str(root / "demo.html"), "--json", str(root / "demo.json")]  # fmt: skip
    assert main(args) == 0
    return root


def test_demo_report(demo_report):
    html = (demo_report / "demo.html").read_text()
    check_page(html, {"methods", "layers", "gallery", "trace"})
    data = json.loads((demo_report / "demo.json").read_text())
    assert data["format"] == "seesay-demo/2" and len(data["gallery"]) == 16 and len(data["traces"]) == 4
    # seesay report of the saved run gives the same sections and figures as the direct one
    again = write_report([demo_report / "demo.json"], demo_report / "again.html")
    assert set(re.findall(r'<section class="(\w+)"', again.html.read_text())) == set(
        re.findall(r'<section class="(\w+)"', html)
    )
    assert len(_img_sources(again.html.read_text())) == len(_img_sources(html))
    files = sorted(p.name for p in (demo_report / "demo_files").iterdir())
    assert "demo_methods.png" in files and "demo_layers.png" in files


def _browser_or_skip():
    """Chromium and Playwright, or a skip; in CI (``CI`` set) their absence is a failure."""
    import importlib.util
    import os

    from seesay.testing.browser import chromium_path

    missing = [
        what
        for what, ok in (
            ("playwright", importlib.util.find_spec("playwright") is not None),
            ("chromium", chromium_path() is not None),
        )
        if not ok
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {', '.join(missing)} (.ci/run installs them)")
        pytest.skip(f"no {', '.join(missing)} here")


def test_demo_report_in_a_real_browser(demo_report, tmp_path):
    """Headless Chromium loads the demo's report from a file URL: no console error, no request but the
    file itself, every figure decoded, a screenshot of each section, the gallery filters work."""
    _browser_or_skip()
    from seesay.testing.browser import check_page as in_browser

    seen = in_browser(demo_report / "demo.html", shots=tmp_path / "shots")
    assert seen.console_errors == [] and seen.page_errors == []
    assert seen.network == [] and seen.requests[0].startswith("file:")
    assert seen.images > 20 and seen.broken_images == []
    assert [k.split("_", 1)[1] for k in seen.sections] == ["methods", "layers", "gallery", "trace"]
    for path in seen.sections.values():
        shot = Image.open(path).convert("RGB")
        assert shot.size[0] > 400 and shot.size[1] > 100 and _drawn(shot)
    assert seen.clicks["all"][0] == 16
    for tag, (shown, expected) in seen.clicks.items():
        assert shown == expected, tag


def test_browser_check_catches_errors_and_requests(tmp_path):
    """The same check on a page that does what a report must not: it is caught."""
    _browser_or_skip()
    from seesay.testing.browser import check_page as in_browser

    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><main><section data-kind='x'>hi</section></main>"
        "<img alt='remote' src='http://127.0.0.1:9/x.png'><img alt='junk' src='data:image/png;base64,AAAA'>"
        "<script>console.error('bad'); throw new Error('boom');</script></body></html>"
    )
    seen = in_browser(page)
    assert seen.console_errors and "boom" in " ".join(seen.page_errors)
    assert seen.network == ["http://127.0.0.1:9/x.png"]
    assert set(seen.broken_images) == {"remote", "junk"}


def test_demo_runs_of_format_1_are_read_and_a_damaged_size_is_one_line(demo_report):
    """A demo run written before the sizes were planned (format seesay-demo/1, one "n" for both splits)
    is still read; an "n" that is no question count is a damaged run (DataError), not a traceback."""
    from seesay.report.sources import demo_sections

    planned = json.loads((demo_report / "demo.json").read_text())
    assert planned["n"] == {"iid": 30, "counterfactual": 30}
    old = {**planned, "format": "seesay-demo/1", "n": 30}
    sections = demo_sections(old, "old.json")
    assert sections[0].title == "demo: methods compared (30 questions per split)"
    assert {row[3] for row in sections[0].tables[0].rows} == {"30"}
    uneven = {**planned, "n": {"iid": 20, "counterfactual": 30}}
    assert demo_sections(uneven, "new.json")[0].title == "demo: methods compared (iid 20, counterfactual 30)"
    with pytest.raises(DataError, match="damaged demo run"):
        demo_sections({**planned, "n": {"iid": [1]}}, "bad.json")
