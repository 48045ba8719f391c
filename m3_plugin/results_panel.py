"""The dock's results: a threshold slider that re-colours the run's probability layers and updates
the table without a new run, the table (known sites of the hidden species in the region, area
flagged, the blurred-record baseline, lift), the capture curve, and an export of the run."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from qgis.core import QgsProject
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QPointF, QRectF, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QImage, QPainter, QPen
from qgis.PyQt.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider,
                                 QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from . import styles
from .results import COMPARISON_HEADERS, RunOutputs, comparison_rows, probability_layers

EXPORT_FOLDER = "M3 exports"
# the dock's row labels (COMPARISON_HEADERS[1:], short enough for a narrow dock)
ROW_LABELS = ["Known sites", "In flagged cells", "Share of sites", "Flagged km²", "Share of region",
              "Baseline share", "Lift"]


def default_export_base() -> Path:
    """Beside the project file when it is saved, else in the home folder: never a cache."""
    home = QgsProject.instance().homePath()
    return (Path(home) if home else Path.home()) / EXPORT_FOLDER


SLIDER_STEPS = 1000  # the threshold slider moves in steps of 0.001 (calibrated maps are mostly below 0.3)
AREA_TICKS = (0.001, 0.01, 0.1, 1.0)  # the capture curve's area axis: log scale from 0.1 % to 100 %


def area_position(share: float) -> float:
    """Where a share of the region's area lies on the capture curve's log axis (0 at 0.1 % or less, 1 at 100 %)."""
    import math

    if share <= AREA_TICKS[0]:
        return 0.0
    return min(1.0, math.log10(share / AREA_TICKS[0]) / math.log10(AREA_TICKS[-1] / AREA_TICKS[0]))


class CaptureCurve(QWidget):
    """Share of the known sites captured in the top X % of the region's area: the model (solid, one
    colour per species), the blurred-record baseline (dashed), the aux-only map when the run made one
    (dotted), random (the diagonal), and where the threshold cuts each model curve (a dot)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(170)
        self.setToolTip("Capture curve: the share of known sites of each hidden species that lie in the "
                        "top X % of the region's area, ranked by the model (solid) and by blurred visible "
                        "records (dashed) and, when asked, by the aux-only map (dotted). Above the diagonal: "
                        "better than random. Dots: the threshold.")
        self.curves: list[tuple[str, list[float], list[float], list[float]]] = []
        self.aux_curves: dict[str, list[float]] = {}
        self.marks: dict[str, tuple[float, float]] = {}
        self.species: list[str] = []
        self.empty_text = "The capture curve of a run shows here."

    def set_curves(self, scores, rows) -> None:
        self.curves = [(s.species, *[list(map(float, a)) for a in s.curve()]) for s in scores]
        self.species = [s.species for s in scores]
        self.aux_curves = {s.species: list(map(float, s.aux_only_curve())) for s in scores if s.aux_only is not None}
        self.marks = {r.species: (r.flagged_share, r.captured) for r in rows if r.captured is not None}
        self.empty_text = "No known sites of the hidden species\nin the region: no curve."
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        self.paint(painter, self.width(), self.height())
        painter.end()

    def paint(self, p: QPainter, width: int, height: int) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(QRectF(0, 0, width, height), QColor(255, 255, 255))
        left, right, top = 38.0, 10.0, 10.0
        bottom = 30.0 + 12.0 * len(self.curves)  # the key sits under the axis, off the lines
        w, h = max(1.0, width - left - right), max(1.0, height - top - bottom)

        def pt(x: float, y: float) -> QPointF:
            return QPointF(left + area_position(x) * w, top + (1 - y) * h)

        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(QRectF(left, top, w, h))
        font = p.font()
        font.setPointSizeF(7.5)
        p.setFont(font)
        for v in (0.0, 0.5, 1.0):
            p.drawText(QRectF(0, top + (1 - v) * h - 7, left - 4, 14), int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                       f"{v:.0%}")
        for v in AREA_TICKS:
            p.drawText(QRectF(left + area_position(v) * w - 20, top + h + 2, 40, 12), int(Qt.AlignmentFlag.AlignHCenter),
                       f"{100 * v:g}%")
        p.drawText(QRectF(0, top + h + 14, width, 14), int(Qt.AlignmentFlag.AlignHCenter),
                   "top % of area (x, log scale) · % of sites (y)")
        p.setPen(QPen(QColor(170, 170, 170), 1, Qt.PenStyle.DotLine))
        diagonal = [AREA_TICKS[0] * 10 ** (k / 20) for k in range(61)]  # random: y = x, curved on a log axis
        for a, b in zip(diagonal, diagonal[1:]):
            p.drawLine(pt(a, a), pt(b, b))
        if not self.curves:
            p.setPen(QColor(110, 110, 110))
            p.drawText(QRectF(left, top, w, h), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.empty_text)
            return
        for i, (sym, share, model, base) in enumerate(self.curves):
            colour = styles.species_colour(sym, self.species)

            def polyline(values, pen: QPen) -> None:
                p.setPen(pen)
                for a in range(1, len(share)):
                    p.drawLine(pt(share[a - 1], values[a - 1]), pt(share[a], values[a]))

            polyline(base, QPen(colour.darker(110), 1.3, Qt.PenStyle.DashLine))
            aux = self.aux_curves.get(sym)
            if aux is not None:
                polyline(aux, QPen(colour.darker(130), 1.6, Qt.PenStyle.DotLine))
            polyline(model, QPen(colour, 2.0))
            if sym in self.marks:
                x, y = self.marks[sym]
                p.setBrush(colour)
                p.drawEllipse(pt(x, y), 3.5, 3.5)
            p.setPen(colour)
            p.drawText(QRectF(left, top + h + 28 + 12 * i, w, 12), int(Qt.AlignmentFlag.AlignLeft),
                       f"{sym}: model ——, blurred records – –" + (", aux-only ····" if aux is not None else ""))

    def save_png(self, path: Path, width: int = 640, height: int = 420) -> Path:
        image = QImage(width, height, QImage.Format.Format_ARGB32)
        image.fill(QColor(255, 255, 255))
        painter = QPainter(image)
        self.paint(painter, width, height)
        painter.end()
        if not image.save(str(path), "PNG"):
            raise OSError(f"Could not write {path}")
        return path


class ResultsPanel(QWidget):
    """Threshold slider, table, capture curve and export of the dock's last run."""

    exported = pyqtSignal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.outputs: Optional[RunOutputs] = None
        self.group = None
        self.rows = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        slider_row = QHBoxLayout()
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold_slider.setObjectName("m3ThresholdSlider")
        self.threshold_slider.setRange(1, SLIDER_STEPS - 1)
        self.threshold_slider.setEnabled(False)
        self.threshold_slider.setToolTip("Move to re-colour the probability layers and update the table at "
                                         "another threshold (no new run).")
        self.threshold_slider.valueChanged.connect(self._slider_moved)
        self.threshold_label = QLabel("Threshold —", self)
        slider_row.addWidget(self.threshold_label)
        slider_row.addWidget(self.threshold_slider, 1)
        layout.addLayout(slider_row)
        self.scale_label = QLabel(self)
        self.scale_label.setObjectName("m3ScaleNote")
        self.scale_label.setWordWrap(True)
        layout.addWidget(self.scale_label)
        # one column per hidden species, one row per measure: it reads in a narrow dock
        self.table = QTableWidget(len(COMPARISON_HEADERS) - 1, 0, self)
        self.table.setObjectName("m3Comparison")
        self.table.setVerticalHeaderLabels(ROW_LABELS)
        for r, header in enumerate(COMPARISON_HEADERS[1:]):
            self.table.verticalHeaderItem(r).setToolTip(header)
        self.table.setWordWrap(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._cells: list[list[str]] = []
        self.table.setToolTip("Known sites of each hidden species inside the region: how many lie in cells at "
                              "or above the threshold, the area flagged, what the blurred-record baseline "
                              "captures on the same area, and the lift over flagging cells at random.")
        layout.addWidget(self.table)
        self.curve = CaptureCurve(self)
        layout.addWidget(self.curve)
        self.caveat = QLabel(self)
        self.caveat.setObjectName("m3DiscoveryCaveat")
        self.caveat.setWordWrap(True)
        self.caveat.hide()
        layout.addWidget(self.caveat)
        self.export_widget = QgsFileWidget(self)
        self.export_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.export_widget.setToolTip("Where Export writes the run's folder; empty: 'M3 exports' beside the "
                                      "project (or in your home folder).")
        export_row = QHBoxLayout()
        export_row.addWidget(self.export_widget, 1)
        self.export_button = QPushButton("Export", self)
        self.export_button.setObjectName("m3Export")
        self.export_button.setEnabled(False)
        self.export_button.setToolTip("Write the prediction GeoTIFF, the capture curve (PNG, CSV), the table "
                                      "(CSV) and a short HTML report with the settings.")
        self.export_button.clicked.connect(lambda: self.export())
        export_row.addWidget(self.export_button)
        layout.addLayout(export_row)

    # -- a run --------------------------------------------------------------------------------
    def set_run(self, outputs: RunOutputs, group=None) -> None:
        self.outputs, self.group = outputs, group
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(int(round(outputs.threshold * SLIDER_STEPS)))
        self.threshold_slider.blockSignals(False)
        self.threshold_slider.setEnabled(bool(outputs.species))
        self.export_button.setEnabled(True)
        self.set_threshold(outputs.threshold, restyle=False)
        from .core.evaluation.discovery import DISCOVERY_CAVEAT

        self.caveat.setText(f"<small>{DISCOVERY_CAVEAT} The curve's blurred-record baseline is that "
                            "rival on this region; for the aux-only map tick <i>Aux-only map beside "
                            "M3's</i> before Run (or Processing: M3 → Aux-only map; Combine maps adds it "
                            "to this one).</small>")
        self.caveat.show()

    def _slider_moved(self, value: int) -> None:
        self.set_threshold(value / SLIDER_STEPS)

    def set_threshold(self, threshold: float, restyle: bool = True) -> None:
        """Re-colour the run's probability layers and recompute the table and the curve's marks."""
        out = self.outputs
        if out is None:
            return
        if abs(threshold - out.threshold) < 0.5 / SLIDER_STEPS and out.flag_text:
            flagged = out.flag_text
        else:
            values = [s.scores for s in out.scores if s.scores is not None and len(s.scores)]
            share = float(np.mean(np.concatenate(values) >= threshold)) if values else float("nan")
            flagged = (f"moved by hand; {100 * share:.2g} % of the region flagged" if share == share
                       else "moved by hand")
        self.threshold_label.setText(f"Threshold {threshold:.3f}")
        self.threshold_label.setToolTip(flagged)
        validated = "" if out.validated_threshold != out.validated_threshold else (
            f" The models' validated threshold for this question: {out.validated_threshold:.3g}.")
        self.scale_label.setText(f"<small>Flagged: {flagged}. Numbers on the map: {out.scale_note or 'model score'}."
                                 f"{validated}</small>")
        if restyle and self.group is not None:
            from .results import _band

            for sym, layer in probability_layers(self.group).items():
                styles.style_probability(layer, threshold, _band(out.prediction, f"mean_{sym}"), sym,
                                         top=out.mean_max.get(sym, 1.0), calibrated=out.calibrated)
        if out.scores:
            self.rows = [s.at_threshold(threshold) for s in out.scores]
            cells = [r.cells() for r in self.rows]
        else:
            self.rows = []
            cells = comparison_rows(out.comparison) if abs(threshold - out.threshold) < 1e-9 else []
        self._fill(cells)
        self.curve.set_curves([s for s in out.scores if s.sites.sum() > 0], self.rows)

    def _fill(self, cells: list[list[str]]) -> None:
        """``cells``: one row per species (as :data:`COMPARISON_HEADERS`), shown one column per species."""
        self._cells = [list(row) for row in cells]
        self.table.setColumnCount(len(cells))
        self.table.setHorizontalHeaderLabels([row[0] for row in cells])
        for c, row in enumerate(cells):
            for r, text in enumerate(row[1:]):
                item = QTableWidgetItem(text)
                item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                self.table.setItem(r, c, item)

    def cells(self) -> list[list[str]]:
        """The table's text, one row per species (as :data:`COMPARISON_HEADERS`)."""
        t = self.table
        return [[t.horizontalHeaderItem(c).text()] + [t.item(r, c).text() for r in range(t.rowCount())]
                for c in range(t.columnCount())]

    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / SLIDER_STEPS

    # -- export -------------------------------------------------------------------------------
    def export(self, base: Optional[Path] = None) -> Optional[Path]:
        """Write the run into a new folder under ``base`` (the chosen folder, else beside the project);
        returns the folder."""
        from .core.evaluation.run_summary import write_curve_csv, write_report_html, write_table_csv

        out = self.outputs
        if out is None:
            return None
        base = Path(base or self.export_widget.filePath() or default_export_base())
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", out.name).strip("_")
        folder, n = base / slug, 1
        while folder.exists():
            n += 1
            folder = base / f"{slug}_{n}"
        folder.mkdir(parents=True)
        files = []
        for src in (out.prediction, out.region, out.clusters, out.known_sites, out.aux_only):
            if src is not None and Path(src).exists():
                shutil.copy2(src, folder / Path(src).name)
                files.append(Path(src).name)
        scores = [s for s in out.scores if s.sites.sum() > 0]
        curve_png = None
        if out.scores:
            write_table_csv(folder / "table.csv", self.rows)
            files.append("table.csv")
        if scores:
            write_curve_csv(folder / "capture_curve.csv", scores)
            self.curve.save_png(folder / "capture_curve.png")
            curve_png = "capture_curve.png"
            files += ["capture_curve.csv", curve_png]
        settings = {**out.settings, "threshold": f"{self.threshold:.3f}" + (
                        "" if abs(self.threshold - out.threshold) < 0.5 / SLIDER_STEPS else " (moved by hand after the run)"),
                    "hidden species": ", ".join(out.species), "run folder": str(out.folder), "run": out.summary}
        write_report_html(folder / "report.html", out.name, settings, self.rows, curve_png, files)
        self.exported.emit(str(folder))
        return folder
