"""One registry style: methods, benchmarks and adapters by name; a name registered twice is an error;
the command line's method list and option keys come from the registry; hooks return StepResult."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from seesay.engine.adapters import ADAPTERS
from seesay.engine.adapters.base import ADAPTER_REGISTRY, ModelAdapter, register_adapter
from seesay.errors import ConfigError
from seesay.eval.tasks import TASKS, Task, get_task, register_task
from seesay.methods import METHODS, Method, get_method, register_method
from seesay.registry import Registry


def test_registry_refuses_a_name_twice():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="needs a non-empty name"):
        reg.add("", 3)
    assert dict(reg) == {"a": 1}


def test_methods_tasks_and_adapters_share_it():
    assert set(METHODS) == {
        "base",
        "dola",
        "dualpd",
        "vcd",
        "vea",
        "pai",
        "icd",
        "deco",
        "var",
        "vicrop",
        "m3id",
    }
    assert all(cls.name == name for name, cls in METHODS.items())
    with pytest.raises(ValueError, match="method 'dualpd' is registered twice"):

        @register_method("dualpd")
        class Again(Method):
            pass

    assert METHODS["dualpd"].__name__ == "DualPD"
    get_task("pope")  # the task files register on first use
    with pytest.raises(ValueError, match="benchmark 'pope' is registered twice"):
        register_task(dataclasses.replace(TASKS["pope"]))
    assert isinstance(TASKS["pope"], Task)
    with pytest.raises(ValueError, match="model adapter 'llava' is registered twice"):

        @register_adapter("llava")
        class Other(ModelAdapter):
            pass

    assert tuple(ADAPTER_REGISTRY.values()) == ADAPTERS and len(ADAPTERS) == 6
    assert [a.family for a in ADAPTERS] == list(ADAPTER_REGISTRY)
    with pytest.raises(
        ConfigError,
        match=r"unknown method 'nope'; available: base, deco, dola, dualpd, icd, m3id, pai, var, vcd, vea, ",
    ):
        get_method("nope")


def test_cli_help_comes_from_the_registry():
    from seesay import cli

    method_help, keys_help = cli.registry_help(cli.METHOD_HELP), cli.registry_help(cli.KEYS_HELP)
    assert "{" not in method_help + keys_help  # every slot filled
    for name, cls in METHODS.items():
        assert name in method_help
        fields = [f.name for f in dataclasses.fields(cls.config_class)]
        assert f"{name} ({', '.join(fields)})" in keys_help or (
            not fields and f"{name} (no options)" in keys_help
        )
    families = cli.registry_help(cli.MODEL_HELP)
    assert all(a.family in families for a in ADAPTERS) and "{" not in families


def test_hooks_return_a_step_result():
    """The engine reads a hook's trace and extra passes from what it returns, not from attributes."""
    import torch

    from seesay.engine.decoding import GenerationSettings, StepResult, decode
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])

    def hook(state):
        return StepResult(state.logits, trace=[{"step": state.step}] * 2, passes=2)

    settings = GenerationSettings(max_new_tokens=3)
    out = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings, hook=hook)
    plain = decode(loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings)
    steps = out.new_tokens.shape[1]
    assert torch.equal(out.sequences, plain.sequences)
    assert out.forward_passes == plain.forward_passes + 2 * steps
    assert [t[0]["step"] for t in out.trace] == list(range(steps)) and plain.trace == []


def test_tiny_random_is_served_by_the_test_kit_through_an_entry_point():
    """loading does not import the test kit: ``tiny-random:FAMILY`` comes from the entry-point group
    ``seesay.model_sources`` (pyproject), which the test kit fills."""
    import subprocess
    import sys

    code = (
        "import sys, seesay, seesay.engine.loading, seesay.cli\n"
        "assert not [m for m in sys.modules if m.startswith('seesay.testing')], 'test kit imported'\n"
        "m = seesay.load_model('tiny-random:gemma3')\n"
        "assert m.info['random_weights'] and m.family == 'gemma3'\n"
        "assert 'seesay.testing.tiny' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    from seesay.engine.loading import MODEL_SOURCES, model_source

    assert model_source("C:\\\\models\\\\llava") is None and model_source("org/model") is None
    assert model_source("tiny-random:llava")[1] == "llava" and "tiny-random" in MODEL_SOURCES


def test_the_test_kit_builds_every_registered_family():
    from seesay.testing.tiny import FAMILIES

    assert list(FAMILIES) == [a.family for a in ADAPTERS]  # the CLI's --model help lists the adapters'


def test_the_writing_a_method_example_runs():
    """docs/methods/writing.md's example, as written: registered, validated, identity at strength 0."""
    import re
    from pathlib import Path

    import torch

    from seesay.engine.decoding import GenerationSettings
    from seesay.engine.loading import build_inputs
    from tests.conftest import QUESTIONS, images, loaded_tiny

    doc = (Path(__file__).resolve().parents[1] / "docs" / "methods" / "writing.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    namespace: dict = {}
    try:
        exec(compile(code, "writing.md", "exec"), namespace)
        boost = namespace["Boost"]
        assert METHODS["boost"] is boost
        with pytest.raises(ConfigError, match="boost alpha must be >= 0"):
            get_method("boost", alpha=-1)
        loaded = loaded_tiny("llava")
        batch = build_inputs(loaded, images(2), QUESTIONS[:2])
        settings = GenerationSettings(max_new_tokens=4)
        base = get_method("base").generate(loaded, batch, settings).sequences
        same = get_method("boost", alpha=0.0).generate(loaded, batch, settings).sequences
        assert torch.equal(base, same)
        get_method("boost", alpha=2.0).generate(loaded, batch, settings)
    finally:
        METHODS.pop("boost", None)


@pytest.mark.parametrize(
    ("method", "options"),
    [("var", {"sink_dims": 5}), ("icd", {"prefix": 5}), ("deco", {"layers": ["a"]}),
     ("vicrop", {"general_prompt": 3}), ("pai", {"end_layer": "x"}), ("vcd", {"alpha": "x"})],
)  # fmt: skip
def test_option_values_of_the_wrong_type_are_one_config_error(method, options):
    """The line names the option and the kind of value it takes (read from the config's annotations)."""
    from seesay.methods import get_method

    (key,) = options
    line = f"method '{method}': {key} must be .*, got {re.escape(repr(options[key]))}"
    with pytest.raises(ConfigError, match=line):
        get_method(method, **options)


def test_option_type_messages_and_what_passes():
    from seesay.methods import get_method

    with pytest.raises(ConfigError, match=r"^method 'dualpd': rho must be a number, got 'abc'$"):
        get_method("dualpd", rho="abc")
    with pytest.raises(ConfigError, match=r"static_layer must be an integer or none, got 1\.5"):
        get_method("dualpd", static_layer=1.5)
    with pytest.raises(ConfigError, match="alpha must be a number, got True"):
        get_method("vcd", alpha=True)
    with pytest.raises(ConfigError, match="contrast must be one of 'dola', 'logits'"):
        get_method("dualpd", contrast="x")
    # ints for floats, numpy numbers, lists for tuples, None where allowed
    assert get_method("pai", alpha=1).config.alpha == 1
    assert get_method("dualpd", static_layer=np.int64(2)).config.static_layer == 2
    assert get_method("dola", layers=[1, 2]).config.layers is not None
    assert get_method("vcd", noise_seed=None).config.noise_seed is None
    assert get_method("vea", layers=range(1, 3)).config.layers == (1, 2)
    assert get_method("dualpd", candidate_layers=np.array([1, 2])).config.candidate_layers == (1, 2)
    assert get_method("vcd", alpha=np.float32(0.5)).config.alpha == 0.5
    # the word none: None for a knob that takes None, the word for a knob whose words include it
    assert get_method("pai", end_layer="none").config.end_layer is None
    assert get_method("dualpd", contrast="none").config.contrast == "none"
    assert get_method("vea", profile="none").config.profile is None  # not a file called "none"
    assert get_method("icd", prefix="none").config.prefix == "none"  # text that takes no None
    with pytest.raises(ConfigError, match=r"sink_dims must be a list of integers or none, got \[1, 'a'\]"):
        get_method("var", sink_dims=[1, "a"])


def test_a_type_the_check_does_not_read_is_left_to_the_config():
    """An annotation the check cannot read (here a dict): the config's own error, still one line."""
    from dataclasses import dataclass

    from seesay.methods.base import Method, MethodConfig

    @dataclass(frozen=True)
    class OddConfig(MethodConfig):
        table: dict | None = None

        def __post_init__(self):
            if self.table is not None and not isinstance(self.table, dict):
                raise TypeError("table must be a mapping")

    class Odd(Method):
        name = "odd"
        config_class = OddConfig

    assert Odd.from_overrides(table={"a": 1}).config.table == {"a": 1}
    line = r"method 'odd': invalid option value in table=3 \(table must be a mapping\)"
    with pytest.raises(ConfigError, match=line):
        Odd.from_overrides(table=3)


def test_methods_that_read_image_tokens_refuse_a_prompt_without_them(monkeypatch):
    """Through the Python API a batch can reach a method with no image tokens (here: the text-only
    variant of a built batch). A method that reads them refuses in one line before any forward pass;
    one that does not (base, DoLa, DeCo, ICD) decodes."""
    import dataclasses

    from seesay import NoImageTokensError
    from seesay.engine.decoding import GenerationSettings
    from seesay.engine.loading import build_inputs
    from seesay.engine.variants import text_only_for
    from seesay.methods import METHODS, get_method
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny("llava")
    batch = build_inputs(loaded, images(2), QUESTIONS[:2])
    no_image = dataclasses.replace(batch, inputs=text_only_for(loaded, batch))
    readers = sorted(name for name, cls in METHODS.items() if cls.reads_image_tokens)
    assert {"dualpd", "vea", "vicrop", "pai", "var", "vcd", "m3id"} <= set(readers)
    settings = GenerationSettings(max_new_tokens=2)
    calls: list[int] = []
    for name in sorted(METHODS):
        if name in readers:
            with monkeypatch.context() as patch:
                patch.setattr(loaded.adapter.base_model, "forward", lambda *a, **k: calls.append(1))
                line = rf"^{name} reads the prompt's image tokens: sample"
                with pytest.raises(NoImageTokensError, match=line):
                    get_method(name).generate(loaded, no_image, settings)
            assert not calls, name
        elif name in ("base", "dola", "deco", "icd"):
            assert get_method(name).generate(loaded, no_image, settings).new_tokens.shape[0] == 2
