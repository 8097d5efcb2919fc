"""`seesay sweep`: grid parsing, one eval run per point, resume, CIs, plots."""

from __future__ import annotations

import csv
import json

import pytest

from seesay.demo import synthetic
from seesay.errors import ConfigError
from seesay.eval.sweep import grid_points, parse_grid, point_name


def test_parse_grid_values_and_errors():
    grid = parse_grid(["static_layer=1,3,none", "gamma=0,0.5", "candidate_layers=[1,2],none"], "dualpd")
    assert grid == {"static_layer": [1, 3, None], "gamma": [0, 0.5], "candidate_layers": [[1, 2], None]}
    assert parse_grid(["shift_metric=hellinger,js,kl"], "dualpd")["shift_metric"] == ["hellinger", "js", "kl"]
    assert parse_grid(["contrast=dola,none"], "dualpd")["contrast"] == ["dola", "none"]  # a text knob's word
    assert parse_grid(["profile=none"], "vea")["profile"] == [None]  # a knob whose default is None
    for bad, message in [
        (["rho"], "is not KEY=V1,V2"),
        (["nope=1,2"], "dualpd has no such option"),
        (["rho=0.1", "rho=0.2"], "given twice"),
        (["rho=0.1,0.1"], "lists a value twice"),
        ([], "at least one --grid"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad, "dualpd")
    with pytest.raises(ConfigError, match="unknown method"):
        parse_grid(["rho=0.1"], "nope")


def test_grid_points_and_names():
    points = grid_points({"a": [1, 2], "b": [None, "x"]})
    assert points == [{"a": 1, "b": None}, {"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 2, "b": "x"}]
    assert point_name({"static_layer": None, "gamma": 0.5}) == "static_layer=none,gamma=0.5"
    assert point_name({"candidate_layers": [1, 2]}) == "candidate_layers=_1_2_"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return synthetic.write_split(folder, "counterfactual", 6, seed=77)


def test_sweep_end_to_end_resumes_and_plots(data, tmp_path, capsys):
    from seesay.cli import main

    out = tmp_path / "sweep"
    args = [
        "sweep", "--method", "dualpd", "--grid", "gamma=0.5,1", "--grid", "static_layer=2,none",
        "--bench", "visual_cot", "--data", str(data), "--out", str(out), "--batch-size", "3",
        "--set", "rho=0.25",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "gamma=1,static_layer=none" in printed and "base" in printed
    payload = json.loads((out / "sweep.json").read_text())
    assert payload["method"] == "dualpd" and payload["fixed"] == {"rho": 0.25}
    assert payload["defaults"] == {"gamma": 0.9, "static_layer": None}
    names = [r["name"] for r in payload["rows"]]
    assert names == ["base", "gamma=0.5,static_layer=2", "gamma=0.5,static_layer=none",
                     "gamma=1,static_layer=2", "gamma=1,static_layer=none"]  # fmt: skip
    for row in payload["rows"]:
        assert row["n"] == 6 and row["low"] <= row["mean"] <= row["high"]
    # each point is an eval run of its own, with its config in the manifest and in every prediction
    point = out / "points" / "gamma=0.5,static_layer=2"
    preds = [json.loads(x) for x in (point / "visual_cot" / "dualpd" / "predictions.jsonl").open()]
    assert len(preds) == 6 and {
        (p["config"]["gamma"], p["config"]["static_layer"], p["config"]["rho"]) for p in preds
    } == {(0.5, 2, 0.25)}
    # rho=0.25, gamma=1 is DualPD's head filter off; static layer or not, the paired difference is computed
    rows = {r["name"]: r for r in payload["rows"]}
    assert rows["gamma=1,static_layer=2"]["vs_base"]["vs_base.n"] == 6
    with (out / "sweep.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 5 and table[0]["point"] == "base"
    for knob in ("gamma", "static_layer"):
        assert (out / f"sweep_{knob}.png").stat().st_size > 1000
    from seesay.eval.sweep import markdown_table

    md = markdown_table(out / "sweep.json").splitlines()
    assert len(md) == 2 + 5 and md[2].startswith("| base |")
    assert not any("(default)" in line for line in md)  # gamma 0.9 is not in this grid
    # a rerun resumes: nothing is recomputed (the prediction files are unchanged)
    before = (point / "visual_cot" / "dualpd" / "predictions.jsonl").read_bytes()
    assert main(args) == 0
    assert (point / "visual_cot" / "dualpd" / "predictions.jsonl").read_bytes() == before
    capsys.readouterr()
    # another fixed option at a point already run is refused like eval refuses it
    assert main([*args[:-1], "rho=0.5"]) == 2
    assert "rho" in capsys.readouterr().err


def test_sweep_refuses_bad_grids_before_loading(data, tmp_path, capsys):
    from seesay.cli import main

    base = [
        "sweep",
        "--method",
        "dualpd",
        "--bench",
        "visual_cot",
        "--data",
        str(data),
        "--out",
        str(tmp_path),
    ]
    assert main([*base, "--grid", "gamma=0.5,-1"]) == 2  # validated by the config
    err = capsys.readouterr().err
    assert "gamma" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--grid", "rho=0.1", "--set", "rho=0.2"]) == 2
    assert "set both" in capsys.readouterr().err
