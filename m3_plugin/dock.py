"""The M3 dock widget: choose the model, the layers, the species and the region to hide, run an
infill in the background and compare the result with known mines."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsDistanceArea, QgsGeometry,
                       QgsMapLayer, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsRectangle,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QDoubleSpinBox,
                                 QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                                 QProgressBar, QPushButton, QScrollArea, QSpinBox, QTableWidget,
                                 QTableWidgetItem, QVBoxLayout, QWidget)

from . import layer_sources as ls
from .dependencies import install_hint, missing_message, missing_packages
from .model_info import card_text, default_model_paths, read_cards
from .results import COMPARISON_HEADERS, add_run_group, comparison_rows
from .settings import DockSettings
from .source_rows import AuxRow, MineralRow

SITES_MARGIN_M = 200_000.0  # known sites are exported this far around the run's grid
REGION_MODES = (("drawn", "Drawn on the map"), ("selection", "Selected polygons of a layer"),
                ("extent", "Current map extent"))


def device_text(prefer: str = "auto") -> str:
    """Which torch device an infill would run on, or what to install when torch is missing."""
    missing = missing_packages()
    if "torch" in missing:
        return missing_message(missing)
    try:
        from .core.models import pick_device  # imports torch: only once it is known to be there
    except (ImportError, OSError) as err:  # e.g. a torch build that does not fit this system
        return f"torch does not load in QGIS's Python ({err}). Reinstall it. {install_hint(['torch'])}"

    text = f"Device: {pick_device(prefer)[1]}"
    if missing:
        text += "\n" + missing_message(missing)
    return text


class M3Dock(QDockWidget):
    """Dock titled "M3 mineral infill"."""

    TITLE = "M3 mineral infill"

    def __init__(self, iface=None, parent: Optional[QWidget] = None) -> None:
        if parent is None and iface is not None:
            parent = iface.mainWindow()
        super().__init__(self.TITLE, parent)
        self.setObjectName("M3Dock")
        self.iface = iface
        self.settings = DockSettings.load()
        self.card = None
        self.model_paths: list[str] = []
        self.mineral_rows: dict[str, MineralRow] = {}
        self.aux_rows: dict[str, AuxRow] = {}
        self.region: Optional[tuple[QgsGeometry, QgsCoordinateReferenceSystem]] = None
        self.task = None
        self.example = None
        self.last_group = None
        self.last_outputs = None
        self._rubber: Optional[QgsRubberBand] = None
        self._tools: dict[str, object] = {}
        self._previous_tool = None
        self._build()
        self.set_model_paths(self.settings.model_paths or default_model_paths())
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_added)

    # -- building the widget ------------------------------------------------------------------
    def _build(self) -> None:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        for build in (self._model_box, self._minerals_box, self._region_box, self._aux_box, self._valid_box,
                      self._run_box, self._comparison_box):
            layout.addWidget(build(body))
        layout.addStretch(1)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self._update_region_label()

    def _model_box(self, body: QWidget) -> QWidget:
        """Model file(s), its card, the device, Load example data."""
        model_box = QGroupBox("Model", body)
        mform = QFormLayout(model_box)
        self.model_widget = QgsFileWidget(model_box)
        self.model_widget.setStorageMode(QgsFileWidget.GetMultipleFiles)
        self.model_widget.setFilter("M3 model (*.safetensors)")
        self.model_widget.setDialogTitle("M3 model file(s): one per seed")
        self.model_widget.fileChanged.connect(lambda _: self.set_model_paths(
            QgsFileWidget.splitFilePaths(self.model_widget.filePath()) or default_model_paths(), from_widget=True))
        mform.addRow("Model file(s)", self.model_widget)
        self.card_label = QLabel(model_box)
        self.card_label.setObjectName("m3CardLabel")
        self.card_label.setWordWrap(True)
        self.card_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        mform.addRow(self.card_label)
        self.device_combo = QComboBox(model_box)
        self.device_combo.addItem("Automatic (CUDA when available)", "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.settings.device)))
        self.device_combo.currentIndexChanged.connect(lambda _: self._update_device())
        mform.addRow("Device", self.device_combo)
        self.device_label = QLabel(device_text(self.settings.device), model_box)
        self.device_label.setObjectName("m3DeviceLabel")
        self.device_label.setWordWrap(True)
        self.device_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        mform.addRow(self.device_label)
        self.example_button = QPushButton("Load example data", model_box)
        self.example_button.setToolTip("Add the embedded CONUS data (presence stack, aux rasters, mineral sites, "
                                       "faults, outline) to the project.")
        self.example_button.clicked.connect(self.load_example_data)
        mform.addRow(self.example_button)
        return model_box

    def _minerals_box(self, body: QWidget) -> QWidget:
        """One row per species: hide it, and its presence layer."""
        self.minerals_box = QGroupBox("Mineral layers (tick the species to hide)", body)
        self.minerals_grid = QGridLayout(self.minerals_box)
        self.minerals_grid.setColumnStretch(1, 3)
        self.minerals_grid.setColumnStretch(2, 2)
        return self.minerals_box

    def _region_box(self, body: QWidget) -> QWidget:
        """How the region to hide is given."""
        region_box = QGroupBox("Region to hide", body)
        rform = QFormLayout(region_box)
        self.region_mode = QComboBox(region_box)
        for key, label in REGION_MODES:
            self.region_mode.addItem(label, key)
        self.region_mode.setCurrentIndex(max(0, self.region_mode.findData(self.settings.region_mode)))
        self.region_mode.currentIndexChanged.connect(lambda _: self._update_region_label())
        rform.addRow("Region", self.region_mode)
        draw = QHBoxLayout()
        self.rect_button = QPushButton("Draw rectangle", region_box)
        self.rect_button.clicked.connect(lambda: self.start_drawing("rectangle"))
        self.poly_button = QPushButton("Draw polygon", region_box)
        self.poly_button.clicked.connect(lambda: self.start_drawing("polygon"))
        draw.addWidget(self.rect_button)
        draw.addWidget(self.poly_button)
        rform.addRow(draw)
        self.region_layer = QgsMapLayerComboBox(region_box)
        self.region_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.region_layer.setAllowEmptyLayer(True)
        self.region_layer.setLayer(None)
        self.region_layer.layerChanged.connect(lambda _: self._update_region_label())
        rform.addRow("Polygon layer", self.region_layer)
        self.region_label = QLabel(region_box)
        self.region_label.setWordWrap(True)
        rform.addRow(self.region_label)
        return region_box

    def _aux_box(self, body: QWidget) -> QWidget:
        """One row per aux band the model expects."""
        self.aux_box = QGroupBox("Auxiliary layers the model expects", body)
        self.aux_grid = QGridLayout(self.aux_box)  # per band: its name, then its layer and band
        self.aux_grid.setColumnStretch(0, 3)
        self.aux_grid.setColumnStretch(1, 2)
        return self.aux_box

    def _valid_box(self, body: QWidget) -> QWidget:
        """The outline of the cells to model."""
        valid_box = QGroupBox("Valid area", body)
        vform = QFormLayout(valid_box)
        self.outline_layer = QgsMapLayerComboBox(valid_box)
        self.outline_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.outline_layer.setAllowEmptyLayer(True)
        self.outline_layer.setLayer(None)
        self.outline_layer.setToolTip("Cells inside these polygons are modelled. Empty: the stack's valid band, "
                                      "else the cells where every aux raster has data.")
        vform.addRow("Outline (land)", self.outline_layer)
        return valid_box

    def _run_box(self, body: QWidget) -> QWidget:
        """Ensemble, threshold, known mines, clusters, output; Run, Cancel, progress."""
        run_box = QGroupBox("Run", body)
        form = QFormLayout(run_box)
        ens = QHBoxLayout()
        self.draws_spin = QSpinBox(run_box)
        self.draws_spin.setRange(1, 500)
        self.draws_spin.setValue(self.settings.draws)
        self.draws_spin.valueChanged.connect(lambda _: self._update_ensemble_label())
        self.ensemble_label = QLabel(run_box)
        ens.addWidget(self.draws_spin)
        ens.addWidget(self.ensemble_label, 1)
        form.addRow("Mask draws", ens)
        self.batch_spin = QSpinBox(run_box)
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(self.settings.batch_size)
        form.addRow("Batch size", self.batch_spin)
        self.threshold_spin = QDoubleSpinBox(run_box)
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        form.addRow("Threshold", self.threshold_spin)
        self.sites_layer = QgsMapLayerComboBox(run_box)
        self.sites_layer.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.sites_layer.setAllowEmptyLayer(True)
        self.sites_layer.setLayer(None)
        self.sites_field = QgsFieldComboBox(run_box)
        self.sites_layer.layerChanged.connect(self._sites_layer_changed)
        form.addRow("Known mines", self.sites_layer)
        form.addRow("Commodity field", self.sites_field)
        self.clusters_check = QCheckBox("Find clusters: high probability, no known site nearby", run_box)
        self.clusters_check.setChecked(self.settings.find_clusters)
        form.addRow(self.clusters_check)
        clusters = QHBoxLayout()
        self.cluster_area_spin = QDoubleSpinBox(run_box)
        self.cluster_area_spin.setRange(0.0, 1e6)
        self.cluster_area_spin.setSuffix(" km²")
        self.cluster_area_spin.setValue(self.settings.cluster_min_area_km2)
        self.cluster_distance_spin = QDoubleSpinBox(run_box)
        self.cluster_distance_spin.setRange(0.0, 1e4)
        self.cluster_distance_spin.setSuffix(" km")
        self.cluster_distance_spin.setValue(self.settings.cluster_min_distance_km)
        clusters.addWidget(QLabel("at least", run_box))
        clusters.addWidget(self.cluster_area_spin)
        clusters.addWidget(QLabel("farther than", run_box))
        clusters.addWidget(self.cluster_distance_spin)
        form.addRow(clusters)
        self.output_widget = QgsFileWidget(run_box)
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.setFilePath(self.settings.output_dir)
        self.output_widget.setToolTip("Each run writes a folder here; empty: the M3 cache folder.")
        form.addRow("Output folder", self.output_widget)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", run_box)
        self.run_button.setObjectName("m3Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", run_box)
        self.cancel_button.setObjectName("m3Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar(run_box)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        form.addRow(self.progress_bar)
        self.status_label = QLabel(run_box)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow(self.status_label)
        return run_box

    def _comparison_box(self, body: QWidget) -> QWidget:
        """The comparison with known mines."""
        table_box = QGroupBox("Comparison with known mines (inside the hidden region)", body)
        tl = QVBoxLayout(table_box)
        self.comparison_table = QTableWidget(0, len(COMPARISON_HEADERS), table_box)
        self.comparison_table.setObjectName("m3Comparison")
        self.comparison_table.setHorizontalHeaderLabels(COMPARISON_HEADERS)
        self.comparison_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.comparison_table.verticalHeader().setVisible(False)
        self.comparison_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        tl.addWidget(self.comparison_table)
        return table_box

    # -- model --------------------------------------------------------------------------------
    def set_model_paths(self, paths: list[str], from_widget: bool = False) -> None:
        """Use these model files (an ensemble of seeds); rebuilds the species and aux rows."""
        self.model_paths = [str(p) for p in paths if str(p)]
        if not from_widget:
            self.model_widget.blockSignals(True)
            self.model_widget.setFilePath(" ".join(f'"{p}"' for p in self.model_paths)
                                          if len(self.model_paths) > 1 else (self.model_paths or [""])[0])
            self.model_widget.blockSignals(False)
        self.card = None
        text = ""
        if not self.model_paths:
            text = ("No model: the bundled model is not installed. Choose a model file (.safetensors with its "
                    ".json card), e.g. one trained with: python train_cli.py train")
        elif missing_packages():
            text = missing_message(missing_packages())
        else:
            try:
                self.card = read_cards(self.model_paths)
                text = card_text(self.card, self.model_paths)
            except Exception as e:  # M3Error or a broken file: shown, never raised into Qt
                text = f"Cannot use the model: {e}"
        self.card_label.setText(text)
        self._rebuild_rows()
        self._update_ensemble_label()

    def _update_device(self) -> None:
        self.device_label.setText(device_text(self.device_combo.currentData()))

    def _update_ensemble_label(self) -> None:
        n = max(1, len(self.model_paths))
        d = self.draws_spin.value()
        self.ensemble_label.setText(f"× {n} model{'s' if n > 1 else ''} = {n * d} evaluations")

    def _rebuild_rows(self) -> None:
        for row in list(self.mineral_rows.values()) + list(self.aux_rows.values()):
            row.layer.layerChanged.disconnect()  # the widgets die later; no slot may run on them meanwhile
        for grid in (self.minerals_grid, self.aux_grid):
            while grid.count():
                item = grid.takeAt(0)
                if item.widget() is not None:
                    item.widget().hide()  # deleted when control returns to the event loop
                    item.widget().deleteLater()
        self.mineral_rows, self.aux_rows = {}, {}
        if self.card is None:
            return
        self.threshold_spin.setValue(self.settings.threshold if self.settings.threshold is not None
                                     else float(self.card.threshold))
        for r, sym in enumerate(self.card.species):
            row = MineralRow(sym, self.minerals_box)
            row.hide.setChecked(sym in self.settings.hidden_species)
            row.layer.layerChanged.connect(lambda _l, row=row: setattr(row, "auto", self._guessing))
            self.minerals_grid.addWidget(row.hide, r, 0)
            self.minerals_grid.addWidget(row.layer, r, 1)
            self.minerals_grid.addWidget(row.choice, r, 2)
            self.mineral_rows[sym] = row
        for r, name in enumerate(self.card.aux_names):
            row = AuxRow(name, self.aux_box)
            row.layer.layerChanged.connect(lambda _l, row=row: setattr(row, "auto", self._guessing))
            self.aux_grid.addWidget(row.label, 2 * r, 0, 1, 2)
            self.aux_grid.addWidget(row.layer, 2 * r + 1, 0)
            self.aux_grid.addWidget(row.band, 2 * r + 1, 1)
            self.aux_rows[name] = row
        self.aux_box.setTitle("Auxiliary layers the model expects" + (
            " (one left empty reads as its mean)" if self.card.tolerates_blank_aux else ""))
        self.guess_sources()

    # -- pre-matching layers by name -------------------------------------------------------------
    _guessing = False

    def guess_sources(self) -> None:
        """Fill every row the user has not set from the project's layers (see :mod:`layer_sources`)."""
        self._guessing = True
        try:
            for sym, row in self.mineral_rows.items():
                if row.auto:
                    hit = ls.guess_mineral_source(sym)
                    if hit and (row.layer.currentLayer() is not hit[0] or row.choice.currentData() != hit[1]):
                        row.set_source(hit[0], hit[1], auto=True)
            for name, row in self.aux_rows.items():
                if row.auto:
                    hit = ls.guess_aux_source(name)
                    if hit and row.layer.currentLayer() is not hit[0]:
                        row.set_source(hit[0], hit[1], auto=True)
            if self.outline_layer.currentLayer() is None:
                self.outline_layer.setLayer(ls.guess_outline())
            if self.sites_layer.currentLayer() is None:
                points = [l for l in ls.project_layers(QgsVectorLayer) if ls.is_point_layer(l) and ls.commodity_field(l)]
                if points:
                    self.sites_layer.setLayer(points[0])
        finally:
            self._guessing = False

    def _layers_added(self, _layers) -> None:
        self.guess_sources()

    def _sites_layer_changed(self, layer: Optional[QgsMapLayer]) -> None:
        self.sites_field.setLayer(layer)
        if isinstance(layer, QgsVectorLayer):
            want = self.settings.sites_field if layer.fields().indexOf(self.settings.sites_field) >= 0 else \
                ls.commodity_field(layer)
            if want:
                self.sites_field.setField(want)

    # -- region -------------------------------------------------------------------------------
    def _canvas(self):
        return self.iface.mapCanvas() if self.iface is not None else None

    def set_region(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """Use a drawn region (``geometry`` in ``crs``) and show it on the map."""
        self.region = (QgsGeometry(geometry), QgsCoordinateReferenceSystem(crs))
        self.region_mode.setCurrentIndex(self.region_mode.findData("drawn"))
        canvas = self._canvas()
        if canvas is not None:
            if self._rubber is None:
                self._rubber = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
                self._rubber.setStrokeColor(QColor(30, 30, 220))
                self._rubber.setFillColor(QColor(30, 30, 220, 30))
                self._rubber.setWidth(2)
            self._rubber.setToGeometry(QgsGeometry(geometry), crs)
        self._update_region_label()

    def start_drawing(self, kind: str) -> None:
        """Activate the rectangle or polygon map tool; the drawn shape becomes the region."""
        from .region_tool import PolygonRegionTool, RectangleRegionTool

        canvas = self._canvas()
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
        self.region_label.setText("Drag a rectangle on the map." if kind == "rectangle" else
                                  "Click the polygon's corners on the map; right-click to close it.")

    def _drawn(self, geometry: QgsGeometry) -> None:
        canvas = self._canvas()
        self.set_region(geometry, canvas.mapSettings().destinationCrs())
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(canvas.mapTool())

    def _update_region_label(self) -> None:
        mode = self.region_mode.currentData()
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
            layer = self.region_layer.currentLayer()
            text = (f"The selected polygons of '{layer.name()}' ({layer.selectedFeatureCount()} selected)."
                    if layer is not None else "Choose a polygon layer and select the region's polygons.")
        else:
            text = "The current map extent."
        if self._rubber is not None:
            self._rubber.setVisible(mode == "drawn")
        self.region_label.setText(text)

    def region_shapes(self):
        """The region to hide, as core shapes; :class:`InputError` with what to do when there is none."""
        from .core.errors import InputError

        mode = self.region_mode.currentData()
        if mode == "drawn":
            if self.region is None:
                raise InputError("No region to hide: draw a rectangle or polygon on the map (Region to hide).")
            return ls.geometry_shapes(self.region[0], self.region[1], "drawn region")
        if mode == "selection":
            layer = self.region_layer.currentLayer()
            if layer is None:
                raise InputError("Choose the polygon layer whose selected features are the region to hide.")
            return ls.layer_shapes(layer, selected_only=True)
        canvas = self._canvas()
        if canvas is None:
            raise InputError("There is no map to take the extent of; draw a region instead.")
        extent = canvas.extent()
        if extent.isEmpty():
            raise InputError("The map extent is empty: zoom to the region to hide.")
        return ls.geometry_shapes(QgsGeometry.fromRect(extent), canvas.mapSettings().destinationCrs(),
                                  "map extent")

    # -- example data -------------------------------------------------------------------------
    def load_example_data(self):
        """Add the embedded CONUS data to the project (see :mod:`example_data`)."""
        missing = [m for m in missing_packages() if m in ("numpy", "scipy", "rasterio")]
        if missing:
            self.message(missing_message(missing), Qgis.Critical)
            return None
        from .core.errors import M3Error
        from .example_data import ExampleData

        self.example = ExampleData(lambda text, error: self.message(text, Qgis.Critical if error else Qgis.Info))
        try:
            self.example.load()
        except M3Error as e:
            self.message(str(e), Qgis.Critical)
            return None
        self.guess_sources()
        return self.example

    # -- running ------------------------------------------------------------------------------
    def message(self, text: str, level=Qgis.Info, duration: int = 10) -> None:
        """Show ``text`` in QGIS's message bar (and in the dock's status line)."""
        self.status_label.setText(text)
        if self.iface is not None:
            self.iface.messageBar().pushMessage("M3", text, level=level,
                                                duration=0 if level == Qgis.Critical else duration)

    def save_settings(self) -> None:
        s = self.settings
        s.model_paths = [] if self.model_paths == default_model_paths() else list(self.model_paths)
        s.draws = self.draws_spin.value()
        s.batch_size = self.batch_spin.value()
        s.device = self.device_combo.currentData()
        if self.card is not None:
            s.threshold = self.threshold_spin.value() if self._threshold_overridden(self.card) else None
        s.output_dir = self.output_widget.filePath()
        s.hidden_species = [sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()]
        s.region_mode = self.region_mode.currentData()
        s.sites_field = self.sites_field.currentField()
        s.find_clusters = self.clusters_check.isChecked()
        s.cluster_min_area_km2 = self.cluster_area_spin.value()
        s.cluster_min_distance_km = self.cluster_distance_spin.value()
        s.save()

    def _run_folder(self, name: str) -> Path:
        from .core import defaults

        base = Path(self.output_widget.filePath() or defaults.cache_dir() / "runs")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
        folder, n = base / slug, 1
        while folder.exists():
            n += 1
            folder = base / f"{slug}_{n}"
        return folder

    def build_job(self):
        """The run as plain data (exported from the layers here, on the main thread)."""
        from .core.errors import InputError

        missing = missing_packages()
        if missing:
            raise InputError(missing_message(missing))
        from .core.layer_inputs import LayerInputs, as_region, model_context_grid, to_crs
        from .infill_task import InfillJob

        if self.card is None:
            raise InputError(self.card_label.text().replace("<br>", " ") or "Choose a model file first.")
        card = self.card
        hidden = [sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()]
        shapes = self.region_shapes()
        crs_text = card.grid.get("crs_wkt") or card.grid.get("crs")
        resolution = float(card.grid.get("resolution") or 0)
        if not crs_text or resolution <= 0:
            raise InputError("The model's card does not say its grid CRS and cell size; it cannot be applied to "
                             "map layers. Use a model trained with this version of M3.")
        crs = to_crs(crs_text)
        if not crs.is_projected:
            raise InputError(f"The model's CRS {crs.to_string()} is not projected; M3 models need a grid in metres.")
        grid = model_context_grid(as_region(shapes), crs, resolution, int(card.tile_size))
        qcrs = QgsCoordinateReferenceSystem.fromWkt(crs.to_wkt())
        left, bottom, right, top = grid.bounds
        extent = (QgsRectangle(left, bottom, right, top), qcrs)

        points: dict[tuple[str, str], object] = {}
        minerals = {}
        for sym, row in self.mineral_rows.items():
            layer = row.layer.currentLayer()
            if layer is None:
                raise InputError(f"No layer chosen for {sym}. Pick a presence raster or a point layer of records "
                                 "in Mineral layers (or click Load example data).")
            if isinstance(layer, QgsRasterLayer):
                minerals[sym] = ls.raster_band(layer, int(row.choice.currentData() or 1))
            else:
                field = row.choice.currentData() or ""
                key = (layer.id(), field)
                if key not in points:
                    points[key] = ls.point_records(layer, field, extent)
                minerals[sym] = points[key]
        aux = {}
        for name, row in self.aux_rows.items():
            layer = row.layer.currentLayer()
            if layer is None:
                aux[name] = None  # left blank: LayerInputs.check_complete decides whether the model allows it
            elif isinstance(layer, QgsRasterLayer):
                aux[name] = ls.raster_band(layer, int(row.band.currentData() or 1))
            else:
                aux[name] = ls.layer_shapes(layer)
        outline_layer = self.outline_layer.currentLayer()
        outline = ls.layer_shapes(outline_layer, extent=extent) if outline_layer is not None else None
        inputs = LayerInputs(list(card.species), minerals, card.aux_band_objects(), aux, outline,
                             blank_aux_allowed=card.tolerates_blank_aux)
        inputs.check_complete()
        sites, sites_id = None, ""
        sites_layer = self.sites_layer.currentLayer()
        if sites_layer is not None and self.sites_field.currentField():
            # wider than the grid, so that distances from clusters to the nearest site are right
            wide = QgsRectangle(left - SITES_MARGIN_M, bottom - SITES_MARGIN_M, right + SITES_MARGIN_M,
                                top + SITES_MARGIN_M)
            sites = ls.point_records(sites_layer, self.sites_field.currentField(), (wide, qcrs))
            sites_id = sites_layer.id()
        what = ", ".join(hidden) if hidden else "all species"
        name = f"M3 infill {what} {time.strftime('%H:%M:%S')}"
        return InfillJob(name=name, folder=self._run_folder(name.replace(", ", "-")), inputs=inputs, region=shapes,
                         hide_species=hidden, model_paths=list(self.model_paths), grid=grid,
                         draws=self.draws_spin.value(),
                         batch_size=self.batch_spin.value(), device=self.device_combo.currentData(),
                         threshold=self._threshold(card, hidden), sites=sites, sites_layer_id=sites_id,
                         find_clusters=self.clusters_check.isChecked(),
                         cluster_min_area_km2=self.cluster_area_spin.value(),
                         cluster_min_distance_km=self.cluster_distance_spin.value())

    def _threshold_overridden(self, card) -> bool:
        """Whether the user moved the threshold spin box off the card's pooled threshold."""
        return abs(self.threshold_spin.value() - float(card.threshold)) > 1e-9

    def _threshold(self, card, hidden: list[str]) -> float:
        """The spin box's value when the user changed it, else the model's validation threshold for
        this kind of question (a region with some or all species hidden)."""
        from .core.hiding import hiding_scenario

        if self._threshold_overridden(card):
            return float(self.threshold_spin.value())
        return card.threshold_for(hiding_scenario(hidden, True, card.species))

    def run(self):
        """Start an infill in the background; returns the task, or None when the inputs are not usable
        (the message bar says why)."""
        from .core.errors import M3Error

        if self.task is not None:
            self.message("An infill is already running; wait for it or cancel it.", Qgis.Warning)
            return None
        try:
            job = self.build_job()
        except M3Error as e:
            self.message(str(e), Qgis.Critical)
            return None
        self.save_settings()
        from .infill_task import InfillTask

        self.task = InfillTask(job, self._task_done)
        self.task.progressChanged.connect(lambda p: self.progress_bar.setValue(int(p)))
        self.progress_bar.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"Running: {job.name}...")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self) -> None:
        """Cancel the running infill; nothing is added to the project."""
        if self.task is not None:
            self.task.cancel()

    def _task_done(self, task) -> None:
        from .core.errors import M3Error

        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if task.outputs is None:
            self.progress_bar.setValue(0)
            if task.error:
                self.message(task.error, Qgis.Critical)
            else:
                self.message("Infill cancelled; nothing was added to the project.", Qgis.Info)
            return
        try:
            self.last_group = add_run_group(task.outputs)
        except M3Error as e:
            task._created = True
            task._discard()
            self.message(str(e), Qgis.Critical)
            return
        self.last_outputs = task.outputs
        self.show_comparison(task.outputs.comparison)
        self.message(f"{task.outputs.name}: {task.outputs.summary}", Qgis.Success)

    def show_comparison(self, rows) -> None:
        cells = comparison_rows(rows)
        self.comparison_table.setRowCount(len(cells))
        for r, row in enumerate(cells):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.comparison_table.setItem(r, c, item)

    def comparison_cells(self) -> list[list[str]]:
        """The comparison table's text, row by row."""
        t = self.comparison_table
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]

    # -- tear-down ----------------------------------------------------------------------------
    def close_down(self) -> None:
        """Cancel a running task, remove map tools and the region outline, keep the settings."""
        try:
            QgsProject.instance().layersAdded.disconnect(self._layers_added)
        except TypeError:
            pass
        if self.task is not None:
            self.task.cancel()
        canvas = self._canvas()
        if canvas is not None:
            for tool in self._tools.values():
                if canvas.mapTool() is tool:
                    canvas.unsetMapTool(tool)
            if self._rubber is not None:
                canvas.scene().removeItem(self._rubber)
        self._rubber = None
        self._tools = {}
