"""The Ray Data recipe of docs/evaluation.md: ``map_batches(SeesayPredictor, ...)`` on a local Ray gives
the answers ``seesay.ask`` gives one question at a time."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from seesay.demo.run import demo_model_path
from seesay.demo.synthetic_pope import write_pope


def test_ray_data_map_batches_matches_ask(tmp_path):
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):
            pytest.fail("the Ray recipe test needs ray[data] (bash scripts/install_harnesses.sh)")
        pytest.skip("ray is not installed (bash scripts/install_harnesses.sh)")
    import ray

    from seesay import ask, load_model
    from seesay.integrations.ray import SeesayPredictor

    data = write_pope(tmp_path / "pope", "random", 2, seed=3)
    rows = [json.loads(line) for line in data.open()]
    items = [{"id": str(r["question_id"]), "image": str(data.parent / r["image"]), "question": r["text"]}
             for r in rows]  # fmt: skip
    model = str(demo_model_path())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ds = ray.data.from_items(items).map_batches(
            SeesayPredictor,
            fn_constructor_kwargs={"model": model, "method": "dualpd", "options": {"rho": 0.2}},
            batch_size=3,
            concurrency=1,
            batch_format="numpy",
        )
        got = {r["id"]: (r["answer"], r["method"]) for r in ds.take_all()}
    finally:
        ray.shutdown()
    loaded = load_model(model)
    expected = {
        it["id"]: (ask(loaded, it["image"], it["question"], method="dualpd", rho=0.2).text, "dualpd")
        for it in items
    }
    assert len(got) == len(items) and got == expected
