"""The plugin's Python loads under both Qt bindings QGIS uses: PyQt5 (QGIS 3) and PyQt6 (QGIS 4).

A static scan (``ast``) of every ``m3_plugin/*.py`` rejects the Qt 5-only forms with file:line and the
fix: enum members reached without their enum type (``Qt.AlignTop`` instead of
``Qt.AlignmentFlag.AlignTop``), ``exec_()``, ``QRegExp``, ``QDesktopWidget``, ``qApp``, ``QVariant``
type codes, ``QFontMetrics.width``, ``activated[str]``, compiled resources and direct ``PyQt5``
imports. Then the scoped names the plugin uses are resolved on the installed QGIS, so a scope that
does not exist there fails here rather than in a user's QGIS."""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "m3_plugin"

# Names allowed right after a Qt or QGIS class: enum types (the middle of Qt.AlignmentFlag.AlignTop) and
# nested classes. Any other capitalised name there is an enum member without its scope, which PyQt6 rejects.
SCOPES = frozenset({
    # Qt
    "AlignmentFlag", "ScrollBarPolicy", "TextInteractionFlag", "DockWidgetArea", "CursorShape", "MouseButton",
    "Key", "PenStyle", "Orientation", "TextFlag", "ItemDataRole", "TextFormat", "WindowType", "WindowModality",
    "Policy", "Shape", "Shadow", "StandardButton", "ButtonRole", "DialogCode", "Icon", "RenderHint",
    "EditTrigger", "ResizeMode", "SizeAdjustPolicy", "SelectionMode", "SelectionBehavior", "TickPosition",
    "Format", "ColorRole", "ToolButtonStyle", "ProcessState", "ExitStatus", "StandardPixmap", "SortOrder",
    "FocusPolicy", "ContextMenuPolicy", "AspectRatioMode", "TransformationMode", "OpenModeFlag", "Type",
    # QGIS
    "MessageLevel", "Flag", "TaskStatus", "GeometryType", "WkbType", "LayerFilter", "Filter", "SourceType",
    "Behavior", "DataType", "ProcessingSourceType", "ProcessingNumberParameterType",
    "ProcessingFileParameterBehavior", "ProcessingFieldParameterDataType", "ShaderInterpolationMethod",
    "ColorRampItem", "RasterPipeInterface", "ContrastEnhancementAlgorithm", "DataProviderFlag",
    "ProcessingParameterFlag", "ProcessingAlgorithmFlag", "ProcessingFeatureSourceFlag", "Capability",
    "Capabilities", "Flags", "Filters", "SinkFlag", "SinkFlags", "RasterFileWriter", "WriterError",
    "SpatialIndexPresence", "FeatureRequestFlag", "RenderUnit", "Units", "SaveVectorOptions", "StorageMode",
    "RowWrapPolicy",
})
# Qt 5 names that Qt 6 removed or renamed, with what to write instead.
RENAMED = {
    ("Qt", "MidButton"): "Qt.MouseButton.MiddleButton",
    ("Qt", "TextColorRole"): "Qt.ItemDataRole.ForegroundRole",
    ("Qt", "BackgroundColorRole"): "Qt.ItemDataRole.BackgroundRole",
    ("QPainter", "HighQualityAntialiasing"): "QPainter.RenderHint.Antialiasing",
}
REMOVED_NAMES = {
    "QRegExp": "QRegExp is gone in Qt 6: use QRegularExpression (or Python's re)",
    "QRegExpValidator": "use QRegularExpressionValidator",
    "QDesktopWidget": "QDesktopWidget is gone in Qt 6: use QScreen (widget.screen(), QGuiApplication.primaryScreen())",
    "qApp": "qApp is gone in PyQt6: use QApplication.instance()",
}
QT_CLASS = re.compile(r"^Q[A-Za-z0-9]*$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")  # Qgis.QGIS_VERSION_INT, PYQT_VERSION_STR


@dataclass(frozen=True)
class Offence:
    file: str
    line: int
    form: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.form} -> {self.fix}"


def _enum_type_of(owner: str, member: str) -> str | None:
    """The enum type of ``owner.member`` on the installed Qt/QGIS (PyQt5 still has the unscoped name),
    for a precise fix; None when it does not resolve here."""
    value = _resolve(owner, member)
    if value is None or isinstance(value, type):
        return None
    name = type(value).__name__
    return name if name not in ("int", "bool", "str", "float") else None


def _resolve(owner: str, *attrs: str):
    """``owner.attr...`` from the modules the plugin imports Qt and QGIS names from; None when absent."""
    for module in ("qgis.PyQt.QtCore", "qgis.PyQt.QtGui", "qgis.PyQt.QtWidgets", "qgis.core", "qgis.gui"):
        try:
            value = getattr(importlib.import_module(module), owner)
        except (ImportError, AttributeError):
            continue
        try:
            for attr in attrs:
                value = getattr(value, attr)
        except AttributeError:
            return None
        return value
    return None


def qt5_only_forms(source: str, filename: str = "<source>") -> list[Offence]:
    """Every Qt 5-only form in ``source``, in line order."""
    found: list[Offence] = []

    def add(node: ast.AST, form: str, fix: str) -> None:
        found.append(Offence(filename, node.lineno, form, fix))

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute):
            if node.attr == "exec_":
                add(node, ".exec_()", "call .exec()")
            if isinstance(node.value, ast.Name) and QT_CLASS.match(node.value.id):
                owner, attr = node.value.id, node.attr
                if (owner, attr) in RENAMED:
                    add(node, f"{owner}.{attr}", RENAMED[(owner, attr)])
                elif owner == "QVariant" and attr[:1].isupper():
                    add(node, f"QVariant.{attr}", f"QMetaType.Type.{attr} (QVariant type codes are gone in PyQt6)")
                elif attr[:1].isupper() and not CONSTANT.match(attr) and attr not in SCOPES:
                    scope = _enum_type_of(owner, attr)
                    fix = (f"{owner}.{scope}.{attr}" if scope else
                           f"{owner}.<EnumType>.{attr}; if <EnumType> is a real scope, add it to SCOPES")
                    add(node, f"{owner}.{attr}", fix)
            if (node.attr == "width" and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "attr", getattr(node.value.func, "id", "")) in (
                        "fontMetrics", "QFontMetrics", "QFontMetricsF")):
                add(node, "QFontMetrics.width()", "use .horizontalAdvance()")
        elif isinstance(node, ast.Name) and node.id in REMOVED_NAMES:
            add(node, node.id, REMOVED_NAMES[node.id])
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", "") == "activated":
            add(node, "activated[str]", "connect textActivated (string) or activated (index)")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module.split(".")[0] in ("PyQt5", "PyQt6", "sip"):
                add(node, f"from {module} import", f"import from qgis.PyQt{module[5:]}")
            if module == "qgis.PyQt.Qt":
                add(node, "from qgis.PyQt.Qt import", "import from qgis.PyQt.QtCore")
            if module == "qgis.PyQt.QtGui" and "QAction" in names:
                add(node, "QAction from QtGui", "import QAction from qgis.PyQt.QtWidgets (QGIS 4 maps it)")
            if "resources_rc" in names or module.endswith("resources_rc"):
                add(node, "compiled resources", "load icons by file path (pyrcc is gone in Qt 6)")
            for name in sorted(names & REMOVED_NAMES.keys()):
                add(node, name, REMOVED_NAMES[name])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("PyQt5", "PyQt6"):
                    add(node, f"import {alias.name}", "import from qgis.PyQt")
    return sorted(found, key=lambda o: (o.line, o.form))


def plugin_modules() -> list[Path]:
    return sorted(PLUGIN.glob("*.py"))


def test_the_scan_flags_qt5_only_forms():
    source = "\n".join([
        "from PyQt5.QtCore import pyqtSignal",          # 1
        "from qgis.PyQt.QtCore import QRegExp, Qt",     # 2
        "label.setAlignment(Qt.AlignTop)",               # 3
        "dialog.exec_()",                                # 4
        "w = QDesktopWidget()",                          # 5
        "box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)",  # 6
        "if e.button() == Qt.MidButton: pass",           # 7
        "level = Qgis.Info",                             # 8
        "n = label.fontMetrics().width('x')",            # 9
        "combo.activated[str].connect(f)",               # 10
        "t = QVariant.Int",                              # 11
        "ok = Qt.AlignmentFlag.AlignTop | QgsTask.Flag.CanCancel | Qgis.QGIS_VERSION_INT",  # 12: allowed
        "d.exec()",                                      # 13: allowed
    ])
    found = qt5_only_forms(source)
    lines = {o.line for o in found}
    assert lines == set(range(1, 12)), "\n".join(map(str, found))
    assert sum(o.line == 6 for o in found) == 2
    by_form = {o.form: o.fix for o in found}
    assert by_form["Qt.MidButton"] == "Qt.MouseButton.MiddleButton"
    assert by_form[".exec_()"] == "call .exec()"
    # on the installed PyQt5 the fix names the enum type
    assert by_form["Qt.AlignTop"] == "Qt.AlignmentFlag.AlignTop"
    assert by_form["QMessageBox.Yes"] == "QMessageBox.StandardButton.Yes"


@pytest.mark.parametrize("path", plugin_modules(), ids=lambda p: p.name)
def test_plugin_module_has_no_qt5_only_forms(path):
    found = qt5_only_forms(path.read_text(encoding="utf-8"), f"m3_plugin/{path.name}")
    assert not found, "Qt 5-only forms (fix each as shown):\n" + "\n".join(map(str, found))


def _scoped_chains(source: str):
    """(line, owner, scope, member) for each ``Owner.Scope.Member`` in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and QT_CLASS.match(node.value.value.id)
                and node.value.attr in SCOPES and node.attr[:1].isupper()):
            yield node.lineno, node.value.value.id, node.value.attr, node.attr


def test_scoped_names_resolve_on_this_qgis():
    """Each ``Owner.Scope.Member`` outside the version switch (qt_compat.py) exists on the installed
    QGIS, and the scope is a type, not a member that would pass the scan by name."""
    pytest.importorskip("qgis.core")
    missing = []
    for path in plugin_modules():
        if path.name == "qt_compat.py":
            continue
        for line, owner, scope, member in _scoped_chains(path.read_text(encoding="utf-8")):
            scope_value = _resolve(owner, scope)
            if not isinstance(scope_value, type) or _resolve(owner, scope, member) is None:
                missing.append(f"m3_plugin/{path.name}:{line}: {owner}.{scope}.{member}")
    assert not missing, "scoped names missing on this QGIS:\n" + "\n".join(missing)


def test_version_switch_resolves_every_name():
    """qt_compat picks the QGIS 3.22 or the newer enum for each name, and every one is set."""
    pytest.importorskip("qgis.core")
    qt_compat = importlib.import_module("m3_plugin.qt_compat")
    names = [n for n in dir(qt_compat) if CONSTANT.match(n)]
    assert names
    assert [n for n in names if getattr(qt_compat, n) is None] == []


PYQT6_NAMES = """
import importlib, json, sys
missing = []
for owner, scope, member in json.load(sys.stdin):
    for module in ("PyQt6.QtCore", "PyQt6.QtGui", "PyQt6.QtWidgets"):
        cls = getattr(importlib.import_module(module), owner, None)
        if cls is not None:
            if not hasattr(getattr(cls, scope, None), member):
                missing.append(f"{owner}.{scope}.{member}")
            break
print(json.dumps(missing))
"""


SETUP_PYQT6_PYTHON = PLUGIN.parent / ".venv-qt6" / "bin" / "python"  # scripts/setup.sh makes it


def _pyqt6_python() -> str | None:
    """An interpreter that imports PyQt6 (run apart: PyQt5 is loaded here): $M3_PYQT6_PYTHON, else the
    set-up's .venv-qt6, else this one. A named or set-up one that cannot import PyQt6 fails the test."""
    named = os.environ.get("M3_PYQT6_PYTHON") or (str(SETUP_PYQT6_PYTHON) if SETUP_PYQT6_PYTHON.exists() else None)
    for python in (named, sys.executable):
        if not python:
            continue
        run = subprocess.run([python, "-c", "import PyQt6.QtWidgets"], capture_output=True, text=True,
                             env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        if run.returncode == 0:
            return python
        if python == named:
            pytest.fail(f"{python} cannot import PyQt6.QtWidgets ({run.stderr.strip()[-300:]}); "
                        "run scripts/setup.sh again")
    return None


def test_qt_scoped_names_exist_in_pyqt6():
    """Each Qt ``Owner.Scope.Member`` the plugin writes exists in PyQt6 (QGIS 4's binding)."""
    python = _pyqt6_python()
    if python is None:
        pytest.skip("PyQt6 is not installed: set M3_PYQT6_PYTHON to a Python with PyQt6 to check Qt 6 names")
    chains = sorted({(o, s, m) for path in plugin_modules()
                     for _, o, s, m in _scoped_chains(path.read_text(encoding="utf-8"))})
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([python, "-c", PYQT6_NAMES], input=json.dumps(chains), capture_output=True, text=True,
                         check=True, env=env).stdout
    qt_chains = [c for c in chains if not c[0].startswith("Qgs") and c[0] != "Qgis"]
    assert qt_chains, "no Qt scoped names found to check"
    assert json.loads(out) == [], "missing in PyQt6"


def test_metadata_offers_the_plugin_to_qgis_3_and_4_and_names_no_address():
    """QGIS 3.22 up to QGIS 4.x list the plugin; no web address is claimed (none exists for it yet)."""
    import configparser

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(PLUGIN.parent / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["supportsQt6"] == "True"
    assert not [key for key in ("tracker", "repository", "homepage") if general.get(key, "").strip()]
    assert "http" not in general["about"] and "http" not in general["description"]
