"""The default Arizona example as a geologist starts it in the M3 dock, for the desktop check scripts run inside
QGIS (scripts/qgis_screenshot.py, scripts/installer_check.py): the example data loaded, Au and Cu hidden over
south-eastern Arizona, every other option at the dock's default, Run clicked."""
from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsProject, QgsRectangle

REGION = QgsRectangle(-112.6, 31.4, -109.4, 34.0)  # south-eastern Arizona: porphyry copper and gold
HIDE = ("Au", "Cu")


def start(dock, model: str = "", aux_only: bool = False) -> None:
    """Choose the sources, the hidden species and the region, then Run; raises with the dock's reason when Run
    does not start. ``dock.load_example_data()`` must have finished (its stack layer added)."""
    dock.guess_sources()
    if model:
        dock.set_model_paths([model])
    for sym, row in dock.mineral_rows.items():
        row.hide.setChecked(sym in HIDE)
    dock.set_region(QgsGeometry.fromRect(REGION), QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.aux_only_check.setChecked(aux_only)
    if dock.run() is None:
        raise RuntimeError(dock.status_label.text())


def finished(dock) -> bool:
    """True once the run has ended; raises when it ended without outputs."""
    if dock.task is not None:
        return False
    if dock.last_outputs is None:
        raise RuntimeError("the infill did not finish: " + dock.status_label.text())
    return True


def answer(dock) -> str:
    """What the geologist reads: the flag rule and the table's rows; and the project's CRS."""
    return (f"flagged {dock.last_outputs.flag_text}; table {dock.comparison_cells()}; "
            f"project CRS {QgsProject.instance().crs().authid()}")
