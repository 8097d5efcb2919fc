"""The package's module graph has no import cycles (function-level imports included), and the engine
does not import the test kit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "seesay"


def import_graph(runtime_only: bool = False) -> tuple[dict[str, set[str]], set[str]]:
    """module -> the seesay modules it imports (anywhere in the file; with ``runtime_only``, not those
    under ``if TYPE_CHECKING:``, which annotations alone use), and the set of packages."""
    files = {}
    for f in ROOT.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        files[name] = f
    packages = {m for m, f in files.items() if f.name == "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, f in files.items():
        package = module if module in packages else module.rsplit(".", 1)[0]
        tree = ast.parse(f.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if runtime_only and isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
            for stmt in block.body  # the `else:` branch runs
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in typing_only:
                continue
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("seesay"):
                base = node.module
            else:
                continue
            for target in [base] + [f"{base}.{a.name}" for a in node.names]:
                if target in files and target != module:
                    graph[module].add(target)
    return graph, packages


def test_no_import_cycles_between_modules():
    graph, packages = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(packages), [start]  # re-exports through package __init__ files are not edges
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph
            for b in graph[a]
            if {a, b}.isdisjoint(packages) and reaches(b, a)
        }
    )
    assert cycles == []


def test_engine_does_not_import_the_test_kit():
    graph, _ = import_graph()
    users = sorted(m for m, targets in graph.items() if any(t.startswith("seesay.testing") for t in targets))
    assert all(m.startswith("seesay.testing") for m in users), users


def test_start_up_imports_only_what_it_uses(tmp_path):
    """`import seesay` and `seesay --help` import neither torch nor transformers (the registries that name
    methods and families in a command's option help load only when that help is shown); `seesay ask`
    imports the engine and the methods, not evaluation, the demo or the report."""
    import subprocess
    import sys

    from PIL import Image

    probe = (
        "import sys, seesay; a = {'torch' in sys.modules, 'transformers' in sys.modules}; "
        "import seesay.cli; b = {m in sys.modules for m in ('torch', 'transformers', 'scipy')}; "
        "print(a == {False}, b == {False})"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr
    code = (
        "import sys; from seesay.cli import main; main(['--help']); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    help_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert help_run.stdout.split()[-2:] == ["False", "False"], help_run.stdout[-300:]
    assert "ask" in help_run.stdout and "eval" in help_run.stdout
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    argv = ["ask", "-m", "tiny-random:llava", "-i", str(image), "-q", "Q?", "--max-new-tokens", "1"]
    ask = (
        f"import sys; from seesay.cli import main; main({argv!r}); "
        "print(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith('seesay.')}))"
    )
    ask_run = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, check=True)
    loaded = ask_run.stdout.strip().splitlines()[-1]
    assert "seesay.engine" in loaded and "seesay.methods" in loaded
    unused = ("eval", "demo", "report", "integrations")
    assert not any(f"'seesay.{layer}'" in loaded for layer in unused), loaded


LAYERS = ("engine", "methods", "eval", "demo")  # each may import the ones before it, never those after


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_folders_are_layers_that_import_only_downwards():
    """engine <- methods <- eval <- demo: the engine imports no method, the methods no benchmark or
    runner, evaluation nothing of the demo (the report, the CLI and the integrations sit on top)."""
    graph, _ = import_graph(runtime_only=True)
    upward = sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(module)
        and layer_of(target)
        and LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    )
    assert upward == []
    assert {layer_of(m) for m in graph} >= set(LAYERS)  # the folders exist and hold the modules
    flat = sorted(f.name for f in ROOT.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "api.py", "cli.py", "errors.py", "registry.py"]
