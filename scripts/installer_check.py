"""Run inside the QGIS desktop (qgis --code), started by scripts/installer_check.sh: click Install in the M3 dock
with torch missing, click the confirmation when the CPU index cannot be reached (M3_INSTALL_CONFIRM=1), wait for
the end, record the progress seen (progress.tsv), pip's log (install_log.txt), the dock and the screen at the
confirmation, while unpacking and at the end (confirm_*, progress_*, installer_*: _dock.png, _screen.png), then
check the model card shows; then, as a geologist goes on, load the example data and run the default Arizona example
(scripts/arizona_run.py) with the dependencies just installed, and grab the window (run_screen.png) and the dock
(run_dock.png). Exits QGIS with status 0 when the install ended with the model loading and the run ended with a
non-empty table, else 1. M3_INSTALL_RUN=0 skips the run."""
import os
import subprocess
import sys
import time

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))  # qgis --code runs from the repository root
import arizona_run  # noqa: E402

OUT = os.environ["M3_INSTALL_OUT"]
VARIANT = os.environ.get("M3_INSTALL_VARIANT", "cpu")
CONFIRM = os.environ.get("M3_INSTALL_CONFIRM", "1") == "1"
LIMIT_S = float(os.environ.get("M3_INSTALL_LIMIT_S", "3000"))
RUN = os.environ.get("M3_INSTALL_RUN", "1") == "1"
state = {"t0": time.monotonic(), "step": "start", "samples": [], "code": 1}


def say(text: str) -> None:
    print(f"installer_check: {text}", flush=True)


def shoot(name: str) -> None:
    dock = state["dock"]
    dock.grab().save(os.path.join(OUT, f"{name}_dock.png"))
    subprocess.run(["import", "-window", "root", os.path.join(OUT, f"{name}_screen.png")], check=False)


def finish(code: int, why: str) -> None:
    say(why)
    with open(os.path.join(OUT, "progress.tsv"), "w") as f:
        f.write("seconds\tpercent\tlabel\n")
        f.writelines(f"{t:.0f}\t{p}\t{label}\n" for t, p, label in state["samples"])
    panel = state.get("dock") and state["dock"].install_panel
    if panel:
        with open(os.path.join(OUT, "install_log.txt"), "w") as f:
            f.write(panel.log_view.toPlainText() + "\n")
    # the project cleared before QGIS quits (QGIS 3.44 died on signal 11 at shutdown otherwise)
    QgsProject.instance().clear()
    QgsApplication.exit(code)


def tick() -> None:
    try:
        step()
    except Exception as e:  # report and leave QGIS, never hang
        finish(1, f"failed: {e!r}")
        return
    if state["step"] != "done":
        if time.monotonic() - state["t0"] > LIMIT_S:
            finish(1, "timed out")
            return
        QTimer.singleShot(1000, tick)


def step() -> None:
    if state["step"] == "start":
        say(f"sys.executable={sys.executable} exec_prefix={sys.exec_prefix} version={sys.version.split()[0]}")
        window = iface.mainWindow()
        window.setGeometry(0, 0, 1280, 800)
        for name in ("Browser", "Browser2"):
            widget = window.findChild(QDockWidget, name)
            if widget is not None:
                widget.hide()
        plugin = plugins["m3_plugin"]
        plugin.show_dock(True)
        dock = plugin.dock
        state["dock"] = dock
        panel = dock.install_panel
        say(f"missing before: {panel.missing}; label: {panel.label.text()}")
        say(f"model card before: {dock.card_label.text()}")
        if "torch" not in panel.missing:
            raise RuntimeError("torch is importable in this QGIS: hide it first (no venv on PYTHONPATH)")
        panel.variant.setCurrentIndex(panel.variant.findData(VARIANT))
        state["started"] = time.monotonic()
        panel.button.click()
        state["step"] = "wait"
    elif state["step"] == "wait":
        panel = state["dock"].install_panel
        elapsed = time.monotonic() - state["started"]
        state["samples"].append((elapsed, panel.progress.value(), panel.label.text().replace("\n", " ")))
        if len(state["samples"]) % 15 == 1:
            say(f"{elapsed:.0f} s {panel.progress.value()} % {panel.label.text()}")
        if panel.task is not None:
            if panel.progress.value() >= 70 and "progress_shot" not in state:  # unpacking: the bar and step shown
                state["progress_shot"] = True
                shoot("progress")
            return
        task = panel.last_task
        say(f"task ended: {task.outcome} after {elapsed:.0f} s; label: {panel.label.text()}")
        if task.outcome == "confirm":
            shoot("confirm")
            if not CONFIRM:
                finish(1, "the CPU index cannot be reached and M3_INSTALL_CONFIRM is not 1")
                state["step"] = "done"
                return
            say(f"clicking: {panel.confirm_button.text()}")
            panel.confirm_button.click()
            return
        state["outcome"] = task.outcome
        state["step"] = "settle"
        state["t_settle"] = time.monotonic()
    elif state["step"] == "settle":
        if time.monotonic() - state["t_settle"] < 3:
            return
        dock = state["dock"]
        dock.widget().verticalScrollBar().setValue(0)
        shoot("installer")
        say(f"model card after: {dock.card_label.text()}")
        say(f"device: {dock.device_label.text()}")
        ok = state["outcome"] == "installed" and dock.card is not None
        installed = f"outcome {state['outcome']}, model card {'shown' if dock.card else 'missing'}"
        if not ok or not RUN:
            state["step"] = "done"
            finish(0 if ok else 1, installed)
            return
        say(f"{installed}; {time.monotonic() - state['started']:.0f} s after the click. Now the Arizona example.")
        state["run_t0"] = time.monotonic()
        state["example"] = dock.load_example_data()
        if state["example"] is None:
            raise RuntimeError("Load example data failed: " + dock.status_label.text())
        state["step"] = "example"
    elif state["step"] == "example":
        if state["example"].stack_layer_id is None:
            return
        say(f"example data loaded in {time.monotonic() - state['run_t0']:.0f} s")
        arizona_run.start(state["dock"])  # the dock's defaults: the bundled model, the top 1 % flagged
        state["step"] = "run"
    elif state["step"] == "run":
        dock = state["dock"]
        if not arizona_run.finished(dock):
            return
        say(f"run ended {time.monotonic() - state['run_t0']:.0f} s after Load example data; {arizona_run.answer(dock)}")
        say(f"summary: {dock.last_outputs.summary}")
        state["step"] = "run_render"
        state["t_settle"] = time.monotonic()
    elif state["step"] == "run_render":
        if time.monotonic() - state["t_settle"] < 8:
            return
        dock = state["dock"]
        subprocess.run(["import", "-window", "root", os.path.join(OUT, "run_screen.png")], check=False)
        dock.grab().save(os.path.join(OUT, "run_dock.png"))
        rows = dock.comparison_cells()
        state["step"] = "done"
        finish(0 if rows else 1, f"install and run done; {len(rows)} table rows")


QTimer.singleShot(2000, tick)
