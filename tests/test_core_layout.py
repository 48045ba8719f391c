"""The shape of ``core``: sub-packages by role whose imports only run down the layers, no import
circle between modules, and every module importable where Qt and QGIS are not."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"
TOP = "top"  # core's top-level modules: errors, progress, atomic, output_paths, device
# what each layer may import (besides itself); cli and commands sit above everything
ALLOWED = {
    TOP: set(),
    "data": {TOP},
    "masks": {TOP, "data"},
    "model": {TOP, "data", "masks"},
    "training": {TOP, "data", "masks", "model"},
    "inference": {TOP, "data", "masks", "model"},
    "evaluation": {TOP, "data", "masks", "model", "training", "inference"},
}


def _modules() -> dict[str, Path]:
    """Dotted name → file of every core module."""
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The core modules a module imports (at its top or inside functions)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            mod = base + (node.module.split(".") if node.module else [])
            targets = [".".join(mod + [a.name]) for a in node.names] + [".".join(mod)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "core":
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "core"]
        found |= {t for t in targets if t in modules and t != name}
    return found


def _layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 2 and parts[1] in ("cli",) or (len(parts) > 1 and parts[1] == "commands"):
        return "commands"
    if len(parts) >= 3 or (len(parts) == 2 and (CORE / parts[1]).is_dir()):
        return parts[1]
    return TOP


def test_core_is_in_sub_packages_by_role():
    subpackages = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages == set(ALLOWED) - {TOP} | {"commands"}
    top = {p.stem for p in CORE.glob("*.py")}
    assert top == {"__init__", "atomic", "cli", "device", "errors", "output_paths", "progress"}


def test_imports_only_run_down_the_layers():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        layer = _layer(name)
        if layer == "commands" or name == "core":
            continue
        for target in _imports(name, path, modules):
            other = _layer(target)
            if other == "core" or target == "core":
                continue
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{name} ({layer}) → {target} ({other})")
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_no_import_circle():
    modules = _modules()
    graph = {name: {t for t in _imports(name, path, modules) if t != "core"} for name, path in modules.items()}
    # a package imports its __init__ implicitly; the __init__ modules import nothing here
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import circles:\n" + "\n".join(" → ".join(c) for c in cycles)


BLOCKER = """
import importlib, importlib.abc, pkgutil, sys

class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("qgis", "PyQt5", "PyQt6", "sip"):
            raise ImportError(f"{name} is blocked: core must not import Qt or QGIS")
        return None

sys.meta_path.insert(0, NoQt())
import core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
for name in names:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in ("qgis", "PyQt5")]
print(len(names))
"""


def test_every_core_module_imports_without_qt_or_qgis():
    done = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) == len(_modules()) - 1  # every module but core itself


def test_core_version_is_the_plugin_version():
    """``core.__version__`` says the version metadata.txt gives the plugin."""
    import configparser

    import core

    meta = configparser.ConfigParser()
    meta.read(Path(__file__).resolve().parents[1] / "metadata.txt", encoding="utf-8")
    assert core.__version__ == meta["general"]["version"]
