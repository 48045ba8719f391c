"""The dock's "Region to hide" section: a region drawn on the map (rectangle or polygon), the
selected polygons of a layer, or the map extent; turned into core shapes when a run starts."""
from __future__ import annotations

from typing import Optional

from qgis.core import QgsCoordinateReferenceSystem, QgsDistanceArea, QgsGeometry, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox, QgsRubberBand
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from . import layer_sources as ls
from .qt_compat import POLYGON_GEOMETRY, POLYGON_LAYERS
from .source_rows import _compact

REGION_MODES = (("drawn", "Drawn on the map"), ("selection", "Selected polygons"), ("extent", "Map extent"))


class RegionChooser(QgsCollapsibleGroupBox):
    """How the region to hide is given; ``changed`` fires whenever it (or how it is given) changes."""

    changed = pyqtSignal()

    def __init__(self, canvas, mode: str, parent: Optional[QWidget] = None) -> None:
        super().__init__("Region to hide", parent)
        self.setObjectName("m3Section_Region_to_hide")
        self.setSaveCollapsedState(False)
        self.canvas = canvas
        self.region: Optional[tuple[QgsGeometry, QgsCoordinateReferenceSystem]] = None
        self.rubber: Optional[QgsRubberBand] = None
        self._tools: dict[str, object] = {}
        self._previous_tool = None
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.mode = QComboBox(self)
        for key, label in REGION_MODES:
            self.mode.addItem(label, key)
        self.mode.setCurrentIndex(max(0, self.mode.findData(mode)))
        _compact(self.mode)
        self.mode.setToolTip("Where the ticked species are hidden: a shape drawn on the map, the selected "
                             "polygons of a layer, or the current map extent.")
        self.mode.currentIndexChanged.connect(lambda _: self.update_label())
        form.addRow("Region", self.mode)
        draw = QHBoxLayout()
        self.rect_button = QPushButton("Rectangle", self)
        self.rect_button.setToolTip("Draw the region: drag a rectangle on the map.")
        self.rect_button.clicked.connect(lambda: self.start_drawing("rectangle"))
        self.poly_button = QPushButton("Polygon", self)
        self.poly_button.setToolTip("Draw the region: click its corners on the map, right-click to close it.")
        self.poly_button.clicked.connect(lambda: self.start_drawing("polygon"))
        draw.addWidget(QLabel("Draw", self))
        draw.addWidget(self.rect_button)
        draw.addWidget(self.poly_button)
        form.addRow(draw)
        self.layer = QgsMapLayerComboBox(self)
        self.layer.setFilters(POLYGON_LAYERS)
        self.layer.setAllowEmptyLayer(True)
        self.layer.setLayer(None)
        _compact(self.layer)
        self.layer.setToolTip("A polygon layer whose selected features are the region "
                              "(Region: Selected polygons of a layer).")
        self.layer.layerChanged.connect(lambda _: self.update_label())
        form.addRow("Polygon layer", self.layer)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(80)
        form.addRow(self.label)

    def set_region(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """Use a drawn region (``geometry`` in ``crs``) and show it on the map."""
        self.region = (QgsGeometry(geometry), QgsCoordinateReferenceSystem(crs))
        self.mode.setCurrentIndex(self.mode.findData("drawn"))
        if self.canvas is not None:
            if self.rubber is None:
                self.rubber = QgsRubberBand(self.canvas, POLYGON_GEOMETRY)
                self.rubber.setStrokeColor(QColor(30, 30, 220))
                self.rubber.setFillColor(QColor(0, 0, 0, 0))  # an outline: the result shows through
                self.rubber.setWidth(2)
            self.rubber.setToGeometry(QgsGeometry(geometry), crs)
        self.update_label()

    def start_drawing(self, kind: str) -> None:
        """Activate the rectangle or polygon map tool; the drawn shape becomes the region."""
        from .region_tool import PolygonRegionTool, RectangleRegionTool

        canvas = self.canvas
        if canvas is None:
            return
        if kind not in self._tools:
            tool = RectangleRegionTool(canvas) if kind == "rectangle" else PolygonRegionTool(canvas)
            tool.drawn.connect(self._drawn)
            self._tools[kind] = tool
        current = canvas.mapTool()
        if current not in self._tools.values():
            self._previous_tool = current
        canvas.setMapTool(self._tools[kind])
        self.label.setText("Drag a rectangle on the map." if kind == "rectangle" else
                           "Click the polygon's corners on the map; right-click to close it.")

    def _drawn(self, geometry: QgsGeometry) -> None:
        canvas = self.canvas
        self.set_region(geometry, canvas.mapSettings().destinationCrs())
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(canvas.mapTool())

    def update_label(self) -> None:
        """Say what the region is now (its area when drawn) and tell the dock."""
        mode = self.mode.currentData()
        if mode == "drawn":
            if self.region is None:
                text = "No region drawn yet: use Draw rectangle or Draw polygon."
            else:
                geom, crs = self.region
                area = QgsDistanceArea()
                area.setSourceCrs(crs, QgsProject.instance().transformContext())
                area.setEllipsoid("WGS84")
                text = f"Drawn region: {area.measureArea(geom) / 1e6:,.0f} km²."
        elif mode == "selection":
            layer = self.layer.currentLayer()
            text = (f"The selected polygons of '{layer.name()}' ({layer.selectedFeatureCount()} selected)."
                    if layer is not None else "Choose a polygon layer and select the region's polygons.")
        else:
            text = "The current map extent."
        if self.rubber is not None:
            self.rubber.setVisible(mode == "drawn")
        self.label.setText(text)
        self.changed.emit()

    def blocker(self) -> str:
        """Why no run can start with this region ('' when one can)."""
        mode = self.mode.currentData()
        if mode == "drawn" and self.region is None:
            return "Draw the region to hide (Region to hide: Rectangle or Polygon)."
        if mode == "selection":
            layer = self.layer.currentLayer()
            if layer is None or layer.selectedFeatureCount() == 0:
                return "Select the region's polygons in a polygon layer (Region to hide)."
        return ""

    def shapes(self):
        """The region to hide, as core shapes; :class:`InputError` with what to do when there is none."""
        from .core.errors import InputError

        mode = self.mode.currentData()
        if mode == "drawn":
            if self.region is None:
                raise InputError("No region to hide: draw a rectangle or polygon on the map (Region to hide).")
            return ls.geometry_shapes(self.region[0], self.region[1], "drawn region")
        if mode == "selection":
            layer = self.layer.currentLayer()
            if layer is None:
                raise InputError("Choose the polygon layer whose selected features are the region to hide.")
            return ls.layer_shapes(layer, selected_only=True)
        canvas = self.canvas
        if canvas is None:
            raise InputError("There is no map to take the extent of; draw a region instead.")
        extent = canvas.extent()
        if extent.isEmpty():
            raise InputError("The map extent is empty: zoom to the region to hide.")
        return ls.geometry_shapes(QgsGeometry.fromRect(extent), canvas.mapSettings().destinationCrs(),
                                  "map extent")

    def hide_outline(self) -> None:
        """Hide the drawn outline (a run's region layer shows it now)."""
        if self.rubber is not None:
            self.rubber.setVisible(False)

    def close_down(self) -> None:
        """Remove the map tools and the drawn outline from the map."""
        if self.canvas is not None:
            for tool in self._tools.values():
                if self.canvas.mapTool() is tool:
                    self.canvas.unsetMapTool(tool)
            if self.rubber is not None:
                self.canvas.scene().removeItem(self.rubber)
        self.rubber = None
        self._tools = {}
