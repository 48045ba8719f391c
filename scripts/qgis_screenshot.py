"""Run inside the QGIS desktop (qgis --code): drive the M3 dock through an infill of Au and Cu hidden
over south-eastern Arizona, with the aux-only map beside it, at a 1280 × 800 window with the dock at its
default width, then grab the window (docs/qgis_screenshot.png), the same window showing the aux-only
map of Au over the whole region (docs/qgis_aux_only.png), the dock's results with the capture curve
(docs/qgis_capture_curve.png) and the dock's install panel as it shows with torch missing
(docs/qgis_install.png).
Started by scripts/qgis_screenshot.sh; exits QGIS when done (status 1 on failure)."""
import os
import sys
import time

from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))  # qgis --code runs from the repository root
import arizona_run  # noqa: E402
from arizona_run import HIDE, REGION  # noqa: E402

OUT = os.environ["M3_SCREENSHOT_OUT"]
MODEL = os.environ.get("M3_SCREENSHOT_MODEL", "")
DOCS = os.path.dirname(OUT)
state = {"t0": time.monotonic(), "step": "load"}


def finish(code: int, why: str = "") -> None:
    if why:
        print(f"qgis_screenshot: {why}", flush=True)
    # the project cleared before QGIS quits: QGIS 3.44 otherwise removes layers from a layer tree view
    # it has already deleted, and dies on signal 11 after every picture is saved
    QgsProject.instance().clear()
    QgsApplication.exit(code)


def tick() -> None:
    try:
        step()
    except Exception as e:  # report and leave QGIS, never hang
        finish(1, f"failed: {e!r}")
        return
    if state["step"] != "done":
        if time.monotonic() - state["t0"] > 1700:
            finish(1, "timed out")
            return
        QTimer.singleShot(500, tick)


def step() -> None:
    plugin = plugins["m3_plugin"]
    if state["step"] == "load":
        window = iface.mainWindow()
        window.resize(1280, 800)
        for panel in ("Browser", "Browser2"):
            widget = window.findChild(QDockWidget, panel)
            if widget is not None:
                widget.hide()
        plugin.show_dock(True)
        dock = plugin.dock
        state["dock"] = dock
        state["example"] = dock.load_example_data()
        state["step"] = "wait_stack"
    elif state["step"] == "wait_stack":
        if state["example"].stack_layer_id is None:
            return
        arizona_run.start(state["dock"], MODEL, aux_only=True)  # every other option at the dock's default
        state["step"] = "wait_run"
    elif state["step"] == "wait_run":
        dock = state["dock"]
        if not arizona_run.finished(dock):
            return
        # the view as the plugin leaves it after Run: no zoom, expansion or styling by this script
        print(f"qgis_screenshot: {arizona_run.answer(dock)}", flush=True)
        state["step"] = "render"
        state["t_render"] = time.monotonic()
    elif state["step"] == "render":
        if time.monotonic() - state["t_render"] < 8:
            return
        iface.mainWindow().grab().save(OUT)
        dock = state["dock"]
        for node in dock.last_group.findLayers():  # the aux-only map of the first species, alone
            name = node.name()
            if name.endswith("mean probability") or name.endswith("aux-only map (no record as input)"):
                node.setItemVisibilityChecked(name == f"{HIDE[0]} aux-only map (no record as input)")
        from qgis.core import QgsCoordinateTransform

        to_map = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                        iface.mapCanvas().mapSettings().destinationCrs(), QgsProject.instance())
        iface.mapCanvas().setExtent(to_map.transformBoundingBox(REGION))
        iface.mapCanvas().refresh()
        state["step"] = "aux_only"
        state["t_render"] = time.monotonic()
    elif state["step"] == "aux_only":
        if time.monotonic() - state["t_render"] < 8:
            return
        iface.mainWindow().grab().save(os.path.join(DOCS, "qgis_aux_only.png"))
        dock = state["dock"]
        print(f"qgis_screenshot: {dock.last_outputs.summary}", flush=True)
        body = dock.widget()
        body.ensureWidgetVisible(dock.results.curve)
        state["step"] = "curve"
        state["t_render"] = time.monotonic()
    elif state["step"] == "curve":
        if time.monotonic() - state["t_render"] < 2:
            return
        dock = state["dock"]
        dock.grab().save(os.path.join(DOCS, "qgis_capture_curve.png"))
        from m3_plugin import dependencies

        dependencies.missing_packages = lambda: ["torch", "segmentation_models_pytorch", "safetensors"]
        dock.install_panel.refresh()
        dock.widget().verticalScrollBar().setValue(0)
        state["step"] = "install"
        state["t_render"] = time.monotonic()
    elif state["step"] == "install":
        if time.monotonic() - state["t_render"] < 2:
            return
        state["dock"].grab().save(os.path.join(DOCS, "qgis_install.png"))
        state["step"] = "done"
        finish(0, f"saved {OUT}, qgis_aux_only.png, qgis_capture_curve.png, qgis_install.png")


QTimer.singleShot(1000, tick)
