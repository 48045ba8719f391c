"""One-click install of the packages M3 needs (torch, segmentation-models-pytorch, safetensors):
pip, run in a background task, installs them into the plugin's own folder on the QGIS profile
(:func:`dependencies.deps_dir`), never into QGIS's or the system's Python; the log can be copied;
the packages load without a restart where possible."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional, Sequence

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QApplication, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
                                 QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from . import dependencies as deps


class InstallTask(QgsTask):
    """``pip install --target`` in a worker thread; each output line is emitted as ``line``."""

    line = pyqtSignal(str)

    def __init__(self, command: list[str], target: Path) -> None:
        super().__init__("M3: install Python packages", QgsTask.CanCancel)
        self.command = command
        self.target = target
        self.returncode: Optional[int] = None
        self.log: list[str] = []

    def _emit(self, text: str) -> None:
        self.log.append(text)
        self.line.emit(text)

    def run(self) -> bool:
        self._emit("$ " + " ".join(self.command))
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1)
        except OSError as e:
            self._emit(f"Could not start pip: {e}")
            return False
        progress = 2.0
        for raw in proc.stdout:
            text = raw.rstrip()
            self._emit(text)
            if text.startswith(("Collecting", "Downloading", "Processing", "Obtaining")):
                progress = min(70.0, progress + 4.0)
            elif text.startswith("Installing collected packages"):
                progress = 80.0
            self.setProgress(progress)
            if self.isCanceled():
                proc.terminate()
                break
        self.returncode = proc.wait()
        return self.returncode == 0 and not self.isCanceled()


class InstallPanel(QWidget):
    """What is missing, Install, the torch build to get, progress and a copyable log."""

    installed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.task: Optional[InstallTask] = None
        self.extra_args: list[str] = []  # e.g. ["--no-index", "--find-links", folder] (tests, offline use)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(self)
        self.label.setObjectName("m3InstallLabel")
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # wraps to the dock's width
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.label)
        row = QHBoxLayout()
        self.variant = QComboBox(self)
        self.variant.addItem("torch for CPU (~200 MB)", "cpu")
        self.variant.addItem("torch for CUDA GPUs (~2.5 GB)", "cuda")
        self.variant.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.variant.setMinimumContentsLength(8)
        self.variant.setToolTip("Which torch build to download; the CUDA one is picked when an NVIDIA driver "
                                "answers on this machine.")
        default = deps.torch_variant()
        self.variant.setCurrentIndex(max(0, self.variant.findData(default)))
        self.button = QPushButton("Install", self)
        self.button.setObjectName("m3Install")
        self.button.setToolTip(f"pip install the missing packages into {deps.deps_dir()} (a folder of the "
                               "plugin; QGIS's own Python is not changed).")
        self.button.clicked.connect(self.install)
        row.addWidget(self.variant, 1)
        row.addWidget(self.button)
        layout.addLayout(row)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.log_view = QPlainTextEdit(self)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumHeight(120)
        self.log_view.setVisible(False)
        self.log_view.setToolTip("pip's output; select and copy, or use Copy log.")
        layout.addWidget(self.log_view)
        self.copy_button = QPushButton("Copy log", self)
        self.copy_button.setToolTip("Copy pip's output to the clipboard (to report a problem).")
        self.copy_button.setVisible(False)
        self.copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.log_view.toPlainText()))
        layout.addWidget(self.copy_button)
        self.missing: list[str] = []
        self.refresh()

    def refresh(self) -> list[str]:
        """Show what is missing; hidden when nothing the button can add is missing."""
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
        self.button.setVisible(bool(self.missing))
        self.setVisible(bool(missing) or self.task is not None or not self.log_view.isHidden())
        return missing

    def install(self, packages: Optional[Sequence[str]] = None) -> Optional[InstallTask]:
        if self.task is not None:
            return None
        packages = list(packages or self.missing)
        if not packages:
            return None
        target = deps.deps_dir()
        target.mkdir(parents=True, exist_ok=True)
        constraints = target / "m3_constraints.txt"
        constraints.write_text(deps.constraints_text())
        cmd = deps.pip_command(packages, target, self.variant.currentData(), constraints, self.extra_args)
        self.task = InstallTask(cmd, target)
        self.task.line.connect(self._line)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.taskCompleted.connect(lambda: self._done(True))
        self.task.taskTerminated.connect(lambda: self._done(False))
        self.log_view.clear()
        for w in (self.progress, self.log_view, self.copy_button):
            w.setVisible(True)
        self.progress.setValue(0)
        self.button.setEnabled(False)
        self.label.setText(f"Installing {', '.join(packages)} into {target}...")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _line(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _done(self, ok: bool) -> None:
        task, self.task = self.task, None
        self.button.setEnabled(True)
        deps.activate()
        missing = self.refresh()
        if ok and not self.missing:
            self.progress.setValue(100)
            self.label.setText("Installed; M3 is ready." + (f" Still missing: {', '.join(missing)}." if missing
                                                            else ""))
            self.installed.emit()
        else:
            code = "" if task is None or task.returncode is None else f" (pip exit code {task.returncode})"
            self.label.setText(f"The install did not finish{code}: see the log below; Copy log copies it. "
                               + self.label.text())
