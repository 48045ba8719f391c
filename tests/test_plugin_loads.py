"""The plugin loads under pytest-qgis, its action shows the dock, unload cleans up; the zip is complete."""
from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from qgis.PyQt.QtWidgets import QDockWidget

import m3_plugin
from m3_plugin import dependencies
from m3_plugin.dock import M3Dock

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def plugin(qgis_app, plugin_iface, qgis_new_project):
    plugin = m3_plugin.classFactory(plugin_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def test_init_gui_adds_action_with_icon(plugin, plugin_iface):
    action = plugin.action
    assert plugin_iface.calls["addToolBarIcon"] == [(action,)]
    assert plugin_iface.calls["addPluginToMenu"] == [("&M3", action)]
    assert action.text() == "M3 mineral infill"
    assert action.icon().availableSizes(), "resources/icons/m3.png not found next to the plugin"


def test_action_toggles_dock_showing_device(plugin, plugin_iface):
    assert plugin.dock is None  # created on first use
    plugin.action.trigger()
    dock = plugin.dock
    assert isinstance(dock, M3Dock)
    assert plugin_iface.mainWindow().findChildren(QDockWidget, "M3Dock") == [dock]
    assert dock.windowTitle() == "M3 mineral infill"
    assert not dock.isHidden() and plugin.action.isChecked()
    # torch is installed in the test venv, so the label names the device (CPU or CUDA)
    assert dock.device_label.text().startswith("Device: ")
    assert "CPU" in dock.device_label.text() or "CUDA" in dock.device_label.text()

    plugin.action.trigger()
    assert dock.isHidden() and not plugin.action.isChecked()
    plugin.action.trigger()
    assert not dock.isHidden()


def test_dock_says_how_to_install_missing_torch(qgis_app, monkeypatch):
    monkeypatch.setattr(dependencies, "missing_packages", lambda: ["torch", "safetensors"])
    monkeypatch.setattr("m3_plugin.dock.missing_packages", dependencies.missing_packages)
    dock = M3Dock()
    panel = dock.install_panel
    assert not panel.isHidden() and not panel.button.isHidden()
    assert panel.label.text().startswith("M3 needs torch, safetensors")
    assert "Install" in dock.device_label.text() and "pip" not in dock.device_label.text()
    assert not dock.run_button.isEnabled() and "Install the missing packages" in dock.reason_label.text()
    assert dock.widget().widget().minimumSizeHint().width() <= 290  # the install panel fits the default width
    dock.deleteLater()


def test_unload_removes_action_menu_and_dock(qgis_app, plugin_iface, qgis_new_project):
    plugin = m3_plugin.classFactory(plugin_iface)
    plugin.initGui()
    action = plugin.action
    action.trigger()
    dock = plugin.dock
    plugin.unload()
    assert plugin_iface.calls["removeToolBarIcon"] == [(action,)]
    assert plugin_iface.calls["removePluginMenu"] == [("&M3", action)]
    assert plugin_iface.calls["removeDockWidget"] == [(dock,)]
    assert plugin.action is None and plugin.dock is None


def test_unload_before_dock_was_opened(qgis_app, plugin_iface):
    plugin = m3_plugin.classFactory(plugin_iface)
    plugin.initGui()
    plugin.unload()
    assert plugin_iface.calls["removeDockWidget"] == []
    assert len(plugin_iface.calls["removeToolBarIcon"]) == 1


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "m3_plugin.zip"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build_plugin_zip.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    assert "files" in done.stdout
    return out


def test_zip_holds_metadata_icon_and_core(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = set(zf.namelist())
        meta = configparser.ConfigParser()
        meta.read_string(zf.read("m3_plugin/metadata.txt").decode())
    general = meta["general"]
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["name"] == "M3 Masked Mineral Modeling"
    for key in ("description", "about", "version", "author", "email"):
        assert general[key].strip(), key
    assert f"m3_plugin/{general['icon']}" in names
    assert {n.split("/")[0] for n in names} == {"m3_plugin"}
    core_files = {p.relative_to(REPO).as_posix() for p in (REPO / "core").rglob("*.py") if "__pycache__" not in p.parts}
    assert {f"m3_plugin/{p}" for p in core_files} <= names
    assert {"m3_plugin/__init__.py", "m3_plugin/plugin.py", "m3_plugin/dock.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or "/tests/" in n]


def test_zip_plugin_imports_its_own_core(plugin_zip, tmp_path):
    """Unpacked as QGIS does, the plugin imports core from inside itself (real files, relative imports)."""
    zipfile.ZipFile(plugin_zip).extractall(tmp_path)
    code = ("import m3_plugin, m3_plugin.core.data.stack as s, sys; "
            "assert 'core' not in sys.modules and 'core.data.stack' not in sys.modules; print(s.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "m3_plugin" / "core"))
