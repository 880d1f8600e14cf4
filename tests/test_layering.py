"""Layering: the engine's sub-packages depend on each other in one direction only, with no
cycles and no private names crossing modules; `python -m qpa --help` never loads torch; the
engine never imports gradio; the app reaches the engine only through `qpa`'s public names; the
app's plain modules stay free of gradio.

The rule, lowest layer first (a module may import its own sub-package and any lower layer):
``constants/config/config_base/flags/formatting/safe_io`` ← ``runs`` | ``quantum``, ``models``, ``data`` ←
``generator`` ← ``adapters`` ← ``training`` ← ``studies``, ``inference`` ← ``hub`` ← ``cli``; ``runs``
sees only the base layer, and nothing but ``qpa/__main__.py`` imports ``cli``.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qpa

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "qpa"
PLAIN_APP_MODULES = ("jobs.py", "plots.py", "state.py", "settings.py", "circuit_svg.py", "result_plots.py",
                     "mirror.py")  # fmt: skip
BASE = {"constants", "config", "config_base", "tool_config", "flags", "formatting", "safe_io"}
RANK = {
    **dict.fromkeys(BASE, 0),
    "runs": 1, "quantum": 1, "models": 1, "data": 1,
    "generator": 2, "adapters": 3, "training": 4, "studies": 5, "inference": 5, "hub": 6,
    "cli": 7,
}  # fmt: skip


def imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, imported names) for every import statement in a file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module or "", tuple(alias.name for alias in node.names)))
    return out


def engine_modules() -> dict[str, Path]:
    """Dotted name → file for every module of the engine."""
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str) -> str:
    """`qpa.training.loop` → `training`; `qpa.config` → `config`."""
    return module.split(".")[1]


def engine_imports(path: Path) -> list[tuple[str, str]]:
    """(imported engine module, imported name or '') for every engine import in a file."""
    modules, out = engine_modules(), []
    for module, names in imports(path):
        if module.split(".")[0] != "qpa" or module == "qpa":
            continue
        for name in names or ("",):
            out.append((f"{module}.{name}" if f"{module}.{name}" in modules else module, name))
    return out


def allowed(importer: str, imported: str) -> bool:
    here, there = layer(importer), layer(imported)
    if here == there or there in BASE:
        return True
    if here == "runs" or there == "cli":
        return False
    return RANK[there] < RANK[here]


def layering_violations(modules: dict[str, Path]) -> list[str]:
    out = []
    for module, path in modules.items():
        if module in ("qpa", "qpa.__main__"):
            continue
        for imported, _ in engine_imports(path):
            if not allowed(module, imported):
                out.append(f"{module} imports {imported}")
    return out


def test_every_engine_module_sits_in_a_known_layer():
    assert not [m for m in engine_modules() if m not in ("qpa", "qpa.__main__") and layer(m) not in RANK]


def test_engine_layers_depend_downwards_only():
    assert layering_violations(engine_modules()) == []


def test_the_layering_check_catches_an_upward_import(tmp_path):
    modules = engine_modules()
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f():\n    from qpa.training.loop import train\n")
    assert layering_violations({"qpa.quantum.rogue": rogue}) == [
        "qpa.quantum.rogue imports qpa.training.loop"
    ]
    assert "qpa.runs.run" in modules  # runs may not reach up either
    assert not allowed("qpa.runs.run", "qpa.models.loading") and allowed("qpa.runs.run", "qpa.config")


def cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of the module-level import graph (lazy imports excluded)."""
    edges = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        deps = set()
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names
            ]
            deps |= {n for n in names if n in modules and n != module}
        edges[module] = deps
    found, seen = [], set()
    for start in edges:  # depth-first search for a path back to `start`
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start and frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    found.append(path)
                elif nxt not in path and nxt > start:
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_import_cycles():
    assert cycles(engine_modules()) == []


def test_the_cycle_check_catches_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("import qpa.b\n")
    (tmp_path / "b.py").write_text("from qpa.a import x\n")
    assert cycles({"qpa.a": tmp_path / "a.py", "qpa.b": tmp_path / "b.py"}) == [["qpa.a", "qpa.b"]]


@pytest.mark.parametrize("module", sorted(engine_modules()))
def test_no_private_names_cross_modules(module):
    private = [
        f"{name} from {imported}"
        for imported, name in engine_imports(engine_modules()[module])
        if name.startswith("_") and not name.startswith("__") and imported != module
    ]
    assert private == []


def test_help_leaves_torch_unloaded():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['qpa', '--help']\n"
        "try:\n    runpy.run_module('qpa', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'gradio') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def app_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_never_imports_gradio(path):
    modules = [m for m, _ in imports(path)]
    assert not [m for m in modules if m.split(".")[0] in ("gradio", "gradio_client", "app")]


@pytest.mark.parametrize("path", app_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_app_uses_only_the_public_api(path):
    public = set(qpa.__all__)
    for module, names in imports(path):
        if module.split(".")[0] != "qpa":
            continue
        assert module == "qpa", f"{path.name} imports {module}; import from `qpa` itself"
        assert names, f"{path.name}: use `from qpa import NAME`"
        missing = sorted(set(names) - public)
        assert not missing, f"{path.name} imports {missing}, which qpa/__init__.py does not export"


@pytest.mark.parametrize("name", PLAIN_APP_MODULES)
def test_plain_app_modules_have_no_gradio(name):
    modules = [m for m, _ in imports(ROOT / "app" / name)]
    assert not [m for m in modules if m.split(".")[0] == "gradio"]
