"""The one-click dependency install (issue 19), against a local package: pip installs it into the
plugin's own folder (never QGIS's or the system's site-packages), the log is shown, the package
imports without a restart, and the dock's Run no longer waits for it."""
from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import zipfile

import pytest
from plugin_support import wait_until

from m3_plugin import dependencies


def make_wheel(folder, name="m3_fake_pkg", version="0.1"):
    """A pure-Python wheel built by hand (no index, no build backend needed)."""
    dist = f"{name}-{version}"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: m3-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture
def fake_requirement(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)
    target = tmp_path / "profile" / "python" / dependencies.DEPS_FOLDER
    monkeypatch.setenv("M3_DEPENDENCIES", str(target))
    monkeypatch.setitem(dependencies.REQUIRED, "m3_fake_pkg", "m3_fake_pkg")
    monkeypatch.setattr(dependencies, "INSTALLABLE", dependencies.INSTALLABLE + ("m3_fake_pkg",))
    yield wheels, target
    sys.modules.pop("m3_fake_pkg", None)
    if str(target) in sys.path:
        sys.path.remove(str(target))


def test_pip_command_targets_the_plugin_folder(tmp_path):
    cmd = dependencies.pip_command(["torch", "safetensors"], tmp_path / "deps", "cpu", tmp_path / "c.txt")
    assert cmd[1:4] == ["-m", "pip", "install"] and cmd[cmd.index("--target") + 1] == str(tmp_path / "deps")
    assert "https://download.pytorch.org/whl/cpu" in cmd and cmd[-2:] == ["torch", "safetensors"]
    assert "--user" not in cmd and "https://download.pytorch.org/whl/cpu" not in dependencies.pip_command(
        ["torch"], tmp_path, "cuda")
    assert dependencies.constraints_text().startswith("numpy")


def test_install_button_installs_a_local_package_and_the_dock_can_run(qgis_app, fake_requirement):
    from m3_plugin.dock import M3Dock

    wheels, target = fake_requirement
    dock = M3Dock(None)
    panel = dock.install_panel
    assert panel.missing == ["m3_fake_pkg"] and not panel.button.isHidden()
    assert "Install the missing packages" in dock.reason_label.text() and not dock.run_button.isEnabled()
    panel.extra_args = ["--no-index", "--find-links", str(wheels)]
    installed = []
    panel.installed.connect(lambda: installed.append(True))
    panel.button.click()
    task = panel.task
    assert task is not None and not panel.log_view.isHidden()
    wait_until(lambda: panel.task is None, timeout=300)
    assert task.returncode == 0, task.log
    assert installed and panel.label.text().startswith("Installed")
    assert (target / "m3_fake_pkg" / "__init__.py").exists()
    assert importlib.import_module("m3_fake_pkg").VALUE == 42  # no restart
    assert "Successfully installed" in panel.log_view.toPlainText()
    assert "Install" not in dock.reason_label.text()  # Run now waits only for the inputs
    dock.close_down()
    dock.deleteLater()
