"""Evaluation harness: loaders for every official format, runs, resume after a kill, data-parallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from seesay.errors import DataError
from seesay.eval.runner import evaluate, read_done
from seesay.eval.tasks import get_task
from seesay.testing.tiny import tiny_image

ANSWERS10 = ["red"] * 6 + ["blue"] * 4


def _img(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tiny_image(24 + 4 * (seed % 3), 20 + 4 * (seed % 2), seed=seed).save(path)


def make_vqa(root: Path, n: int = 3, name: str = "v2_OpenEnded_mscoco_val2014_questions.json") -> Path:
    qs, anns = [], []
    for i in range(n):
        qs.append({"question_id": 100 + i, "image_id": 7 + i, "question": f"what color is it {i} ?"})
        anns.append(
            {
                "question_id": 100 + i,
                "answers": [{"answer": a} for a in ANSWERS10],
                "answer_type": "other",
                "question_type": "what color",
            }
        )
        _img(root / "val2014" / f"COCO_val2014_{7 + i:012d}.jpg", i)
    path = root / name
    path.write_text(json.dumps({"data_subtype": "val2014", "questions": qs}))
    (root / name.replace("OpenEnded_", "").replace("_questions", "_annotations")).write_text(
        json.dumps({"annotations": anns})
    )
    return path


def make_textvqa(root: Path, n: int = 6) -> Path:
    data = []
    for i in range(n):
        data.append(
            {
                "question_id": i,
                "question": f"what is written {i} ?",
                "image_id": f"im{i}",
                "answers": ANSWERS10,
            }
        )
        _img(root / "train_images" / f"im{i}.jpg", i)
    path = root / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps({"data": data}))
    return path


def make_gqa(root: Path) -> Path:
    _img(root / "images" / "n1.jpg")
    path = root / "testdev_balanced_questions.json"
    path.write_text(json.dumps({"q1": {"imageId": "n1", "question": "is it red ?", "answer": "yes"}}))
    return path


def make_vizwiz(root: Path) -> Path:
    _img(root / "val" / "VizWiz_val_00000001.jpg")
    path = root / "val.json"
    path.write_text(
        json.dumps(
            [
                {
                    "image": "VizWiz_val_00000001.jpg",
                    "question": "what is this ?",
                    "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10,
                    "answerable": 0,
                }
            ]
        )
    )
    return path


def make_docvqa(root: Path) -> Path:
    _img(root / "documents" / "d1.png")
    path = root / "val_v1.0.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "questionId": 5,
                        "question": "what is the date ?",
                        "image": "documents/d1.png",
                        "answers": ["1 may", "may 1"],
                    }
                ]
            }
        )
    )
    return path


def make_parquet(root: Path) -> Path:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    tiny_image(20, 20).save(buf, format="PNG")
    table = pa.table(
        {
            "question_id": [1, 2],
            "question": ["a ?", "b ?"],
            "answers": [["x"] * 10, ["y"] * 10],
            "image": [{"bytes": buf.getvalue(), "path": None}] * 2,
        }
    )
    path = root / "textvqa_val.parquet"
    pq.write_table(table, path)
    return path


def test_loaders_read_every_official_format(tmp_path):
    vqa = get_task("vqav2").load(make_vqa(tmp_path / "vqa"), None)
    assert [s.id for s in vqa] == ["100", "101", "102"] and vqa[0].answers == tuple(ANSWERS10)
    assert vqa[0].image == tmp_path / "vqa" / "val2014" / "COCO_val2014_000000000007.jpg"
    assert (
        len(
            get_task("okvqa").load(
                make_vqa(tmp_path / "ok", 2, "OpenEnded_mscoco_val2014_questions.json"), None
            )
        )
        == 2
    )
    gqa = get_task("gqa").load(make_gqa(tmp_path / "gqa"), None)
    assert gqa[0].answers == ("yes",) and gqa[0].image.name == "n1.jpg"
    text = get_task("textvqa").load(make_textvqa(tmp_path / "tv", 2), None)
    assert text[1].image == tmp_path / "tv" / "train_images" / "im1.jpg"
    viz = get_task("vizwiz").load(make_vizwiz(tmp_path / "vw"), None)
    assert viz[0].answers[0] == "unanswerable"
    doc = get_task("docvqa").load(make_docvqa(tmp_path / "doc"), None)
    assert doc[0].id == "5" and doc[0].image == tmp_path / "doc" / "documents" / "d1.png"
    pq_samples = get_task("textvqa").load(make_parquet(tmp_path), None)
    assert [s.id for s in pq_samples] == ["1", "2"] and isinstance(pq_samples[0].load_image(), Image.Image)
    assert get_task("docvqa").max_new_tokens == 32


def test_malformed_files_name_file_and_record(tmp_path):
    bad = tmp_path / "TextVQA_bad.json"
    bad.write_text(
        json.dumps(
            {
                "data": [
                    {"question_id": 1, "question": "q", "image_id": "a", "answers": ["x"]},
                    {"question_id": 2, "question": "q", "answers": ["x"]},
                ]
            }
        )
    )
    with pytest.raises(DataError, match=r"TextVQA_bad\.json: record 1 has no 'image_id'"):
        get_task("textvqa").load(bad, None)
    bad.write_text("{ nope")
    with pytest.raises(DataError, match=r"TextVQA_bad\.json: not valid JSON"):
        get_task("textvqa").load(bad, None)
    q = make_vqa(tmp_path / "v")
    ann = q.with_name("v2_mscoco_val2014_annotations.json")
    ann.write_text(json.dumps({"annotations": [{"question_id": 100, "answers": [{"answer": 3}]}]}))
    with pytest.raises(DataError, match="record 0 has an answer"):
        get_task("vqav2").load(q, None)
    with pytest.raises(DataError, match="unknown benchmark"):
        get_task("mmmu")


def test_evaluate_writes_predictions_summary_manifest(tmp_path):
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    data = make_textvqa(tmp_path / "tv", 5)
    with pytest.warns(UserWarning, match="suppresses no head"):  # 4 heads: floor(0.15 x 4) = 0
        methods = ["base", "dualpd"]
        summary = evaluate(loaded, get_task("textvqa"), data, methods, tmp_path / "out", batch_size=2)
    assert set(summary) == {"base", "dualpd"} and summary["base"]["n"] == 5
    for method in ("base", "dualpd"):
        rows = [
            json.loads(x)
            for x in (tmp_path / "out" / "textvqa" / method / "predictions.jsonl").read_text().splitlines()
        ]
        assert [r["index"] for r in rows] == list(range(5))
        assert {"id", "prediction", "references", "score", "config"} <= set(rows[0])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    bench = manifest["benches"]["textvqa"]
    assert set(bench["methods"]) == {"base", "dualpd"} and bench["seed"] == 0
    assert bench["prompt_suffix"] == get_task("textvqa").prompt_suffix and bench["data_fingerprint"]
    assert {"torch", "transformers", "seesay"} <= set(manifest["versions"])
    assert (tmp_path / "out" / "summary.csv").read_text().startswith("bench,method,metric,value")


def test_resume_drops_a_partial_line_and_fills_the_gaps(tmp_path):
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    data = make_textvqa(tmp_path / "tv", 5)
    full = evaluate(loaded, get_task("textvqa"), data, ["base"], tmp_path / "a", batch_size=2)
    path = tmp_path / "b" / "textvqa" / "base" / "predictions.jsonl"
    path.parent.mkdir(parents=True)
    lines = (tmp_path / "a" / "textvqa" / "base" / "predictions.jsonl").read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2] + lines[3][:17])  # two done (not contiguous), one cut mid-line
    (tmp_path / "b" / "manifest.json").write_text((tmp_path / "a" / "manifest.json").read_text())
    resumed = evaluate(loaded, get_task("textvqa"), data, ["base"], tmp_path / "b", batch_size=2)
    rows = read_done(path)
    assert (
        sorted(rows) == sorted(json.loads(x)["id"] for x in lines) and len(path.read_text().splitlines()) == 5
    )
    assert resumed == full


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seesay", "eval", *args]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from seesay.testing.tiny import build_tiny_vlm

    return build_tiny_vlm("llava", save_to=tmp_path_factory.mktemp("evalmodel") / "m").path


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, saved_model):
    data = make_textvqa(tmp_path / "tv", 40)
    args = [
        "--bench",
        "textvqa",
        "--data",
        str(data),
        "--model",
        str(saved_model),
        "--batch-size",
        "1",
        "--methods",
        "base",
        "--max-new-tokens",
        "6",
    ]
    from seesay.cli import main

    assert main([*_cli(*args, "--out", str(tmp_path / "ref"))[3:]]) == 0  # the reference, in-process
    path = tmp_path / "run" / "textvqa" / "base" / "predictions.jsonl"
    proc = subprocess.Popen(
        _cli(*args, "--out", str(tmp_path / "run")), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < 3):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(path.read_bytes().splitlines())
    assert 0 < killed_at < 40, "the run finished before it could be killed"
    again = subprocess.run(
        _cli(*args, "--out", str(tmp_path / "run")), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    got = [json.loads(x) for x in path.read_text().splitlines()]
    want = [
        json.loads(x)
        for x in (tmp_path / "ref" / "textvqa" / "base" / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(got) == 40 and len({r["id"] for r in got}) == 40
    assert {r["id"]: r["prediction"] for r in got} == {r["id"]: r["prediction"] for r in want}


def test_two_process_accelerate_launch_matches_one_process(tmp_path, saved_model):
    data = make_textvqa(tmp_path / "tv", 7)
    args = [
        "--bench",
        "textvqa",
        "--data",
        str(data),
        "--model",
        str(saved_model),
        "--batch-size",
        "2",
        "--methods",
        "base,dualpd",
        "--max-new-tokens",
        "5",
    ]
    from seesay.cli import main

    assert main([*_cli(*args, "--out", str(tmp_path / "one"))[3:]]) == 0  # one process: in this one
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # torchrun-style launch; on a CPU-only machine the processes join over gloo
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "seesay",
        "eval",
        *args,
        "--out",
        str(tmp_path / "two"),
    ]
    two = subprocess.run(launch, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    for method in ("base", "dualpd"):
        a = (tmp_path / "one" / "textvqa" / method / "predictions.jsonl").read_text()
        b = (tmp_path / "two" / "textvqa" / method / "predictions.jsonl").read_text()
        assert a == b
        assert (tmp_path / "two" / "textvqa" / method / "predictions.rank1.jsonl").exists()
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s1 == s2
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["world_size"] == 2


def test_visual_cot_eval_scores_the_vea_map_against_the_boxes(tmp_path):
    from PIL import ImageDraw

    from tests.conftest import loaded_tiny

    rows = []
    for i in range(3):
        img = Image.new("RGB", (48, 40), (10, 10, 10))
        ImageDraw.Draw(img).rectangle([24, 0, 47, 19], fill=(240, 30, 30))
        img.save(tmp_path / f"i{i}.png")
        rows.append(
            {
                "question_id": i,
                "question": "what color is the box ?",
                "answer": "red",
                "image": f"i{i}.png",
                "bboxs": [[24, 0, 48, 20]],
            }
        )
    data = tmp_path / "cot.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = evaluate(loaded_tiny("llava"), get_task("visual_cot"), data, ["base", "vea"], tmp_path / "out")
    assert {"exact_match", "token_f1"} <= set(summary["base"])
    assert {"evidence_auroc", "evidence_auprc", "evidence_ndcg"} <= set(summary["vea"])
    assert 0.0 <= summary["vea"]["evidence_auroc"] <= 1.0
