"""Paired significance in every eval summary: each method against base on the same questions."""

from __future__ import annotations

import csv
import json

import pytest

from seesay.cli import main
from seesay.eval.runner import against_base
from seesay.eval.stats import mcnemar_exact, paired_bootstrap
from tests.bad_input_cases import textvqa


def _rows(scores):
    return {str(i): {"score": {"exact_match": s}} for i, s in enumerate(scores)}


def test_against_base_hand_computed():
    base = _rows([1, 0, 0, 0, 0, 0, 1, 1])
    other = _rows([0, 1, 1, 1, 1, 1, 1, 1])
    got = against_base(base, other, "exact_match")
    assert got["vs_base.diff"] == pytest.approx(4 / 8) and got["vs_base.n"] == 8
    assert got["vs_base.mcnemar_p"] == pytest.approx(2 * 7 / 64)  # 6 discordant, 1 against
    ids = sorted(base)
    want = paired_bootstrap(
        [base[i]["score"]["exact_match"] for i in ids], [other[i]["score"]["exact_match"] for i in ids]
    )
    assert (got["vs_base.ci_low"], got["vs_base.ci_high"]) == pytest.approx(want[1:])
    # samples without the metric are left out of the pairing; continuous scores get no McNemar p
    base["8"], other["8"] = {"score": {"exact_match": None}}, {"score": {"exact_match": 1}}
    assert against_base(base, other, "exact_match")["vs_base.n"] == 8
    assert against_base(_rows([0.3, 1.0]), _rows([0.6, 1.0]), "exact_match")["vs_base.mcnemar_p"] is None
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0


def test_eval_summary_table_json_and_csv_carry_the_paired_columns(tmp_path, capsys):
    from seesay.testing.tiny import build_tiny_vlm

    model = build_tiny_vlm("llava", save_to=tmp_path / "m").path
    data = textvqa(tmp_path / "tv", 6)
    args = [
        "eval",
        "--bench",
        "textvqa",
        "--data",
        str(data),
        "--model",
        str(model),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--methods", "base,dualpd", "--set", "dualpd.beta=2", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "against base on the same questions" in out and "McNemar" in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["textvqa"]
    assert summary["dualpd"]["vs_base.metric"] == "vqa_accuracy" and summary["dualpd"]["vs_base.n"] == 6
    assert (
        summary["dualpd"]["vs_base.ci_low"]
        <= summary["dualpd"]["vs_base.diff"]
        <= summary["dualpd"]["vs_base.ci_high"]
    )
    assert "vs_base.diff" not in summary["base"]
    with (tmp_path / "o" / "summary.csv").open() as f:
        metrics = {(r["method"], r["metric"]) for r in csv.DictReader(f)}
    assert {("dualpd", "vs_base.diff"), ("dualpd", "vs_base.mcnemar_p")} <= metrics
