"""The bad-input cases of the command line, one per row of docs/bad_input.md.

Each case builds its argv in a scratch folder and names the text its one-line message must contain and
the exit code. ``tests/test_bad_input.py`` runs every case; with ``SEESAY_WRITE_DOCS=1`` it also writes
the table (case | message | exit code) to docs/bad_input.md, and otherwise checks the file is current.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], list[str]]  # (scratch folder, saved tiny model) -> argv
    needle: str
    code: int = 2


def textvqa(root: Path, n: int = 3, ids: list[int] | None = None, image: str | None = None) -> Path:
    """A TextVQA-format file with ``n`` questions and their images under ``root``."""
    (root / "train_images").mkdir(parents=True, exist_ok=True)
    data = []
    for i, qid in enumerate(ids if ids is not None else range(n)):
        Image.new("RGB", (24, 20), (40 * i % 255, 90, 30)).save(root / "train_images" / f"im{i}.jpg")
        data.append(
            {
                "question_id": qid,
                "question": f"what is written {i} ?",
                "image_id": image if image is not None and i == 0 else f"im{i}",
                "answers": ["red"] * 10,
            }
        )
    path = root / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps({"data": data}))
    return path


def _eval(tmp: Path, model: Path, *extra: str, data: Path | None = None) -> list[str]:
    data = data or textvqa(tmp / "tv")
    return [
        "eval",
        "--bench",
        "textvqa",
        "--data",
        str(data),
        "--model",
        str(model),
        "--out",
        str(tmp / "out"),
        "--max-new-tokens",
        "2",
        *extra,
    ]


def _sweep(tmp: Path, model: Path, *extra: str) -> list[str]:
    data = textvqa(tmp / "tv")
    return ["sweep", "--method", "dualpd", "--bench", "textvqa", "--data", str(data), "--model", str(model),
            "--out", str(tmp / "out"), *extra]  # fmt: skip


def _ask(tmp: Path, model: Path, *extra: str) -> list[str]:
    return ["ask", "--model", str(model), "--image", str(EXAMPLE), "--question", "what ?", *extra]


def _stale(tmp: Path, model: Path) -> list[str]:
    from seesay.cli import main

    assert main(_eval(tmp, model, "--limit", "3")) == 0
    return _eval(tmp, model, "--limit", "2")


def _retrained(tmp: Path, model: Path) -> list[str]:
    """A run into --out, then the model folder's weights change (retrained, saved to the same path)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from seesay.cli import main

    copy = tmp / "model"
    shutil.copytree(model, copy)
    assert main(_eval(tmp, copy, "--limit", "3")) == 0
    weights = copy / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    return _eval(tmp, copy, "--limit", "3")


_HELD: list = []  # locks this test process holds, as another run would


def _locked(tmp: Path, model: Path) -> list[str]:
    from seesay.eval.rundir import RunLock

    lock = RunLock(tmp / "out")
    lock.acquire()
    _HELD.append(lock)
    return _eval(tmp, model)


def _no_manifest(tmp: Path, model: Path) -> list[str]:
    (tmp / "out" / "textvqa" / "base").mkdir(parents=True)
    (tmp / "out" / "textvqa" / "base" / "predictions.jsonl").write_text('{"id": "0", "index": 0}\n')
    return _eval(tmp, model)


def _corrupt(tmp: Path, model: Path) -> list[str]:
    bad = tmp / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    return ["ask", "--model", str(model), "--image", str(bad), "--question", "what ?"]


def _not_json(tmp: Path, model: Path) -> list[str]:
    bad = tmp / "TextVQA_bad.json"
    bad.write_text("{ nope")
    return _eval(tmp, model, data=bad)


def _no_data_list(tmp: Path, model: Path) -> list[str]:
    bad = tmp / "TextVQA_other.json"
    bad.write_text(json.dumps({"questions": [{"question_id": 1}]}))  # another benchmark's layout
    return _eval(tmp, model, data=bad)


def _vqav2_list(tmp: Path, model: Path) -> list[str]:
    """A VQAv2 questions file holding a bare list (the official file is an object with 'questions')."""
    questions = tmp / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions.write_text(json.dumps([{"question_id": 1, "question": "what ?", "image_id": 1}]))
    (tmp / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": []}))
    argv = _eval(tmp, model, data=questions)
    argv[argv.index("textvqa")] = "vqav2"
    return argv


def _report_other(tmp: Path, model: Path) -> list[str]:
    (tmp / "other.json").write_text(json.dumps({"hello": 1}))
    return ["report", str(tmp / "other.json"), "--out", str(tmp / "r.html")]


def _report_damaged(tmp: Path, model: Path) -> list[str]:
    (tmp / "demo.json").write_text('{"format": "seesay-demo/1", "n": ')
    return ["report", str(tmp / "demo.json"), "--out", str(tmp / "r.html")]


def _chair_truth(tmp: Path) -> Path:
    path = tmp / "objects.json"
    path.write_text(json.dumps({"1": ["dog"]}))
    return path


def _chair_bad_captions(tmp: Path, model: Path) -> list[str]:
    (tmp / "caps.json").write_text(json.dumps([{"image_id": 1, "text": "a dog"}]))
    return ["chair", str(tmp / "caps.json"), "--annotations", str(_chair_truth(tmp))]


def _chair_unknown_image(tmp: Path, model: Path) -> list[str]:
    (tmp / "caps.json").write_text(json.dumps([{"image_id": 5, "caption": "a dog"}]))
    return ["chair", str(tmp / "caps.json"), "--annotations", str(_chair_truth(tmp))]


CASES: list[Case] = [
    Case(
        "bare `seesay`",
        lambda t, m: [],
        "missing command (one of: ask, chair, demo, eval, profile, report, sweep, version)",
    ),
    Case("unknown command", lambda t, m: ["frob"], "No such command 'frob'"),
    Case("missing required option", lambda t, m: ["eval"], "Missing option '--bench'"),
    Case("unknown flag", lambda t, m: _ask(t, m, "--frobnicate"), "No such option: --frobnicate"),
    Case("`--limit abc`", lambda t, m: _eval(t, m, "--limit", "abc"), "Invalid value for '--limit'"),
    Case("`--limit 0`", lambda t, m: _eval(t, m, "--limit", "0"), "Invalid value for '--limit'"),
    Case("`--limit -1`", lambda t, m: _eval(t, m, "--limit", "-1"), "Invalid value for '--limit'"),
    Case(
        "`--batch-size 0`", lambda t, m: _eval(t, m, "--batch-size", "0"), "Invalid value for '--batch-size'"
    ),
    Case(
        "unknown `--metric-mode`",
        lambda t, m: _eval(t, m, "--metric-mode", "strict"),
        "unknown metric mode 'strict' for textvqa; choose one of: official",
    ),
    Case(
        "unknown benchmark", lambda t, m: ["eval", "--bench", "mmmu", "--data", "x.json"], "unknown benchmark"
    ),
    Case("unknown method", lambda t, m: _eval(t, m, "--methods", "base,nope"), "unknown method 'nope'"),
    Case(
        "`--set` with an unknown key",
        lambda t, m: _eval(t, m, "--methods", "dualpd", "--set", "dualpd.rh=0.2"),
        "method 'dualpd' has no option(s) rh",
    ),
    Case(
        "`--set` for a method not in the run",
        lambda t, m: _eval(t, m, "--methods", "base", "--set", "vea.sigma=0.1"),
        "'vea' is not one of the methods of this run",
    ),
    Case(
        "duplicate sample ids",
        lambda t, m: _eval(t, m, data=textvqa(t / "tv", ids=[1, 2, 2, 3])),
        "1 sample id(s) appear more than once ('2')",
    ),
    Case(
        "image path outside the image root",
        lambda t, m: _eval(t, m, data=textvqa(t / "tv", image="../../secret")),
        "lies outside the image root",
    ),
    Case("annotation file is not JSON", _not_json, "not valid JSON"),
    Case(
        "TextVQA file: an object without 'data'",
        _no_data_list,
        "TextVQA_other.json: expected a list of records (or {'data': [...]})",
    ),
    Case(
        "VQAv2 questions file: a list, not an object",
        _vqav2_list,
        "v2_OpenEnded_mscoco_val2014_questions.json: expected a JSON object whose 'questions' is a list",
    ),
    Case(
        "`sweep --grid` with an unknown key",
        lambda t, m: _sweep(t, m, "--grid", "rh=0.1,0.2"),
        "--grid rh: dualpd has no such option",
    ),
    Case(
        "`sweep --grid` with a value the config refuses",
        lambda t, m: _sweep(t, m, "--grid", "gamma=0.5,-1"),
        "dualpd gamma must be >= 0",
    ),
    Case(
        "`sweep`: a knob in both `--grid` and `--set`",
        lambda t, m: _sweep(t, m, "--grid", "rho=0.1,0.2", "--set", "rho=0.3"),
        "rho: set both by --set and by --grid",
    ),
    Case(
        "rerun into `--out` with another `--limit`",
        _stale,
        "holds another run's results (textvqa samples: '3 samples, sha256",
    ),
    Case(
        "rerun into `--out` after the model folder was retrained",
        _retrained,
        "holds another run's results (weights: ",
    ),
    Case("predictions in `--out` without a manifest", _no_manifest, "holds predictions but no manifest.json"),
    Case("`--out` locked by a running seesay", _locked, "is in use by another seesay run (pid"),
    Case(
        "model folder does not exist",
        lambda t, m: _ask(t, m, "--model", "/no/such/model"),
        "model path not found",
    ),
    Case(
        "hub id not in the cache, offline",
        lambda t, m: _ask(t, m, "--model", "bad/no_such_model"),
        "no such folder, and not in the local hub cache",
    ),
    Case("image file missing", lambda t, m: _ask(t, m, "--image", "/no/such.png"), "image file not found"),
    Case("image file corrupt", _corrupt, "cannot decode image"),
    Case(
        "`report` of a path that does not exist",
        lambda t, m: ["report", str(t / "no_such_run"), "--out", str(t / "r.html")],
        "no_such_run: no such file or folder",
    ),
    Case("`report` of a file it does not read", _report_other, "not a file seesay report reads"),
    Case("`report` of a damaged JSON file", _report_damaged, "cannot read it as JSON"),
    Case(
        "`report --out` that is not an HTML file",
        lambda t, m: ["report", str(t), "--out", str(t / "r.pdf")],
        "writes an HTML file: give a path ending in .html",
    ),
    Case(
        "`eval --report` that is not an HTML file",
        lambda t, m: _eval(t, m, "--report", str(t / "r.txt")),
        "--report writes an HTML file",
    ),
    Case(
        "`--trace` with a method that writes none",
        lambda t, m: _ask(t, m, "--trace", str(t / "trace.jsonl")),
        "method 'base' writes no per-token trace",
    ),
    Case(
        "`chair` captions without `caption`", _chair_bad_captions, "record 0 needs 'image_id' and 'caption'"
    ),
    Case(
        "`chair` of a captioned image with no ground truth",
        _chair_unknown_image,
        "1 captioned image(s) have no ground-truth objects: 5",
    ),
]


def normalise(message: str, tmp: Path, model: Path) -> str:
    """The message with this run's scratch paths replaced by placeholders (stable across runs)."""
    import re

    message = message.replace(str(model), "<model>").replace(str(tmp), "<tmp>")
    message = re.sub(r"sha256 [0-9a-f]{16}", "sha256 H", message)
    return re.sub(r"pid \d+ on [^,]+, started [^)]+\)", "pid N on HOST, started T)", message)
