"""Load a file of scripts/ (by name) or any Python file of the repository (by its path from the
repository root, e.g. an experiment beside its results in docs/results/) as a module, for testing
its functions."""
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def load_script(name: str) -> ModuleType:
    path = REPO / name if name.endswith(".py") else SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
