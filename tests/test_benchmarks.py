"""benchmarks/tap_overhead.py's batched inputs and one timing child, in process on a tiny model."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "tap_overhead.py"
_SPEC = importlib.util.spec_from_file_location("tap_overhead", _PATH)
tap_overhead = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tap_overhead)  # a missing or moved benchmark fails here, not a skip


def _args(**kw) -> argparse.Namespace:
    base = dict(
        device="cpu", dtype="float32", hidden=64, layers=4, heads=8, kv_heads=0, vocab=1000,
        text_tokens=6, new_tokens=2, repeats=2, threads=torch.get_num_threads(),
        modes="plain,loop,dualpd,vcd", image_tokens=576, batch=3, memory_mode=None,
    )  # fmt: skip
    return argparse.Namespace(**{**base, **kw})  # threads: the child sets them for the whole process


def test_batched_inputs_are_same_length_prompts_with_their_own_text_and_images():
    args = _args()
    with torch.random.fork_rng():  # build_model seeds the global generator
        model = tap_overhead.build_model(args)
    inputs = tap_overhead.make_inputs(model, 1152, args, batch=3)
    ids = inputs["input_ids"]
    assert ids.shape == (3, 1 + 1152 + 6) and bool(inputs["attention_mask"].all())
    assert inputs["pixel_values"].shape[0] == 3 * 2  # two images per sample
    assert bool((ids[:, 1:1153] == 3).all())
    assert not bool((ids[0, 1153:] == ids[1, 1153:]).all())  # each sample its own text
    one = tap_overhead.make_inputs(model, 1152, args)
    assert one["input_ids"].shape[0] == 1


def test_the_mode_list_is_the_runners():
    args = _args(batch=1)
    with torch.random.fork_rng():
        model = tap_overhead.build_model(args)
    inputs = tap_overhead.make_inputs(model, 576, args)
    assert tuple(tap_overhead.mode_runners(model, inputs)) == tap_overhead.MODES


def test_a_timing_child_runs_every_mode_on_a_batch():
    with torch.random.fork_rng():
        res = tap_overhead.child_timing(_args())
    assert set(res["per_token_s"]) == {"plain", "loop", "dualpd", "vcd"}
    assert all(len(v) == 2 for v in res["per_token_all"].values())
    # time to the first token: positive, and longer than one decode step (it holds the prefill)
    assert set(res["first_token_s"]) == set(res["per_token_s"])
    assert all(res["first_token_s"][m] > res["per_token_best_s"][m] > 0 for m in res["per_token_s"])
    assert res["passes_per_token"]["vcd"] == 2.0 and res["passes_per_token"]["dualpd"] == 1.0
    assert res["seq_len"] == 1 + 576 + 6
    paired = res["per_token_paired"]  # each round's time over the same round's plain time
    for mode in ("loop", "vcd"):
        times, plain = res["per_token_all"][mode], res["per_token_all"]["plain"]
        ratios = [t / p for t, p in zip(times, plain, strict=True)]
        assert paired[mode]["low"] == min(ratios) and paired[mode]["high"] == max(ratios)
    assert paired["plain"] == {"median": 1.0, "low": 1.0, "high": 1.0, "coverage": 0.5}


def _binomial_coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n+1-k)) for n draws of a continuous distribution, by enumerating the
    2^n sign patterns: the interval misses when fewer than k draws fall below the median, or above it."""
    import itertools

    misses = sum(1 for signs in itertools.product((0, 1), repeat=n) if sum(signs) < k or n - sum(signs) < k)
    return 1 - misses / 2**n


@pytest.mark.parametrize(
    ("n", "low", "high"),
    [(5, 1, 5), (6, 1, 6), (7, 1, 7), (9, 2, 8), (10, 2, 9), (15, 4, 12), (20, 6, 15)],
)
def test_the_median_interval_is_the_sign_test_interval(n, low, high):
    """Order statistics [x_(k), x_(n+1-k)] with the largest k still covering 95% (the published table:
    n=9 -> [2, 8], n=15 -> [4, 12], n=20 -> [6, 15]); below 6 values the full range, its coverage said."""
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose: rank n first
    got = tap_overhead.median_interval(values)
    assert (got["low"], got["high"]) == (low, high)
    assert got["median"] == (n + 1) / 2
    assert got["coverage"] == pytest.approx(_binomial_coverage(n, low))
    assert (got["coverage"] >= 0.95) == (n >= 6)
    if low + 1 <= (n + 1) // 2:  # the interval one rank narrower would cover less than 95%
        assert _binomial_coverage(n, low + 1) < 0.95


def test_paired_ratios_pair_each_round_with_its_own_plain_round():
    times = {"plain": [1.0, 2.0, 4.0], "m": [1.1, 2.2, 4.4], "slow_round": [2.0, 2.0, 4.0]}
    got = tap_overhead.paired_ratios(times)
    assert got["m"]["median"] == pytest.approx(1.1) and got["m"]["high"] == pytest.approx(1.1)
    assert got["slow_round"]["median"] == 1.0 and got["slow_round"]["high"] == 2.0
    with pytest.raises(ValueError):
        tap_overhead.paired_ratios({"plain": [1.0, 2.0], "m": [1.0]})  # a missing round is an error


def test_json_out_is_written_after_every_size(tmp_path):
    """A run cut short by a time limit keeps what it finished: --json-out is replaced after each size."""
    import json

    out = tmp_path / "run.json"
    args = _args(json_out=str(out))
    tap_overhead.save_json(args, {"576": {"batch": 1}})
    tap_overhead.save_json(args, {"576": {"batch": 1}, "2880": {"failed": "out of memory"}})
    saved = json.loads(out.read_text())
    assert list(saved["results"]) == ["576", "2880"] and saved["args"]["hidden"] == 64
    assert "image_tokens" not in saved["args"] and not (tmp_path / "run.json.part").exists()
    tap_overhead.save_json(_args(json_out=None), {"x": 1})  # no --json-out: nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_run_cut_after_its_first_size_keeps_it(tmp_path, monkeypatch):
    """main() saves --json-out after each size: a run stopped during its second size keeps the first."""
    import json
    import sys

    calls = []

    def fake_child(args, extra):
        if "--memory-mode" in extra:
            return {"peak": 1, "work": 1}
        calls.append(extra)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the device's time limit, in the middle of the second size
        return {"per_token_s": {"plain": 1.0}, "cuda_peak": {}}

    out = tmp_path / "cut.json"
    monkeypatch.setattr(tap_overhead, "_child", fake_child)
    argv = ["tap_overhead.py", "--modes", "plain", "--image-token-counts", "576,2880", "--json-out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(KeyboardInterrupt):  # the run is cut: main() does not finish
        tap_overhead.main()
    saved = json.loads(out.read_text())
    assert list(saved["results"]) == ["576"] and saved["results"]["576"]["memory"]["plain"]["peak"] == 1
