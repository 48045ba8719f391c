"""One-click install of the packages M3 needs (torch, segmentation-models-pytorch, safetensors).

pip, started with QGIS's own Python (:mod:`qgis_python`), runs in a background task and installs them into
the plugin's own folder on the QGIS profile (:func:`dependencies.deps_dir`), never into QGIS's or the
system's Python. The CPU build of torch comes only from PyTorch's CPU index; when that index cannot be
reached, the dock says which build PyPI would give instead and how large it is, and waits for a click.
pip's output streams into the log box; the bar follows the bytes downloaded and unpacked. The install
counts as done only once the bundled model loads in this QGIS."""
from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (QApplication, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
                                 QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from . import dependencies as deps
from .qgis_python import NO_WINDOW, PythonNotFound, find_qgis_python, no_pip_message, pip_supports_raw_progress

SIZE = re.compile(r"\((?:[\d.]+ ?(?:bytes|kB|MB|GB)/)?(?P<n>[\d.]+) ?(?P<unit>bytes|kB|MB|GB)\)\s*$")
UNIT = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
RAW = re.compile(r"^Progress (?P<done>\d+) of (?P<total>\d+)$")
SMALL_GB = (0.05, 0.1)  # download, on disk: safetensors or smp alone
# pip settings that would add other sources than the one index given on the command line (a blank list)
ONLY_THE_INDEX = {"PIP_EXTRA_INDEX_URL": " ", "PIP_FIND_LINKS": " "}


def _name(text: str) -> str:
    """The file name in a pip line's URL or path (``torch-2.14.1-cp311-....whl``)."""
    word = text.split()[0] if text.split() else text
    return word.rstrip("/").split("/")[-1].split("#")[0]


class PipProgress:
    """What pip is doing, read from its output lines and from the growth of its temporary folder: the step
    for the dock's label and a fraction that keeps moving (downloads 3-65 %, unpacking 65-92 %)."""

    def __init__(self, download_bytes: float, disk_bytes: float) -> None:
        self.download_bytes = max(download_bytes, 1.0)
        self.disk_bytes = max(disk_bytes, 1.0)
        self.phase = "resolve"
        self.step = "Looking up the packages"
        self.done_bytes = 0.0  # downloads finished
        self.current_total = 0.0
        self.current_bytes = 0.0
        self.current_name = ""
        self.folder_bytes = 0
        self.install_base = 0

    def feed(self, line: str) -> None:
        text = line.strip()
        raw = RAW.match(text)
        if raw:
            self.current_bytes = float(raw["done"])
            self.current_total = float(raw["total"]) or self.current_total
            self.step = (f"Downloading {self.current_name}: {self.current_bytes / 1e6:.0f} of "
                         f"{self.current_total / 1e6:.0f} MB")
            return
        if text.startswith(("Downloading ", "Resuming download ")):
            self._finish_current()
            rest = text.split(" ", 2)[-1] if text.startswith("Resuming") else text[len("Downloading "):]
            size = SIZE.search(rest)
            self.current_name = _name(rest)
            self.current_total = float(size["n"]) * UNIT[size["unit"]] if size else 0.0
            self.phase = "download"
            self.step = f"Downloading {self.current_name}" + (f" ({size['n']} {size['unit']})" if size else "")
        elif text.startswith("Collecting "):
            self.step = f"Looking up {text[len('Collecting '):].split()[0]}"
        elif text.startswith(("Processing ", "Using cached ", "File was already downloaded ")):
            where = text.split(" ", 1)[1] if " " in text else text
            self.step = f"Reading {_name(where)}"
            if os.path.isfile(where):  # a wheel on disk (a local index, --find-links): counts as downloaded
                self.done_bytes += os.path.getsize(where)
        elif text.startswith("Installing collected packages:"):
            self._finish_current()
            count = len([p for p in text.split(":", 1)[1].split(",") if p.strip()])
            self.phase = "install"
            self.install_base = self.folder_bytes
            self.step = f"Unpacking {count} packages into the plugin's folder (minutes for torch)"
        elif text.startswith(("Successfully installed", "Successfully downloaded")):
            self.phase = "done" if text.startswith("Successfully installed") else self.phase
            self.step = "pip finished" if self.phase == "done" else "Downloaded"

    def _finish_current(self) -> None:
        self.done_bytes += self.current_total or self.current_bytes
        self.current_total = self.current_bytes = 0.0

    def set_folder_bytes(self, size: int) -> None:
        """The size of pip's temporary folder (downloads land there, then the unpacked packages)."""
        self.folder_bytes = size
        if self.phase == "install":
            self.step = f"Unpacking into the plugin's folder: {(size - self.install_base) / 1e9:.1f} GB written"

    def fraction(self) -> float:
        if self.phase in ("resolve", "download"):
            got = max(self.done_bytes + self.current_bytes, self.folder_bytes)
            return 0.03 + 0.62 * min(1.0, got / self.download_bytes)
        if self.phase == "install":  # pip's temporary copy outgrows the final folder by about a quarter
            written = max(0, self.folder_bytes - self.install_base)
            return 0.65 + 0.27 * min(1.0, written / (1.25 * self.disk_bytes))
        return 0.92


def check_model_loads() -> str:
    """Import torch and segmentation_models_pytorch in this QGIS and load the bundled model through core; says what
    loaded. Raises what the import or the load raises."""
    import torch
    import segmentation_models_pytorch  # noqa: F401

    from .model_info import default_model_paths

    paths = default_model_paths()
    if not paths:
        return f"torch {torch.__version__} imports (this copy of the plugin has no bundled model to load)"
    from .core.model.model_file import load_model

    model, card = load_model(paths[0])
    count = sum(p.numel() for p in model.parameters())
    return (f"torch {torch.__version__} and the bundled model ({count / 1e6:.1f} M parameters, "
            f"{len(card.species)} species) load in this QGIS")


class InstallTask(QgsTask):
    """Find QGIS's Python, check the torch index, run pip (streaming its lines as ``line``, the current step as
    ``step``), tidy the folder, then load the model. ``outcome``: installed, confirm, failed or canceled."""

    line = pyqtSignal(str)
    step = pyqtSignal(str)

    def __init__(self, packages: Sequence[str], variant: str, target: Path, extra_args: Sequence[str] = (),
                 pypi_torch_confirmed: bool = False) -> None:
        super().__init__("M3: install Python packages", QgsTask.Flag.CanCancel)
        self.packages = list(packages)
        self.variant = variant
        self.target = Path(target)
        self.staging = self.target.parent / f"{self.target.name}.download"
        self.extra_args = list(extra_args)
        self.pypi_torch_confirmed = pypi_torch_confirmed
        self.outcome = "failed"
        self.message = ""
        self.returncode: Optional[int] = None
        self.stale: dict[str, str] = {}
        self.loaded = ""
        self.log: list[str] = []
        self.seconds = 0.0
        self._progress = PipProgress(SMALL_GB[0] * 1e9, SMALL_GB[1] * 1e9)
        self._step_sent = 0.0

    def _emit(self, text: str) -> None:
        self.log.append(text)
        self.line.emit(text)

    def _step(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._step_sent > 0.5:
            self._step_sent = now
            self.step.emit(text)

    def run(self) -> bool:
        start = time.monotonic()
        try:
            ok = self._install()
        except Exception as e:  # shown in the dock, never raised into QGIS's task manager
            self.outcome, self.message = "failed", f"{type(e).__name__}: {e}"
            self._emit(self.message)
            ok = False
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.seconds = time.monotonic() - start
        return ok

    def _install(self) -> bool:
        self._step("Finding QGIS's Python", force=True)
        self.setProgress(1)
        try:
            python = find_qgis_python()
        except PythonNotFound as e:
            self.message = str(e)
            return False
        self._emit(f"QGIS's Python: {python.path} (Python {python.version[0]}.{python.version[1]}, "
                   f"pip {python.pip or 'missing'})")
        if python.pip is None:
            self.message = no_pip_message(python)
            return False
        raw = pip_supports_raw_progress(python.path)
        build, index = self.variant, None
        if "torch" in self.packages:
            index = None if self.pypi_torch_confirmed else deps.torch_index(self.variant)
            if self.pypi_torch_confirmed:
                build = deps.pypi_torch_build()
                self._emit(f"Getting PyPI's torch ({build} build), as confirmed.")
            elif index is not None:
                self._step(f"Checking that {index} answers", force=True)
                if not deps.index_reachable(index):
                    self._emit(f"{index} does not answer.")
                    if deps.pypi_torch_build() != self.variant:
                        self.outcome, self.message = "confirm", deps.fallback_warning(self.variant)
                        return False
                    self._emit(f"PyPI's torch is the {self.variant} build here: getting it from PyPI.")
                    index = None
        download_gb, disk_gb = (deps.TORCH_SIZES_GB.get(build, deps.TORCH_SIZES_GB["cpu"]) if "torch" in self.packages
                                else SMALL_GB)
        self._progress = PipProgress(download_gb * 1e9, disk_gb * 1e9)
        short = deps.free_space_problem(self.target.parent, download_gb + 1.5 * disk_gb)
        if short:
            self.message = short
            return False
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.target.mkdir(parents=True, exist_ok=True)
        constraints = self.staging / "constraints.txt"
        constraints.write_text(deps.constraints_text())
        links: list[Path] = []
        if index is not None:  # the chosen build from its own index only, then pinned for the install
            wheels = self.staging / "wheels"
            code = self._pip(deps.pip_download_command(python.path, ["torch", "torchvision"], wheels, index,
                                                       constraints, raw, self.extra_args), ONLY_THE_INDEX)
            if code != 0:
                return self._pip_failed(code)
            pins = deps.wheel_pins(wheels, ["torch", "torchvision"])
            self._emit(f"Pinned from {index}: " + ", ".join(f"{n} {v}" for n, v in pins.items()))
            tag = "+" + index.rstrip("/").split("/")[-1]
            if not pins.get("torch", "").endswith(tag):
                self.message = (f"pip fetched torch {pins.get('torch', '(none)')}, not a {tag[1:]} build, from "
                                f"{index}. Copy log and report it.")
                return False
            constraints.write_text(deps.constraints_text(pins))
            links.append(wheels)
        packages = self.packages + (["torchvision"] if index is not None else [])
        code = self._pip(deps.pip_install_command(python.path, packages, self.target, constraints, links, raw,
                                                  self.extra_args))
        if code != 0:
            return self._pip_failed(code)
        self.setProgress(93)
        self._step("Removing from the folder what QGIS brings itself", force=True)
        removed = deps.drop_from_folder(self.target)
        if removed:
            self._emit("Removed from the plugin's folder, so that QGIS's own copies stay in use (or, for triton, "
                       "because M3 does not use it): " + ", ".join(removed))
        deps.activate(self.target)
        self.stale = deps.stale_modules(self.target)
        if self.stale:
            self._emit("Already loaded in this QGIS from elsewhere before the install: "
                       + ", ".join(f"{n} ({w})" for n, w in self.stale.items()))
        self._step("Checking that the model loads in this QGIS", force=True)
        self.setProgress(96)
        try:
            self.loaded = check_model_loads()
        except Exception as e:  # the actual error, shown in the dock
            self.message = f"{type(e).__name__}: {e}"
            self._emit(f"The model does not load: {self.message}")
            return False
        self._emit(self.loaded)
        self.outcome = "installed"
        return True

    def _pip_failed(self, code: int) -> bool:
        self.outcome = "canceled" if self.isCanceled() else "failed"
        errors = [t for t in self.log if t.startswith("ERROR:")]
        self.message = (f"pip stopped (exit code {code})" + (f": {errors[-1][6:].strip()}" if errors else "")
                        if not self.isCanceled() else "Cancelled")
        return False

    def _pip(self, command: list[str], settings: Optional[dict[str, str]] = None) -> int:
        """Run pip, passing each line on as it comes (``settings``: more environment); its temporary files go to the
        staging folder (same disk as the plugin's folder, watched for progress)."""
        self._emit("$ " + " ".join(command))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1",
                   TMPDIR=str(self.staging), TEMP=str(self.staging), TMP=str(self.staging), **(settings or {}))
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    encoding="utf-8", errors="replace", bufsize=1, env=env, creationflags=NO_WINDOW)
        except OSError as e:
            self._emit(f"Could not start pip: {e}")
            return -1
        lines: queue.Queue = queue.Queue()

        def read() -> None:
            for text in proc.stdout:
                lines.put(text)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        measured = 0.0
        progress = self._progress
        while True:
            try:
                text = lines.get(timeout=0.5)
            except queue.Empty:
                text = ""
            if text is None:
                break
            if text:
                text = text.rstrip("\r\n")
                progress.feed(text)
                if not RAW.match(text.strip()):
                    self._emit(text)
            if self.isCanceled():
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            if time.monotonic() - measured > 2.0:
                measured = time.monotonic()
                progress.set_folder_bytes(deps.folder_size(self.staging))
            self.setProgress(100 * progress.fraction())
            self._step(progress.step)
        self.returncode = proc.wait()
        return self.returncode


class InstallPanel(QWidget):
    """What is missing, Install (Cancel while it runs), the torch build to get, the confirmation when only another
    build can be fetched, progress with the current step, and a copyable log."""

    installed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.task: Optional[InstallTask] = None
        self.last_task: Optional[InstallTask] = None
        self.extra_args: list[str] = []  # e.g. ["--no-index", "--find-links", folder] (offline use)
        self._packages: list[str] = []
        self._started = 0.0
        self._step_text = ""
        self._clock = QTimer(self)  # the elapsed time keeps moving while pip or the model check is quiet
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._show_elapsed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(self)
        self.label.setObjectName("m3InstallLabel")
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wraps to the dock
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label)
        row = QHBoxLayout()
        self.variant = QComboBox(self)
        default = deps.torch_variant()
        for variant in (["default"] if default == "default" else ["cpu", "cuda"]):
            self.variant.addItem(deps.variant_label(variant), variant)
        self.variant.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.variant.setMinimumContentsLength(8)
        self.variant.setToolTip("Which torch build to download (" + "; ".join(
            f"{v}: {d:g} GB download, {k:g} GB on disk" for v, (d, k) in deps.TORCH_SIZES_GB.items())
            + "). The CUDA one is picked when an NVIDIA driver answers on this machine; both run on the CPU.")
        self.variant.setCurrentIndex(max(0, self.variant.findData(default)))
        self.button = QPushButton("Install", self)
        self.button.setObjectName("m3Install")
        self.button.setToolTip(f"pip install the missing packages into {deps.deps_dir()} (a folder of the "
                               "plugin; QGIS's own Python is not changed).")
        self.button.clicked.connect(self._button_clicked)
        row.addWidget(self.variant, 1)
        row.addWidget(self.button)
        layout.addLayout(row)
        self.confirm_button = QPushButton(self)
        self.confirm_button.setObjectName("m3InstallPypiTorch")
        self.confirm_button.setVisible(False)
        self.confirm_button.clicked.connect(lambda: self.install(self._packages, pypi_torch_confirmed=True))
        layout.addWidget(self.confirm_button)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.log_view = QPlainTextEdit(self)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumHeight(120)
        self.log_view.setVisible(False)
        self.log_view.setToolTip("pip's output as it runs; select and copy, or use Copy log.")
        layout.addWidget(self.log_view)
        self.copy_button = QPushButton("Copy log", self)
        self.copy_button.setToolTip("Copy pip's output to the clipboard (to report a problem).")
        self.copy_button.setVisible(False)
        self.copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.log_view.toPlainText()))
        layout.addWidget(self.copy_button)
        self.missing: list[str] = []
        self.refresh()

    def refresh(self) -> list[str]:
        """Show what is missing; hidden when nothing is missing and nothing was installed here."""
        missing = deps.missing_packages()
        self.missing = deps.installable(missing)
        other = [m for m in missing if m not in self.missing]
        text = ""
        if self.missing:
            text = (f"M3 needs {', '.join(deps.REQUIRED[m] for m in self.missing)}, not installed in QGIS's "
                    "Python. Install downloads them into a folder of the plugin on your QGIS profile "
                    f"({deps.DEPS_FOLDER}); QGIS's own Python is not changed.")
        if other:
            text += ("\n" if text else "") + deps.missing_message(other)
        self.label.setText(text)
        self.variant.setVisible("torch" in self.missing)
        self.button.setVisible(bool(self.missing) or self.task is not None)
        self.setVisible(bool(missing) or self.task is not None or not self.log_view.isHidden())
        return missing

    def _button_clicked(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.install()

    def install(self, packages: Optional[Sequence[str]] = None, pypi_torch_confirmed: bool = False
                ) -> Optional[InstallTask]:
        """Start the install of ``packages`` (default: the missing ones) in the background; None when one runs."""
        if self.task is not None:
            return None
        packages = list(packages or self.missing)
        if not packages:
            return None
        self._packages = packages
        target = deps.deps_dir()
        self.task = InstallTask(packages, self.variant.currentData(), target, self.extra_args, pypi_torch_confirmed)
        self.task.line.connect(self.log_view.appendPlainText)
        self.task.step.connect(self._show_step)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.taskCompleted.connect(self._done)
        self.task.taskTerminated.connect(self._done)
        self.log_view.clear()
        for widget in (self.progress, self.log_view, self.copy_button):
            widget.setVisible(True)
        self.confirm_button.setVisible(False)
        self.variant.setEnabled(False)
        self.progress.setValue(0)
        self.button.setText("Cancel")
        self.button.setToolTip("Stop the install; the plugin's folder is left as it was.")
        self._started = time.monotonic()
        self._show_step(f"Installing {', '.join(packages)} into {target}")
        self._clock.start()
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _show_step(self, text: str) -> None:
        self._step_text = text
        self._show_elapsed()

    def _show_elapsed(self) -> None:
        seconds = int(time.monotonic() - self._started)
        self.label.setText(f"{self._step_text} ({seconds // 60} min {seconds % 60:02d} s)")

    def _done(self) -> None:
        task, self.task = self.task, None
        self.last_task = task
        self._clock.stop()
        self.button.setText("Install")
        self.button.setToolTip(f"pip install the missing packages into {deps.deps_dir()} (a folder of the "
                               "plugin; QGIS's own Python is not changed).")
        self.variant.setEnabled(True)
        deps.activate()
        self.refresh()
        if task is None:
            return
        minutes = f"{task.seconds / 60:.1f} min"
        if task.outcome == "installed":
            self.progress.setValue(100)
            text = f"Installed in {minutes}: {task.loaded}. M3 is ready."
            if task.stale:
                text += (f" Restart QGIS when convenient: it had loaded {', '.join(task.stale)} from elsewhere "
                         "before the install and keeps using those until it restarts.")
            self.label.setText(text)
            self.installed.emit()
            return
        if task.outcome == "confirm":
            self.progress.setVisible(False)
            other = deps.pypi_torch_build()
            size = deps.TORCH_SIZES_GB.get(other, (0, 0))[0]
            self.confirm_button.setText(f"Get the {other.upper()} build ({size:g} GB)")
            self.confirm_button.setToolTip(f"pip install PyPI's torch, the {other.upper()} build, into "
                                           f"{task.target}.")
            self.confirm_button.setVisible(True)
            self.label.setText(task.message)
            return
        if task.outcome == "canceled":
            self.label.setText(f"Install cancelled; {task.target} was left as it was. Click Install to start again.")
            return
        if task.returncode == 0 and task.message:  # pip worked, the model does not load
            if task.stale:
                todo = (f"Restart QGIS: before the install this QGIS had already loaded {', '.join(task.stale)} "
                        "from elsewhere, and keeps using those copies until it restarts.")
            else:
                todo = (f"Copy log and report it; to start afresh, close QGIS, delete {task.target} and click "
                        "Install again.")
            self.label.setText(f"pip installed the packages, but the model does not load in this QGIS: "
                               f"{task.message}. {todo}")
            return
        self.label.setText(f"The install did not finish: {task.message or 'see the log below'}. The log below says "
                           "more; Copy log copies it.")
