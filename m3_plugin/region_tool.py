"""Map tools that draw the region to hide: a rectangle (drag) or a polygon (click the corners,
right-click or double-click to close). Each emits ``drawn(QgsGeometry)`` in the canvas CRS."""
from __future__ import annotations

from typing import Optional

from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

from .qt_compat import POLYGON_GEOMETRY

OUTLINE = QColor(220, 30, 30)
FILL = QColor(220, 30, 30, 40)


def _rubber_band(canvas: QgsMapCanvas) -> QgsRubberBand:
    band = QgsRubberBand(canvas, POLYGON_GEOMETRY)
    band.setStrokeColor(OUTLINE)
    band.setFillColor(FILL)
    band.setWidth(2)
    return band


class RectangleRegionTool(QgsMapTool):
    """Press, drag and release to draw a rectangle."""

    drawn = pyqtSignal(QgsGeometry)

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._start: Optional[QgsPointXY] = None
        self._band = _rubber_band(canvas)

    def canvasPressEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt API)
        self._start = e.mapPoint()
        self._band.reset(POLYGON_GEOMETRY)

    def canvasMoveEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is not None:
            self._band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(self._start, e.mapPoint())), None)

    def canvasReleaseEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None:
            return
        rect = QgsRectangle(self._start, e.mapPoint())
        self._start = None
        self._band.reset(POLYGON_GEOMETRY)
        if rect.width() > 0 and rect.height() > 0:
            self.drawn.emit(QgsGeometry.fromRect(rect))

    def deactivate(self) -> None:
        self._band.reset(POLYGON_GEOMETRY)
        super().deactivate()


class PolygonRegionTool(QgsMapTool):
    """Click the corners; right-click or double-click closes the polygon, Esc starts over."""

    drawn = pyqtSignal(QgsGeometry)

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._points: list[QgsPointXY] = []
        self._band = _rubber_band(canvas)

    def canvasReleaseEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802
        if e.button() == Qt.MouseButton.RightButton:
            self.finish()
            return
        self._points.append(e.mapPoint())
        self._update(None)

    def canvasDoubleClickEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802
        self.finish()

    def canvasMoveEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._points:
            self._update(e.mapPoint())

    def keyPressEvent(self, e) -> None:  # noqa: N802
        if e.key() == Qt.Key.Key_Escape:
            self._points = []
            self._band.reset(POLYGON_GEOMETRY)

    def _update(self, moving: Optional[QgsPointXY]) -> None:
        pts = self._points + ([moving] if moving is not None else [])
        self._band.reset(POLYGON_GEOMETRY)
        for p in pts:
            self._band.addPoint(p, False)
        self._band.show()
        self._band.updatePosition()

    def finish(self) -> None:
        """Close the polygon and emit it (needs three distinct corners)."""
        pts = []
        for p in self._points:
            if not pts or p != pts[-1]:
                pts.append(p)
        self._points = []
        self._band.reset(POLYGON_GEOMETRY)
        if len(pts) >= 3:
            geom = QgsGeometry.fromPolygonXY([pts + [pts[0]]])
            if not geom.isGeosValid():
                geom = geom.makeValid()
            if not geom.isEmpty() and geom.area() > 0:
                self.drawn.emit(geom)

    def deactivate(self) -> None:
        self._points = []
        self._band.reset(POLYGON_GEOMETRY)
        super().deactivate()
