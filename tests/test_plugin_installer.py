"""The dock's one-click install, against local package indexes of small hand-made wheels: pip, run with the
Python that QGIS runs, installs into the plugin's own folder (never QGIS's site-packages); what it installs wins
over older copies elsewhere on sys.path while QGIS's numpy stays QGIS's; the CPU torch comes only from the CPU
index, and when that index does not answer the dock asks before fetching PyPI's CUDA build; pip's lines reach
the log as they come; the install counts as done once the bundled model loads."""
from __future__ import annotations

import base64
import hashlib
import importlib
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy
import pytest
from plugin_support import wait_until

from m3_plugin import dependencies, installer

NUMPY = numpy.__version__


def make_wheel(folder: Path, name: str, version: str, requires=(), body: str = "") -> Path:
    """A pure-Python wheel built by hand (no build backend, no index needed)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{module}/__init__.py": body or f"__version__ = {version!r}\n",
             f"{dist}.dist-info/METADATA": meta,
             f"{dist}.dist-info/WHEEL": ("Wheel-Version: 1.0\nGenerator: m3-test\nRoot-Is-Purelib: true\n"
                                         "Tag: py3-none-any\n")}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def make_index(root: Path, wheels: list[Path]) -> str:
    """A PEP 503 "simple" index on disk serving ``wheels``; its file: URL."""
    for wheel in wheels:
        project = root / dependencies._normal(wheel.name.split("-")[0])
        project.mkdir(parents=True, exist_ok=True)
        page = project / "index.html"
        links = page.read_text() if page.exists() else ""
        page.write_text(links + f'<a href="{wheel.as_uri()}">{wheel.name}</a>\n')
    return root.as_uri()


@pytest.fixture
def target(tmp_path, monkeypatch):
    """The plugin's folder on a fresh profile; pip reads no configuration of this machine."""
    folder = tmp_path / "profile" / "python" / dependencies.DEPS_FOLDER
    monkeypatch.setenv("M3_DEPENDENCIES", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)
    saved = list(sys.path)
    yield folder
    sys.path[:] = saved
    for name in [n for n, m in sys.modules.items() if str(folder) in str(getattr(m, "__file__", None) or "")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def real_stack():
    """torch, torchvision and smp of the test environment, imported before the install (as a QGIS that already
    loaded them): the fake wheels of the same names then only show up as modules needing a restart."""
    import segmentation_models_pytorch  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401


def run_install(panel, packages=None, confirm=False, timeout=300):
    if confirm:
        panel.confirm_button.click()
    else:
        panel.install(packages)
    task = panel.task
    assert task is not None and not panel.log_view.isHidden()
    wait_until(lambda: panel.task is None, timeout=timeout)
    return task


def dist_versions(folder: Path) -> dict[str, str]:
    return dict(p.name[:-len(".dist-info")].split("-", 1) for p in folder.glob("*.dist-info"))


# ---- pip commands and torch sources ----

def test_pip_commands_use_the_plugin_folder_and_one_index_for_torch(tmp_path):
    python = Path(sys.executable)
    cmd = dependencies.pip_install_command(python, ["torch", "segmentation_models_pytorch"], tmp_path / "deps",
                                           tmp_path / "c.txt", [tmp_path / "wheels"], raw_progress=True)
    assert cmd[:4] == [str(python), "-m", "pip", "install"] and cmd[cmd.index("--target") + 1] == str(tmp_path / "deps")
    assert cmd[-2:] == ["torch", "segmentation-models-pytorch"] and "--user" not in cmd
    assert cmd[cmd.index("--progress-bar") + 1] == "raw"
    assert cmd[cmd.index("--find-links") + 1] == str(tmp_path / "wheels")
    down = dependencies.pip_download_command(python, ["torch", "torchvision"], tmp_path / "w",
                                             "https://download.pytorch.org/whl/cpu")
    assert down[3] == "download" and down[down.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert not any("extra-index" in a for a in cmd + down)  # never a silent second source for torch
    assert dependencies.torch_index("cpu", "linux") == "https://download.pytorch.org/whl/cpu"
    assert dependencies.torch_index("cuda", "linux") is None  # PyPI's Linux wheel is the CUDA build
    assert dependencies.torch_index("cpu", "win32") is None and "cu" in dependencies.torch_index("cuda", "win32")
    assert dependencies.constraints_text({"torch": "2.13.0+cpu"}) == f"numpy=={NUMPY}\ntorch==2.13.0+cpu\n"
    text = dependencies.fallback_warning("cpu", "linux")
    assert "download.pytorch.org" in text and "CUDA build" in text and "3.1 GB" in text


def test_free_space_check_says_how_much_is_free(tmp_path):
    assert dependencies.free_space_problem(tmp_path / "not" / "yet", 0.001) == ""
    text = dependencies.free_space_problem(tmp_path / "not" / "yet", 1e9)
    assert text.startswith("Only ") and "GB is free" in text and "Free some space" in text


def test_index_probe_answers_false_for_a_closed_port_quickly(tmp_path):
    start = time.monotonic()
    assert not dependencies.index_reachable("http://127.0.0.1:9/whl/cpu", timeout=3)
    assert time.monotonic() - start < 5
    (tmp_path / "cpu" / "torch").mkdir(parents=True)
    assert dependencies.index_reachable((tmp_path / "cpu").as_uri())


def test_progress_moves_with_pip_lines_and_the_folder_size(tmp_path):
    p = installer.PipProgress(1000e6, 2000e6)
    start = p.fraction()
    p.feed("Collecting torch")
    assert p.step == "Looking up torch"
    local = tmp_path / "sympy-1.14.0-py3-none-any.whl"  # a wheel from a local index counts as downloaded
    local.write_bytes(b"0" * 5_000_000)
    p.feed(f"Processing {local}")
    assert p.step == f"Reading {local.name}" and p.done_bytes == 5_000_000
    p.feed("  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl (555.6 MB)")
    assert p.step.startswith("Downloading torch-2.14.1") and "555.6 MB" in p.step
    p.feed("Progress 277800000 of 555600000")  # pip's --progress-bar raw
    mid = p.fraction()
    assert start < mid and "278 of 556 MB" in p.step
    p.feed("Downloading https://files.example/nvidia_cublas-13.1.1.3-py3-none-any.whl (423.1 MB)")
    assert p.fraction() > mid and p.current_name == "nvidia_cublas-13.1.1.3-py3-none-any.whl"
    p.set_folder_bytes(1000)
    p.feed("Installing collected packages: mpmath, sympy, torch")
    unpack_start = p.fraction()
    assert "Unpacking 3 packages" in p.step
    p.set_folder_bytes(1000 + 1000e6)
    assert p.fraction() > unpack_start and "1.0 GB written" in p.step
    p.feed("Successfully installed mpmath-1.3.0 sympy-1.14.0 torch-2.14.1")
    assert p.fraction() >= 0.92


# ---- which Python runs pip ----

def fake_python(path: Path, version=(3, 11), prefix: Path | None = None, pip="24.0") -> Path:
    """A small script standing for an interpreter: answers the probe with ``version`` and ``prefix``."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    answer = json.dumps({"version": list(version), "exec_prefix": str(prefix or path.parent), "pip": pip})
    path.write_text(f"#!/bin/sh\necho '{answer}'\n")
    path.chmod(0o755)
    return path


posix_only = pytest.mark.skipif(sys.platform.startswith("win"), reason="fake interpreters are shell scripts")


@posix_only
def test_finder_linux_prefers_qgis_prefix_over_a_python_on_path(tmp_path):
    from m3_plugin.qgis_python import find_qgis_python

    usr = tmp_path / "usr"
    fake_python(usr / "bin" / "python3.11", prefix=usr)
    path_python = fake_python(tmp_path / "pyenv" / "shims" / "python3", prefix=tmp_path / "pyenv")  # same version
    nowhere = tmp_path / "no_system_bin"
    found = find_qgis_python("linux", str(path_python), str(usr), (3, 11), system_bin=nowhere)
    assert found.path == usr / "bin" / "python3.11" and found.pip == "24.0"
    # sys.executable = /usr/bin/qgis; QGIS's Python is found in /usr/bin (Debian, Ubuntu, Fedora)
    found = find_qgis_python("linux", str(tmp_path / "opt" / "qgis"), str(tmp_path / "opt"), (3, 11),
                             system_bin=usr / "bin")
    assert found.path == usr / "bin" / "python3.11"


@posix_only
def test_finder_refuses_when_no_python_has_qgis_version(tmp_path):
    from m3_plugin.qgis_python import PythonNotFound, find_qgis_python

    usr = tmp_path / "usr"
    fake_python(usr / "bin" / "python3", version=(3, 9), prefix=usr)
    fake_python(tmp_path / "bin" / "python3", version=(3, 12), prefix=tmp_path)
    with pytest.raises(PythonNotFound, match=r"Python 3\.11 that QGIS runs.*python3 \(Python 3\.9\).*"
                                             r"python3 \(Python 3\.12\).*Install the packages by hand"):
        find_qgis_python("linux", str(usr / "bin" / "qgis"), str(usr), (3, 11), system_bin=tmp_path / "bin")


@posix_only
def test_finder_windows_osgeo4w_and_standalone_layouts(tmp_path):
    from m3_plugin.qgis_python import candidates, find_qgis_python

    osgeo = tmp_path / "OSGeo4W"
    prefix = osgeo / "apps" / "Python312"
    fake_python(prefix / "python.exe", version=(3, 12), prefix=prefix)
    exe = osgeo / "bin" / "qgis-bin.exe"
    assert find_qgis_python("win32", str(exe), str(prefix), (3, 12)).path == prefix / "python.exe"
    # a QGIS whose sys.exec_prefix does not hold python.exe: <QGIS>\bin\python3.exe answers
    qgis = tmp_path / "QGIS 3.40"
    wrapper = fake_python(qgis / "bin" / "python3.exe", version=(3, 12), prefix=qgis / "apps" / "Python312")
    found = find_qgis_python("win32", str(qgis / "bin" / "qgis-bin.exe"), str(tmp_path / "elsewhere"), (3, 12))
    assert found.path == wrapper
    assert candidates("win32", str(qgis / "bin" / "qgis-bin.exe"), str(tmp_path / "x"), (3, 12)) == [wrapper]


@posix_only
def test_finder_macos_app_bundle(tmp_path):
    from m3_plugin.qgis_python import find_qgis_python

    contents = tmp_path / "QGIS.app" / "Contents"
    framework = contents / "Frameworks" / "Python.framework" / "Versions" / "3.11"
    bundled = fake_python(contents / "MacOS" / "bin" / "python3", prefix=framework)
    fake_python(framework / "bin" / "python3", prefix=framework)
    found = find_qgis_python("darwin", str(contents / "MacOS" / "QGIS"), str(framework), (3, 11))
    assert found.path == bundled
    (bundled).unlink()
    assert find_qgis_python("darwin", str(contents / "MacOS" / "QGIS"), str(framework), (3, 11)).path == \
        framework / "bin" / "python3"


def test_finder_finds_this_python_with_pip():
    from m3_plugin.qgis_python import find_qgis_python

    found = find_qgis_python()
    assert found.version == sys.version_info[:2] and found.pip and found.same_prefix


# ---- the install, end to end through the dock's panel ----

def test_pip_lines_reach_the_log_while_pip_runs(qgis_app, target, tmp_path):
    task = installer.InstallTask([], "cpu", target)
    script = tmp_path / "slow_pip.py"
    script.write_text("import time\nprint('Collecting first')\ntime.sleep(2)\nprint('Successfully installed x-1')\n")
    seen = []
    task.line.connect(lambda text: seen.append((time.monotonic(), text)))
    code = task._pip([sys.executable, str(script)])
    ended = time.monotonic()
    assert code == 0 and [t for _, t in seen][1:] == ["Collecting first", "Successfully installed x-1"]
    assert ended - seen[1][0] > 1.5  # the first line came while the child still ran (not at its exit)


def test_cancel_stops_pip_at_once(qgis_app, target, tmp_path):
    import threading

    task = installer.InstallTask([], "cpu", target)
    script = tmp_path / "stuck_pip.py"
    script.write_text("import time\nprint('Collecting torch')\ntime.sleep(120)\n")
    threading.Timer(1.0, task.cancel).start()
    start = time.monotonic()
    code = task._pip([sys.executable, str(script)])
    assert code != 0 and time.monotonic() - start < 20 and task.isCanceled()
    assert task._pip_failed(code) is False and task.outcome == "canceled"


def test_install_puts_fresh_packages_first_keeps_qgis_numpy_and_loads_the_model(qgis_app, target, tmp_path,
                                                                                monkeypatch):
    from m3_plugin.dock import M3Dock

    wheels = tmp_path / "wheels"
    make_wheel(wheels, "m3-fake-pkg", "0.1", ["m3-fake-dep>=2", "numpy"],
               "from m3_fake_dep import VALUE\n")
    make_wheel(wheels, "m3-fake-dep", "2.0", body="VALUE = 2\n")
    make_wheel(wheels, "numpy", NUMPY, body="VALUE = 'a copy that must not shadow QGIS numpy'\n")
    system = tmp_path / "system_site"  # an older copy, where QGIS's Python finds it (the end of sys.path)
    (system / "m3_fake_dep").mkdir(parents=True)
    (system / "m3_fake_dep" / "__init__.py").write_text("VALUE = 1\n")
    sys.path.append(str(system))
    monkeypatch.setitem(dependencies.REQUIRED, "m3_fake_pkg", "m3-fake-pkg")
    monkeypatch.setattr(dependencies, "INSTALLABLE", dependencies.INSTALLABLE + ("m3_fake_pkg",))
    dock = M3Dock(None)
    panel = dock.install_panel
    assert panel.missing == ["m3_fake_pkg"] and not panel.button.isHidden()
    assert "Install the missing packages" in dock.reason_label.text() and not dock.run_button.isEnabled()
    panel.extra_args = ["--no-index", "--find-links", str(wheels)]
    installed = []
    panel.installed.connect(lambda: installed.append(True))
    steps = []
    task = panel.install()
    task.step.connect(steps.append)
    assert panel.button.text() == "Cancel"
    wait_until(lambda: panel.task is None, timeout=300)
    assert task.outcome == "installed" and task.returncode == 0, task.log
    assert importlib.import_module("m3_fake_pkg").VALUE == 2  # the fresh copy beside it, not the system's 1
    assert sys.path[0] == str(target)
    assert not (target / "numpy").exists() and not list(target.glob("numpy-*.dist-info"))
    assert Path(numpy.__file__).parent != target / "numpy"
    log = panel.log_view.toPlainText()
    assert "$ " in log and "Processing" in log and "Successfully installed" in log and f"numpy {NUMPY}" in log
    assert any(s.startswith("Checking that the model loads") for s in steps)
    assert installed and panel.label.text().startswith("Installed in") and "bundled model" in panel.label.text()
    assert "Restart" not in panel.label.text() and panel.button.text() == "Install"
    assert "Install" not in dock.reason_label.text()  # Run now waits only for the inputs
    dock.close_down()
    dock.deleteLater()


def test_model_that_does_not_load_is_not_called_installed(qgis_app, target, tmp_path, monkeypatch):
    from m3_plugin.installer import InstallPanel

    wheels = tmp_path / "wheels"
    make_wheel(wheels, "m3-fake-pkg", "0.1")

    def broken():
        raise ImportError("cannot import name 'equal_valued' from 'sympy.core.numbers'")

    monkeypatch.setattr(installer, "check_model_loads", broken)
    monkeypatch.setitem(dependencies.REQUIRED, "m3_fake_pkg", "m3-fake-pkg")
    panel = InstallPanel()
    panel.extra_args = ["--no-index", "--find-links", str(wheels)]
    installed = []
    panel.installed.connect(lambda: installed.append(True))
    task = run_install(panel, ["m3_fake_pkg"])
    assert task.outcome == "failed" and task.returncode == 0 and not installed
    text = panel.label.text()
    assert "does not load" in text and "equal_valued" in text and "delete" in text and str(target) in text
    panel.deleteLater()


def torch_indexes(tmp_path):
    """A CPU index (torch 9.9+cpu) and a 'PyPI' (torch 9.9 and 10.0, the CUDA builds, with triton)."""
    files = tmp_path / "files"
    cpu = [make_wheel(files / "cpu", "torch", "9.9+cpu"),
           make_wheel(files / "cpu", "torchvision", "0.99+cpu", ["torch==9.9", "numpy"]),
           make_wheel(files / "cpu", "numpy", NUMPY)]
    pypi = [make_wheel(files / "pypi", "torch", "9.9"), make_wheel(files / "pypi", "torch", "10.0", ["triton"]),
            make_wheel(files / "pypi", "triton", "3.0"),
            make_wheel(files / "pypi", "torchvision", "0.99", ["torch==9.9", "numpy"]),
            make_wheel(files / "pypi", "torchvision", "0.100", ["torch==10.0", "numpy"]),
            make_wheel(files / "pypi", "segmentation-models-pytorch", "0.6", ["torch", "torchvision"]),
            make_wheel(files / "pypi", "numpy", NUMPY)]
    make_index(tmp_path / "whl" / "cpu", cpu)
    return (tmp_path / "whl").as_uri(), make_index(tmp_path / "pypi", pypi)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyPI's torch is the CUDA build on Linux only")
def test_cpu_torch_comes_only_from_the_cpu_index(qgis_app, target, tmp_path, monkeypatch, real_stack):
    from m3_plugin.installer import InstallPanel

    torch_root, pypi = torch_indexes(tmp_path)
    monkeypatch.setattr(dependencies, "TORCH_INDEX", torch_root)
    monkeypatch.setenv("PIP_INDEX_URL", pypi)  # the user's default index: a newer (CUDA) torch is there
    panel = InstallPanel()
    panel.variant.setCurrentIndex(panel.variant.findData("cpu"))
    task = run_install(panel, ["torch", "segmentation_models_pytorch"])
    assert task.outcome == "installed", task.log
    versions = dist_versions(target)
    assert versions["torch"] == "9.9+cpu" and versions["torchvision"] == "0.99+cpu"
    assert versions["segmentation_models_pytorch"] == "0.6" and "numpy" not in versions
    assert "Pinned from" in panel.log_view.toPlainText()
    # torch & co. were imported before the install: the dock says so
    assert "Restart QGIS" in panel.label.text() and "torch" in panel.label.text()
    assert set(task.stale) >= {"torch", "torchvision", "segmentation_models_pytorch"}
    panel.deleteLater()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyPI's torch is the CUDA build on Linux only")
def test_unreachable_cpu_index_asks_before_fetching_the_cuda_build(qgis_app, target, tmp_path, monkeypatch,
                                                                   real_stack):
    from m3_plugin.installer import InstallPanel

    _, pypi = torch_indexes(tmp_path)
    monkeypatch.setattr(dependencies, "TORCH_INDEX", "http://127.0.0.1:9/whl")  # nothing answers
    monkeypatch.setenv("PIP_INDEX_URL", pypi)
    panel = InstallPanel()
    panel.variant.setCurrentIndex(panel.variant.findData("cpu"))
    task = run_install(panel, ["torch", "segmentation_models_pytorch"])
    assert task.outcome == "confirm" and not (target / "torch").exists()
    assert not panel.confirm_button.isHidden() and "CUDA" in panel.confirm_button.text()
    assert "cannot be reached" in panel.label.text() and "3.1 GB" in panel.label.text()
    assert "does not answer" in panel.log_view.toPlainText()
    task = run_install(panel, confirm=True)
    assert task.outcome == "installed", task.log
    versions = dist_versions(target)
    assert versions["torch"] == "10.0" and "triton" not in versions and not (target / "triton").exists()
    assert "triton 3.0" in panel.log_view.toPlainText() and panel.confirm_button.isHidden()
    panel.deleteLater()


def test_stale_modules_are_those_loaded_from_elsewhere(tmp_path):
    folder = tmp_path / "deps"
    (folder / "json").mkdir(parents=True)
    (folder / "m3_not_loaded").mkdir()
    (folder / "bin").mkdir()
    stale = dependencies.stale_modules(folder)
    assert list(stale) == ["json"] and stale["json"] == sys.modules["json"].__file__
