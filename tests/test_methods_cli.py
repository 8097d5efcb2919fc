"""`seesay ask --method M` for every baseline on every tiny family: one line of answer, exit code 0."""

from __future__ import annotations

import pytest

from seesay.testing.tiny import FAMILIES

OPTIONS = {
    "pai": [],
    "m3id": [],
    "icd": [],
    "deco": [],
    "vicrop": [],
    "var": ["--set", "sink_dims=[0,1]", "--set", "tau=1"],  # tiny random models: no sink dims of their own
    "vcd": [],
    "dola": [],
}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from tests.conftest import images

    path = tmp_path_factory.mktemp("ask") / "x.png"
    images(1)[0].save(path)
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_ask_every_method(family, image, capsys):
    from seesay.cli import main

    for method, extra in OPTIONS.items():
        args = ["ask", "--model", f"tiny-random:{family}", "--image", str(image), "--question",
                "what is the color ?", "--method", method, "--max-new-tokens", "2", *extra]  # fmt: skip
        assert main(args) == 0, (method, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert f"{method} ({family}):" in out, out
