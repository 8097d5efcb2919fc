"""Reliability of `seesay eval` and the CLI: stale resumes, Ctrl-C, locks, prompts, data-parallel launch,
image roots, traces, help, transformers warnings (issue 12; the one-line cases are test_bad_input.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from seesay.cli import main
from seesay.errors import ConfigError, DataError, ModelLoadError
from seesay.eval.rundir import RunLock
from seesay.eval.runner import Dist, _run, evaluate
from seesay.eval.tasks import get_task
from tests.bad_input_cases import EXAMPLE, textvqa

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from seesay.testing.tiny import build_tiny_vlm

    return build_tiny_vlm("llava", save_to=tmp_path_factory.mktemp("rel") / "m").path


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    from seesay.testing.tiny import build_tiny_vlm

    return build_tiny_vlm("llava", seed=1, save_to=tmp_path_factory.mktemp("rel2") / "m").path


def _eval_args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    args = ["eval", "--bench", "textvqa", "--data", str(data), "--model", str(model), "--out", str(out)]
    return [*args, "--max-new-tokens", "2", *extra]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ---- item 2: the README's method list on Visual-CoT -----------------------------------------------


def test_readme_method_list_on_visual_cot_prints_blank_cells(tmp_path, saved_model, capsys):
    from seesay.demo import synthetic

    data = synthetic.write_split(tmp_path / "cot", "iid", 3, seed=5)
    args = ["eval", "--bench", "visual_cot", "--data", str(data), "--model", str(saved_model)]
    code = main([*args, "--methods", "base,dualpd,vea,dola,vcd", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert {"base", "dualpd", "vea", "dola", "vcd"} <= set(rows)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["visual_cot"]
    assert "evidence_auroc" in summary["vea"] and "evidence_auroc" not in summary["base"]


# ---- item 3: stale resume ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,needle",
    [
        ("model", "model:"),
        ("data", "textvqa samples: '3 samples, sha256"),
        ("limit", "textvqa samples: '3 samples, sha256"),
        ("mode", "textvqa metric_mode: 'official' -> 'lmms-eval'"),
        ("seed", "textvqa seed: 0 -> 1"),
        ("config", "textvqa dualpd config.rho: 0.15 -> 0.3"),
        ("suffix", "textvqa prompt_suffix:"),
        ("tokens", "textvqa generation.max_new_tokens: 2 -> 3"),
    ],
)
def test_a_rerun_of_another_run_is_refused(tmp_path, saved_model, other_model, capsys, change, needle):
    data = textvqa(tmp_path / "tv", 4)
    out = tmp_path / "out"
    first = _eval_args(data, saved_model, out, "--methods", "base,dualpd", "--limit", "3")
    assert main(first) == 0
    before = (out / "textvqa" / "base" / "predictions.jsonl").read_text()
    changed = {
        "model": _eval_args(data, other_model, out, "--methods", "base,dualpd", "--limit", "3"),
        "data": _eval_args(
            textvqa(tmp_path / "tv2", 4), saved_model, out, "--methods", "base", "--limit", "3"
        ),
        "limit": _eval_args(data, saved_model, out, "--limit", "2"),
        "mode": [*first, "--metric-mode", "lmms-eval"],
        "seed": [*first, "--seed", "1"],
        "config": [*first, "--set", "dualpd.rho=0.3"],
        "suffix": [*first, "--prompt-suffix", " please"],
        "tokens": [*first[:-4], "--max-new-tokens", "3", "--methods", "base,dualpd", "--limit", "3"],
    }[change]
    capsys.readouterr()
    assert main(changed) == 2
    err = _err_line(capsys)
    assert "holds another run's results" in err and needle in err and "--overwrite" in err, err
    assert (out / "textvqa" / "base" / "predictions.jsonl").read_text() == before  # nothing touched
    assert main([*changed, "--overwrite"]) == 0  # an explicit overwrite starts again
    manifest = json.loads((out / "manifest.json").read_text())
    assert len((out / "textvqa" / "base" / "predictions.jsonl").read_text().splitlines()) == (
        2 if change == "limit" else 3
    )
    assert manifest["benches"]["textvqa"]["limit"] == (2 if change == "limit" else 3)


def test_a_rerun_that_adds_methods_keeps_the_earlier_ones(tmp_path, saved_model):
    data = textvqa(tmp_path / "tv", 3)
    out = tmp_path / "out"
    assert main(_eval_args(data, saved_model, out, "--methods", "base")) == 0
    assert main(_eval_args(data, saved_model, out, "--methods", "dualpd", "--set", "dualpd.rho=0.2")) == 0
    summary = json.loads((out / "summary.json").read_text())["textvqa"]
    assert set(summary) == {"base", "dualpd"} and summary["base"]["n"] == 3
    csv_methods = {line.split(",")[1] for line in (out / "summary.csv").read_text().splitlines()[1:]}
    assert csv_methods == {"base", "dualpd"}
    methods = json.loads((out / "manifest.json").read_text())["benches"]["textvqa"]["methods"]
    assert set(methods) == {"base", "dualpd"} and methods["dualpd"]["rho"] == 0.2  # --set is recorded
    # the same command again resumes (nothing to do) instead of refusing
    assert (
        main(_eval_args(data, saved_model, out, "--methods", "base,dualpd", "--set", "dualpd.rho=0.2")) == 0
    )


def test_predictions_without_a_manifest_are_not_resumed(tmp_path, saved_model, capsys):
    data = textvqa(tmp_path / "tv", 2)
    out = tmp_path / "out"
    (out / "textvqa" / "base").mkdir(parents=True)
    (out / "textvqa" / "base" / "predictions.jsonl").write_text('{"id": "0", "index": 0, "score": {}}\n')
    assert main(_eval_args(data, saved_model, out)) == 2
    assert "no manifest.json" in _err_line(capsys)


# ---- item 4: Ctrl-C -------------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seesay", *args]


def test_ctrl_c_exits_130_with_a_resume_hint_and_the_rerun_completes(tmp_path, saved_model):
    data = textvqa(tmp_path / "tv", 200)  # long enough that the interrupt lands mid-run on a busy machine
    out = tmp_path / "out"
    args = _eval_args(data, saved_model, out, "--batch-size", "1", "--max-new-tokens", "4")
    path = out / "textvqa" / "base" / "predictions.jsonl"
    proc = subprocess.Popen(
        _cli(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        # a test runner started in the background inherits an ignored SIGINT: give the child Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err
    assert not (out / ".seesay.lock").exists()  # the lock is released on Ctrl-C
    assert 0 < len(path.read_bytes().splitlines()) < 200
    assert main(args) == 0  # the same command again (in this process) resumes and completes
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == list(range(200))


# ---- item 5: selections --------------------------------------------------------------------------


def test_evaluate_refuses_bad_selections(tmp_path):
    from seesay.errors import ConfigError
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    task = get_task("textvqa")
    data = textvqa(tmp_path / "tv", 2)
    for limit in (0, -1):
        with pytest.raises(ConfigError, match="limit must be a positive"):
            evaluate(loaded, task, data, ["base"], tmp_path / "o", limit=limit)
    with pytest.raises(ConfigError, match="choose one of: official, official-2016, lmms-eval"):
        evaluate(loaded, task, data, ["base"], tmp_path / "o", mode="strict")
    with pytest.raises(DataError, match=r"sample id\(s\) appear more than once \('7'\)"):
        evaluate(loaded, task, textvqa(tmp_path / "d", ids=[7, 8, 7, 9]), ["base"], tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before anything was written


# ---- item 6: --set and help -----------------------------------------------------------------------


def test_help_lists_method_keys_and_tiny_families():
    from seesay.testing.tiny import FAMILIES

    script = (
        "from seesay.cli import main; main(['ask', '--help']); print('=====', flush=True); "
        "main(['eval', '--help'])"
    )
    both = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV
    ).stdout  # piped, as `seesay eval --help | less` is
    for out in both.split("=====\n"):
        text = " ".join(out.replace("│", " ").split())
        assert "dualpd (contrast, alpha," in text and "rho" in text and "vea (layer_set" in text
        assert all(f in text for f in FAMILIES) and "tiny-random:FAMILY" in text
        # item 13: piped help is not cut (no ellipsis, every long option spelled out)
        assert "…" not in out and "--trust-remote-code" in out and "--no-trust-remote-code" in out


# ---- item 7: the prompt suffix ----------------------------------------------------------------------


def test_prompt_suffix_option_and_model_setting(tmp_path, saved_model):
    data = textvqa(tmp_path / "tv", 2)
    assert main(_eval_args(data, saved_model, tmp_path / "a", "--prompt-suffix", "\\nShort answer:")) == 0
    bench = json.loads((tmp_path / "a" / "manifest.json").read_text())["benches"]["textvqa"]
    assert bench["prompt_suffix"] == "\nShort answer:"
    (saved_model / "seesay.json").write_text(json.dumps({"prompt_suffix": " (one word)"}))
    try:
        assert main(_eval_args(data, saved_model, tmp_path / "b")) == 0
        bench = json.loads((tmp_path / "b" / "manifest.json").read_text())["benches"]["textvqa"]
        assert bench["prompt_suffix"] == " (one word)"
    finally:
        (saved_model / "seesay.json").unlink()


def test_bundled_model_scores_in_eval_what_it_scores_in_the_demo(tmp_path):
    from seesay.demo import synthetic
    from seesay.demo.run import HELDOUT_SEED, answer_first_words, demo_model_path, heldout
    from seesay.engine.loading import load_model
    from seesay.methods import get_method

    path = demo_model_path()
    assert path is not None
    n = 60
    loaded = load_model(path, dtype="float32")
    records = heldout("iid", n)
    answers = answer_first_words(loaded, get_method("base"), records)
    demo_accuracy = sum(a == r["answer"] for a, r in zip(answers, records, strict=True)) / n
    data = synthetic.write_split(tmp_path / "iid", "iid", n, seed=HELDOUT_SEED)
    summary = evaluate(loaded, get_task("visual_cot"), data, ["base"], tmp_path / "out", batch_size=30)
    assert demo_accuracy >= 0.85
    assert summary["base"]["exact_match"] == pytest.approx(demo_accuracy)


# ---- item 8: a hub id that is nowhere --------------------------------------------------------------


def test_missing_hub_id_fails_at_once_online_or_offline(monkeypatch):
    import huggingface_hub

    from seesay.engine.loading import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"not in the local hub cache \(offline mode"):
        load_model("bad/no_such_model")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    with pytest.raises(ModelLoadError, match="no such folder, and not reachable as a hub id"):
        load_model("bad/no_such_model")
    assert time.perf_counter() - t0 < 5


# ---- item 9: no FutureWarning from seesay's own decode calls ----------------------------------------


def test_decode_and_vcd_raise_no_future_warning():
    import seesay
    from tests.conftest import images, loaded_tiny

    loaded = loaded_tiny("qwen2_vl")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for method in ("base", "vcd"):
            seesay.ask_batch(loaded, images(2), ["a ?", "b ?"], method=method)


# ---- item 10: data-parallel launch and global progress ---------------------------------------------


def test_accelerate_cpu_launch_of_n_processes_is_refused(tmp_path, saved_model):
    data = textvqa(tmp_path / "tv", 2)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seesay"]
    proc = subprocess.run(
        launch + _eval_args(data, saved_model, tmp_path / "o"),
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode != 0
    assert "accelerate launch --cpu starts one process, not 2" in proc.stderr
    assert "torchrun --nproc_per_node 2" in proc.stderr


class _FakeDist(Dist):
    def barrier(self) -> None:  # the ranks run one after the other in this test
        pass


def test_rank0_progress_counts_every_rank(tmp_path):
    from seesay.engine.decoding import GenerationSettings
    from seesay.methods import get_method
    from tests.conftest import loaded_tiny

    loaded = loaded_tiny("llava")
    task = get_task("textvqa")
    samples = task.load(textvqa(tmp_path / "tv", 6), None)
    settings = GenerationSettings(max_new_tokens=2)
    seen: list[tuple[int, int]] = []
    args = (loaded, task, [get_method("base")], samples, tmp_path / "o", 2, settings, "official", "")
    assert _run(*args, None, _FakeDist(1, 2)) is None  # rank 1 first: 3 of the 6 samples
    summary = _run(*args, lambda m, done, total: seen.append((done, total)), _FakeDist(0, 2))
    assert seen[0] == (3, 6) and seen[-1] == (6, 6)  # rank 0 sees the other rank's 3 and its own 3
    assert summary["base"]["n"] == 6


# ---- item 11: image roots ---------------------------------------------------------------------------


def test_image_paths_stay_inside_the_root_unless_allowed(tmp_path, saved_model, capsys):
    from PIL import Image

    outside = tmp_path / "elsewhere.jpg"
    Image.new("RGB", (20, 20)).save(outside)
    for image in (f"../../{outside.stem}", str(outside.with_suffix(""))):  # relative escape, absolute path
        data = textvqa(tmp_path / "tv", 2, image=image)
        capsys.readouterr()
        assert main(_eval_args(data, saved_model, tmp_path / "o")) == 2
        assert "lies outside the image root" in _err_line(capsys)
    assert main(_eval_args(data, saved_model, tmp_path / "o", "--allow-images-outside-root")) == 0


def test_profile_refuses_records_whose_images_leave_the_root(tmp_path, saved_model, capsys):
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "outside.png")
    (tmp_path / "d").mkdir()
    record = {"question": "q ?", "answer": "a", "image": "../outside.png", "bboxs": [[0, 0, 5, 5]]}
    (tmp_path / "d" / "cot.jsonl").write_text(json.dumps(record) + "\n")
    args = ["profile", "--data", str(tmp_path / "d" / "cot.jsonl"), "--model", str(saved_model)]
    assert main([*args, "--out", str(tmp_path / "p.json")]) == 2
    assert "lies outside the image root" in _err_line(capsys)


# ---- item 12: traces ------------------------------------------------------------------------------


def test_trace_rows_carry_the_token_text(tmp_path, saved_model):
    trace = tmp_path / "t.jsonl"
    args = ["ask", "--model", str(saved_model), "--image", str(EXAMPLE), "--question", "what ?"]
    assert main([*args, "--method", "dualpd", "--max-new-tokens", "3", "--trace", str(trace)]) == 0
    rows = [json.loads(x) for x in trace.read_text().splitlines()]
    assert rows and all(isinstance(r["token"], str) and "token_id" in r for r in rows)


# ---- item 14: one writer per output folder ----------------------------------------------------------


def test_a_held_lock_refuses_and_a_killed_holder_leaves_none(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from seesay.eval.rundir import RunLock; "
            f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=f"in use by another seesay run \\(pid {holder.pid} on"):
            RunLock(out).acquire()
        with pytest.raises(DataError, match="in use"):
            RunLock(out).check()
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".seesay.lock").exists()  # the killed run's file is still there ...
    with RunLock(out) as lock:  # ... but not its lock: the kernel dropped it with the process
        assert lock.held and json.loads((out / ".seesay.lock").read_text())["pid"] == os.getpid()
    assert not (out / ".seesay.lock").exists()


def test_two_runs_racing_for_a_stale_lock_never_both_hold_it(tmp_path):
    """Three runs, released at the same moment onto a lock file left by a killed run: one holds it (and
    keeps holding it), the other two are refused."""
    out = tmp_path / "out"
    go = tmp_path / "go"
    script = (
        "import os, sys, time; from seesay.eval.rundir import RunLock; from seesay.errors import DataError\n"
        f"lock = RunLock({str(out)!r})\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.001)\n"
        "try:\n    lock.acquire(); print('got', flush=True); time.sleep(120)\n"
        "except DataError:\n    print('refused', flush=True)\n"
    )
    out.mkdir()
    (out / ".seesay.lock").write_text('{"pid": 999999, "host": "gone"}')  # left by a killed run
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV)
        for _ in range(3)
    ]
    try:
        time.sleep(0.5)
        go.touch()  # (each racer has finished its imports or is about to; all then race for the lock)
        said = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert said == ["got", "refused", "refused"], said


def test_overwrite_deletes_only_what_seesay_wrote(tmp_path, saved_model, other_model):
    data = textvqa(tmp_path / "tv", 2)
    out = tmp_path / "out"
    assert main(_eval_args(data, saved_model, out)) == 0
    notes = out / "textvqa" / "base" / "analysis.md"
    notes.write_text("my notes")
    (out / "other_tool" / "exp1").mkdir(parents=True)
    (out / "other_tool" / "exp1" / "predictions_final.jsonl").write_text("{}\n")
    assert main([*_eval_args(data, other_model, out), "--overwrite"]) == 0
    assert notes.read_text() == "my notes"
    assert (out / "other_tool" / "exp1" / "predictions_final.jsonl").exists()
    model = json.loads((out / "manifest.json").read_text())["model"]
    assert model == str(other_model.resolve())


def test_the_same_model_by_another_path_and_the_same_questions_resume(tmp_path, saved_model, monkeypatch):
    data = textvqa(tmp_path / "tv", 3)
    out = tmp_path / "out"
    assert main(_eval_args(data, saved_model, out)) == 0
    monkeypatch.chdir(saved_model.parent)
    # ./m instead of /abs/m, and --limit 3 on a 3-question file: the same run, so it resumes
    assert main(_eval_args(data, Path("./m"), out, "--limit", "3")) == 0


def test_an_interrupt_during_set_up_releases_the_lock(tmp_path, monkeypatch):
    import seesay.eval.runner as ev
    from tests.conftest import loaded_tiny

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "reconcile_manifest", interrupted)
    data = textvqa(tmp_path / "tv", 2)
    with pytest.raises(KeyboardInterrupt):
        evaluate(loaded_tiny("llava"), get_task("textvqa"), data, ["base"], tmp_path / "o")
    RunLock(tmp_path / "o").check()  # free again


def test_the_same_command_started_twice_writes_each_sample_once(tmp_path, saved_model):
    data = textvqa(tmp_path / "tv", 200)  # the loser's lock check must come before the winner is done
    args = _eval_args(data, saved_model, tmp_path / "out", "--batch-size", "1", "--max-new-tokens", "4")
    procs = [
        subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], errs
    winner = procs[0] if procs[0].returncode == 0 else procs[1]
    loser_err = errs[1] if winner is procs[0] else errs[0]
    assert f"in use by another seesay run (pid {winner.pid} on" in " ".join(loser_err.split())
    rows = [json.loads(x) for x in (tmp_path / "out" / "textvqa" / "base" / "predictions.jsonl").open()]
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200


def test_device_map_refused_in_a_data_parallel_run(monkeypatch):
    """--device-map auto under N processes would put N copies of the model on the same GPUs."""
    from seesay.eval.runner import refuse_device_map_in_parallel

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="2 copies of the model on the same GPUs"):
        refuse_device_map_in_parallel("auto")
    refuse_device_map_in_parallel(None)  # the default: one GPU per rank
    monkeypatch.setenv("WORLD_SIZE", "1")
    refuse_device_map_in_parallel("auto")  # one process may spread one model
