"""The command line: `seesay ask` end to end, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seesay.cli import main, parse_options
from seesay.errors import SeesayError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"


@pytest.fixture(scope="module")
def saved_llava(tmp_path_factory):
    from seesay.testing.tiny import build_tiny_vlm

    return build_tiny_vlm("llava", save_to=tmp_path_factory.mktemp("cli") / "llava").path


def test_ask_from_saved_model(saved_llava, capsys):
    code = main(
        [
            "ask",
            "--model",
            str(saved_llava),
            "--image",
            str(EXAMPLE),
            "--question",
            "what is the color ?",
            "--max-new-tokens",
            "4",
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "base" and len(payload["token_ids"]) <= 4


def test_ask_matches_python_api(saved_llava, capsys):
    import seesay

    loaded = seesay.load_model(saved_llava)
    settings = seesay.GenerationSettings(max_new_tokens=4)
    answer = seesay.ask(loaded, EXAMPLE, "what is the color ?", settings=settings)
    main(
        [
            "ask",
            "-m",
            str(saved_llava),
            "-i",
            str(EXAMPLE),
            "-q",
            "what is the color ?",
            "--max-new-tokens",
            "4",
            "--json",
        ]
    )
    assert json.loads(capsys.readouterr().out)["token_ids"] == answer.token_ids


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "/no/such/model"], "model path not found"),
        (["--image", "/no/such.png"], "image file not found"),
        (["--method", "nope"], "unknown method"),
        (["--set", "rho=0.1"], "has no option"),
        (["--image", "CORRUPT"], "cannot decode image"),
    ],
)
def test_bad_input_is_one_line(saved_llava, capsys, tmp_path, args, needle):
    base = {"--model": str(saved_llava), "--image": str(EXAMPLE)}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    if base["--image"] == "CORRUPT":
        corrupt = tmp_path / "corrupt.jpg"
        corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
        base["--image"] = str(corrupt)
    argv = ["ask", "--question", "what ?"] + [x for kv in base.items() for x in kv if kv[0] != "--set"]
    if "--set" in base:
        argv += ["--set", base["--set"]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_parse_options():
    assert parse_options(["rho=0.2", "target=output", "layers=[1,2]"]) == {
        "rho": 0.2,
        "target": "output",
        "layers": [1, 2],
    }
    with pytest.raises(SeesayError):
        parse_options(["novalue"])


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "seesay", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip()


def test_h_is_help_for_every_command(capsys):
    """-h works as --help for every command, whose help shows the registries' names with no slot left
    unfilled (every command renders its help through RegistryHelpCommand)."""
    from seesay import cli

    assert main(["-h"]) == 0
    top = capsys.readouterr().out
    assert "ask" in top and "eval" in top
    commands = [c.name or c.callback.__name__ for c in cli.app.registered_commands]
    assert len(commands) == 8 and all(c.cls is cli.RegistryHelpCommand for c in cli.app.registered_commands)
    for command in commands:
        assert main([command, "-h"]) == 0
        text = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert not any(slot in text for slot in (cli.METHODS_SLOT, cli.KEYS_SLOT, cli.FAMILIES_SLOT)), command
        if command in ("ask", "eval", "sweep"):
            assert "dualpd" in text and "vicrop" in text, command
        if command in ("ask", "eval", "sweep", "profile"):
            assert "qwen2_5_vl" in text, command
