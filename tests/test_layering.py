"""Layering: the engine never imports gradio; the app reaches the engine only through the names
`qpa/__init__.py` exports; the app's plain modules (jobs, plots, state, settings, drawing) stay
free of gradio so they can be tested and reused without a UI."""

import ast
from pathlib import Path

import pytest

import qpa

ROOT = Path(__file__).resolve().parent.parent
PLAIN_APP_MODULES = ("jobs.py", "plots.py", "state.py", "settings.py", "circuit_svg.py", "result_plots.py")


def imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, imported names) for every import statement in a file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module or "", tuple(alias.name for alias in node.names)))
    return out


def app_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]


@pytest.mark.parametrize("path", sorted((ROOT / "qpa").rglob("*.py")), ids=lambda p: p.name)
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
