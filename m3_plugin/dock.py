"""The M3 dock widget: choose the model, the layers, the species and the region to hide, run an
infill in the background and compare the result with known mines."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                       QgsDistanceArea, QgsGeometry,
                       QgsMapLayer, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsRectangle,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox, QgsRubberBand
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QColor, QDesktopServices
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QDoubleSpinBox, QFormLayout, QGridLayout,
                                 QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy,
                                 QSpinBox, QToolButton, QVBoxLayout, QWidget)

from . import layer_sources as ls
from .dependencies import install_hint, missing_message, missing_packages
from .model_info import card_text, default_model_paths, read_cards
from .installer import InstallPanel
from .results import add_run_group
from .results_panel import ResultsPanel
from .settings import DockSettings
from .source_rows import AuxRow, MineralRow, _compact

SITES_MARGIN_M = 200_000.0  # known sites are exported this far around the run's grid
REGION_MODES = (("drawn", "Drawn on the map"), ("selection", "Selected polygons"), ("extent", "Map extent"))


def device_text(prefer: str = "auto") -> str:
    """Which torch device an infill would run on, or what to install when torch is missing."""
    missing = missing_packages()
    if "torch" in missing:
        return "Device: chosen once torch is installed (Install, above)."
    try:
        from .core.device import pick_device  # imports torch: only once it is known to be there
    except (ImportError, OSError) as err:  # e.g. a torch build that does not fit this system
        return f"torch does not load in QGIS's Python ({err}). Reinstall it. {install_hint(['torch'])}"

    return f"Device: {pick_device(prefer)[1]}"


HELP_URL = "https://github.com/m3-minerals/m3#qgis-plugin"
INTRO = ("Hide mineral records in a region and see where the model expects them, compared with the known "
         "sites. First time: Load example data, tick a species, draw a region, Run.")


def _wrap(label: QLabel) -> QLabel:
    """A word-wrapped label that takes the dock's width instead of setting it."""
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    label.setMinimumWidth(80)
    return label


def _collapsible(title: str, parent: QWidget, collapsed: bool = False, name: str = "") -> QgsCollapsibleGroupBox:
    box = QgsCollapsibleGroupBox(title, parent)
    box.setObjectName(name or "m3Section_" + re.sub(r"\W+", "_", title))
    box.setSaveCollapsedState(False)
    box.setCollapsed(collapsed)
    return box


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
        self.card = None   # the first model's card (species, aux bands, grid); None until a model is usable
        self.cards: list = []
        self.model_paths: list[str] = []
        self.mineral_rows: dict[str, MineralRow] = {}
        self.aux_rows: dict[str, AuxRow] = {}
        self.region: Optional[tuple[QgsGeometry, QgsCoordinateReferenceSystem]] = None
        self.task = None
        self.example = None
        self.last_group = None
        self.last_outputs = None
        self.filled: list[str] = []  # what the last automatic fill of empty rows set
        self._example_pending = False
        self._adding_run = False
        self._rubber: Optional[QgsRubberBand] = None
        self._tools: dict[str, object] = {}
        self._previous_tool = None
        self._build()
        self.set_model_paths(self.settings.model_paths or default_model_paths())
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_added)
        project.layersRemoved.connect(self._layers_removed)

    # -- building the widget ------------------------------------------------------------------
    def _build(self) -> None:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._intro(body))
        self.install_panel = InstallPanel(body)
        self.install_panel.installed.connect(self._dependencies_installed)
        layout.addWidget(self.install_panel)
        for build in (self._model_box, self._minerals_box, self._region_box, self._aux_box, self._valid_box,
                      self._sites_box, self._options_box, self._run_box, self._comparison_box):
            layout.addWidget(build(body))
        layout.addStretch(1)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self._update_region_label()

    def _intro(self, body: QWidget) -> QHBoxLayout:
        row = QHBoxLayout()
        self.intro_label = QLabel(INTRO, body)
        _wrap(self.intro_label)
        self.help_button = QToolButton(body)
        self.help_button.setText("Help")
        self.help_button.setObjectName("m3Help")
        self.help_button.setToolTip("Open the plugin's manual (the README's QGIS plugin section) in a browser.")
        self.help_button.clicked.connect(self.open_help)
        row.addWidget(self.intro_label, 1)
        row.addWidget(self.help_button, 0, Qt.AlignTop)
        return row

    def open_help(self) -> bool:
        return QDesktopServices.openUrl(QUrl(HELP_URL))

    def _model_box(self, body: QWidget) -> QWidget:
        """Model file(s), its card, the device, Load example data."""
        model_box = _collapsible("Model", body)
        mform = QFormLayout(model_box)
        mform.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.example_button = QPushButton("Load example data", model_box)
        self.example_button.setToolTip("Add the embedded CONUS data (presence stack, aux rasters, mineral sites, "
                                       "faults, outline) to the project and zoom to it.")
        self.example_button.clicked.connect(self.load_example_data)
        mform.addRow(self.example_button)
        self.model_widget = QgsFileWidget(model_box)
        self.model_widget.setStorageMode(QgsFileWidget.GetMultipleFiles)
        self.model_widget.setFilter("M3 model (*.safetensors)")
        self.model_widget.setDialogTitle("M3 model file(s): one per seed")
        self.model_widget.setToolTip("The model file(s) to use (.safetensors with its .json card); several "
                                     "files of the same data form an ensemble. Empty: the bundled model.")
        self.model_widget.fileChanged.connect(lambda _: self.set_model_paths(
            QgsFileWidget.splitFilePaths(self.model_widget.filePath()) or default_model_paths(), from_widget=True))
        mform.addRow("Model file(s)", self.model_widget)
        self.card_label = QLabel(model_box)
        self.card_label.setObjectName("m3CardLabel")
        _wrap(self.card_label)
        self.card_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.card_label.setToolTip("What the model was trained on: its species, aux bands, cells and threshold.")
        mform.addRow(self.card_label)
        self.device_combo = QComboBox(model_box)
        self.device_combo.addItem("Automatic (CUDA if any)", "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.settings.device)))
        _compact(self.device_combo)
        self.device_combo.setToolTip("Where torch runs the model: a CUDA GPU when there is one, else the CPU.")
        self.device_combo.currentIndexChanged.connect(lambda _: self._update_device())
        mform.addRow("Device", self.device_combo)
        self.device_label = QLabel(device_text(self.settings.device), model_box)
        self.device_label.setObjectName("m3DeviceLabel")
        _wrap(self.device_label)
        self.device_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        mform.addRow(self.device_label)
        return model_box

    def _minerals_box(self, body: QWidget) -> QWidget:
        """One row per species: hide it, and its presence layer."""
        self.minerals_box = _collapsible("Minerals (tick to hide)", body, name="m3Minerals")
        outer = QVBoxLayout(self.minerals_box)
        self.fill_label = QLabel(self.minerals_box)
        self.fill_label.setObjectName("m3FillLabel")
        _wrap(self.fill_label)
        self.fill_label.setToolTip("Rows are only ever filled when they are empty; a row you set stays as it is.")
        outer.addWidget(self.fill_label)
        self.minerals_grid = QGridLayout()
        self.minerals_grid.setColumnStretch(1, 3)
        self.minerals_grid.setColumnStretch(2, 2)
        outer.addLayout(self.minerals_grid)
        return self.minerals_box

    def _region_box(self, body: QWidget) -> QWidget:
        """How the region to hide is given."""
        region_box = _collapsible("Region to hide", body)
        rform = QFormLayout(region_box)
        rform.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.region_mode = QComboBox(region_box)
        for key, label in REGION_MODES:
            self.region_mode.addItem(label, key)
        self.region_mode.setCurrentIndex(max(0, self.region_mode.findData(self.settings.region_mode)))
        _compact(self.region_mode)
        self.region_mode.setToolTip("Where the ticked species are hidden: a shape drawn on the map, the selected "
                                    "polygons of a layer, or the current map extent.")
        self.region_mode.currentIndexChanged.connect(lambda _: self._update_region_label())
        rform.addRow("Region", self.region_mode)
        draw = QHBoxLayout()
        self.rect_button = QPushButton("Rectangle", region_box)
        self.rect_button.setToolTip("Draw the region: drag a rectangle on the map.")
        self.rect_button.clicked.connect(lambda: self.start_drawing("rectangle"))
        self.poly_button = QPushButton("Polygon", region_box)
        self.poly_button.setToolTip("Draw the region: click its corners on the map, right-click to close it.")
        self.poly_button.clicked.connect(lambda: self.start_drawing("polygon"))
        draw.addWidget(QLabel("Draw", region_box))
        draw.addWidget(self.rect_button)
        draw.addWidget(self.poly_button)
        rform.addRow(draw)
        self.region_layer = QgsMapLayerComboBox(region_box)
        self.region_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.region_layer.setAllowEmptyLayer(True)
        self.region_layer.setLayer(None)
        _compact(self.region_layer)
        self.region_layer.setToolTip("A polygon layer whose selected features are the region "
                                     "(Region: Selected polygons of a layer).")
        self.region_layer.layerChanged.connect(lambda _: self._update_region_label())
        rform.addRow("Polygon layer", self.region_layer)
        self.region_label = QLabel(region_box)
        _wrap(self.region_label)
        rform.addRow(self.region_label)
        return region_box

    def _aux_box(self, body: QWidget) -> QWidget:
        """One row per aux band the model expects."""
        self.aux_box = _collapsible("Aux layers", body, collapsed=True, name="m3Aux")
        outer = QVBoxLayout(self.aux_box)
        self.aux_note = _wrap(QLabel(self.aux_box))
        self.aux_note.setObjectName("m3AuxNote")
        outer.addWidget(self.aux_note)
        self.aux_grid = QGridLayout()  # per band: its name, then its layer and band
        outer.addLayout(self.aux_grid)
        self.aux_grid.setColumnStretch(0, 3)
        self.aux_grid.setColumnStretch(1, 2)
        return self.aux_box

    def _valid_box(self, body: QWidget) -> QWidget:
        """The outline of the cells to model."""
        valid_box = _collapsible("Valid area", body, collapsed=True)
        vform = QFormLayout(valid_box)
        vform.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.outline_layer = QgsMapLayerComboBox(valid_box)
        self.outline_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.outline_layer.setAllowEmptyLayer(True)
        self.outline_layer.setLayer(None)
        _compact(self.outline_layer)
        self.outline_layer.setToolTip("Cells inside these polygons are modelled. Empty: the stack's valid band, "
                                      "else the cells where every aux raster has data.")
        vform.addRow("Outline (land)", self.outline_layer)
        return valid_box

    def _sites_box(self, body: QWidget) -> QWidget:
        """The known sites the result is compared with."""
        box = _collapsible("Known sites", body)
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.sites_layer = QgsMapLayerComboBox(box)
        self.sites_layer.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.sites_layer.setAllowEmptyLayer(True)
        self.sites_layer.setLayer(None)
        _compact(self.sites_layer)
        self.sites_layer.setToolTip("A point layer of known mines or occurrences: the table and the capture "
                                    "curve count those of the hidden species inside the region.")
        self.sites_field = QgsFieldComboBox(box)
        self.sites_field.setToolTip("The field listing each site's commodities (e.g. 'Au; Cu').")
        self.name_field = QgsFieldComboBox(box)
        self.name_field.setAllowEmptyFieldName(True)
        self.name_field.setToolTip("The field with each site's name: clusters are labelled with the nearest "
                                   "site's name.")
        self.sites_layer.layerChanged.connect(self._sites_layer_changed)
        form.addRow("Sites layer", self.sites_layer)
        form.addRow("Commodity field", self.sites_field)
        form.addRow("Site name field", self.name_field)
        return box

    def _options_box(self, body: QWidget) -> QWidget:
        """Ensemble, batch, threshold, clusters, output folder."""
        box = _collapsible("Run options", body, collapsed=True, name="m3Options")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        ens = QHBoxLayout()
        self.draws_spin = QSpinBox(box)
        self.draws_spin.setRange(1, 500)
        self.draws_spin.setValue(self.settings.draws)
        self.draws_spin.setToolTip("Random mask draws per model: more draws, a smoother mean and a better "
                                   "uncertainty, and a longer run.")
        self.draws_spin.valueChanged.connect(lambda _: self._update_ensemble_label())
        self.ensemble_label = _wrap(QLabel(box))
        ens.addWidget(self.draws_spin)
        ens.addWidget(self.ensemble_label, 1)
        form.addRow("Mask draws", ens)
        self.batch_spin = QSpinBox(box)
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(self.settings.batch_size)
        self.batch_spin.setToolTip("Windows per forward pass; lower it when memory runs out.")
        form.addRow("Batch size", self.batch_spin)
        self.threshold_spin = QDoubleSpinBox(box)
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setToolTip("Probability at or above which a cell is flagged; left at the card's "
                                       "value, the model's validated threshold for this question is used. The "
                                       "slider under Results changes it after a run.")
        form.addRow("Threshold", self.threshold_spin)
        self.clusters_check = QCheckBox("Find clusters", box)
        self.clusters_check.setToolTip("Clusters: connected flagged cells of at least the area, with no known "
                                       "site of the species closer than the distance.")
        self.clusters_check.setChecked(self.settings.find_clusters)
        form.addRow(self.clusters_check)
        self.cluster_area_spin = QDoubleSpinBox(box)
        self.cluster_area_spin.setRange(0.0, 1e6)
        self.cluster_area_spin.setSuffix(" km²")
        self.cluster_area_spin.setValue(self.settings.cluster_min_area_km2)
        self.cluster_area_spin.setToolTip("Smallest cluster area.")
        self.cluster_distance_spin = QDoubleSpinBox(box)
        self.cluster_distance_spin.setRange(0.0, 1e4)
        self.cluster_distance_spin.setSuffix(" km")
        self.cluster_distance_spin.setValue(self.settings.cluster_min_distance_km)
        self.cluster_distance_spin.setToolTip("No known site of the species closer than this.")
        form.addRow("Cluster area ≥", self.cluster_area_spin)
        form.addRow("Sites farther than", self.cluster_distance_spin)
        self.output_widget = QgsFileWidget(box)
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.setFilePath(self.settings.output_dir)
        self.output_widget.setToolTip("Each run writes a folder here; empty: the M3 cache folder. Export (under "
                                      "Results) copies a run where you want it.")
        form.addRow("Run folder", self.output_widget)
        return box

    def _run_box(self, body: QWidget) -> QWidget:
        """Run, Cancel, progress, why Run is disabled, the status."""
        run_box = QWidget(body)
        form = QVBoxLayout(run_box)
        form.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", run_box)
        self.run_button.setObjectName("m3Run")
        self.run_button.setToolTip("Start the infill in the background; QGIS stays usable.")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", run_box)
        self.cancel_button.setObjectName("m3Cancel")
        self.cancel_button.setToolTip("Stop the running infill; nothing is added.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addLayout(buttons)
        self.reason_label = QLabel(run_box)
        self.reason_label.setObjectName("m3RunReason")
        _wrap(self.reason_label)
        self.reason_label.setStyleSheet("color: #a05000")
        form.addWidget(self.reason_label)
        self.progress_bar = QProgressBar(run_box)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setToolTip("Progress of the running infill.")
        form.addWidget(self.progress_bar)
        self.status_label = QLabel(run_box)
        self.status_label.setObjectName("m3Status")
        _wrap(self.status_label)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addWidget(self.status_label)
        return run_box

    def _comparison_box(self, body: QWidget) -> QWidget:
        """Threshold slider, table, capture curve, export."""
        box = _collapsible("Results", body, name="m3Results")
        layout = QVBoxLayout(box)
        self.results = ResultsPanel(box)
        self.results.exported.connect(lambda folder: self.message(f"Exported to {folder}", Qgis.Success))
        self.comparison_table = self.results.table
        layout.addWidget(self.results)
        return box

    # -- model --------------------------------------------------------------------------------
    def set_model_paths(self, paths: list[str], from_widget: bool = False) -> None:
        """Use these model files (an ensemble of seeds); rebuilds the species and aux rows."""
        self.model_paths = [str(p) for p in paths if str(p)]
        if not from_widget:
            self.model_widget.blockSignals(True)
            self.model_widget.setFilePath(" ".join(f'"{p}"' for p in self.model_paths)
                                          if len(self.model_paths) > 1 else (self.model_paths or [""])[0])
            self.model_widget.blockSignals(False)
        self.card, self.cards = None, []
        text = ""
        if not self.model_paths:
            text = ("No model: the bundled model is not installed. Choose a model file (.safetensors with its "
                    ".json card), e.g. one trained with: python train_cli.py train")
        elif missing_packages():
            text = "The model's card shows once the packages it needs are installed (Install, above)."
        else:
            try:
                self.cards = read_cards(self.model_paths)
                self.card = self.cards[0]
                text = card_text(self.card, self.model_paths)
            except Exception as e:  # M3Error or a broken file: shown, never raised into Qt
                text = f"Cannot use the model: {e}"
        self.card_label.setText(text)
        self._rebuild_rows()
        self._update_ensemble_label()
        self.update_run_state()

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
                                     else self._pooled_threshold())
        for r, sym in enumerate(self.card.species):
            row = MineralRow(sym, self.minerals_box)
            row.hide.setChecked(sym in self.settings.hidden_species)
            row.layer.layerChanged.connect(lambda _l, row=row: self._row_changed(row))
            row.hide.toggled.connect(lambda _c: self.update_run_state())
            self.minerals_grid.addWidget(row.hide, r, 0)
            self.minerals_grid.addWidget(row.layer, r, 1)
            self.minerals_grid.addWidget(row.choice, r, 2)
            self.mineral_rows[sym] = row
        for r, name in enumerate(self.card.aux_names):
            row = AuxRow(name, self.aux_box)
            row.layer.layerChanged.connect(lambda _l, row=row: self._row_changed(row))
            self.aux_grid.addWidget(row.label, 2 * r, 0, 1, 2)
            self.aux_grid.addWidget(row.layer, 2 * r + 1, 0)
            self.aux_grid.addWidget(row.band, 2 * r + 1, 1)
            self.aux_rows[name] = row
        self.aux_note.setText("A row left empty reads as the band's mean (the model was trained so)."
                              if self.card.tolerates_blank_aux else "Every row needs a layer.")
        self.guess_sources()

    # -- pre-matching layers by name -------------------------------------------------------------
    _guessing = False

    def guess_sources(self) -> list[str]:
        """Fill the rows that are still empty from the project's layers (see :mod:`layer_sources`); a row
        that holds a layer is never changed here. Says what it filled (``fill_label``); returns it."""
        filled: dict[str, list[str]] = {}
        self._guessing = True
        try:
            for sym, row in self.mineral_rows.items():
                if row.layer.currentLayer() is None:
                    hit = ls.guess_mineral_source(sym)
                    if hit:
                        row.set_source(hit[0], hit[1], auto=True)
                        filled.setdefault(hit[0].name(), []).append(sym)
            for name, row in self.aux_rows.items():
                if row.layer.currentLayer() is None:
                    hit = ls.guess_aux_source(name)
                    if hit:
                        row.set_source(hit[0], hit[1], auto=True)
                        filled.setdefault(hit[0].name(), []).append(name)
            if self.outline_layer.currentLayer() is None:
                outline = ls.guess_outline()
                if outline is not None:
                    self.outline_layer.setLayer(outline)
                    filled.setdefault(outline.name(), []).append("valid area")
            if self.sites_layer.currentLayer() is None:
                points = [l for l in ls.project_layers(QgsVectorLayer) if ls.is_point_layer(l) and ls.commodity_field(l)]
                if points:
                    self.sites_layer.setLayer(points[0])
                    filled.setdefault(points[0].name(), []).append("known sites")
        finally:
            self._guessing = False
        self.filled = [f"{', '.join(what) if len(what) <= 3 else f'{len(what)} rows ({what[0]} … {what[-1]})'} "
                       f"← '{name}'" for name, what in filled.items()]
        if self.filled:
            self.fill_label.setText("Filled empty rows: " + "; ".join(self.filled) + ".")
        self.update_run_state()
        return self.filled

    def _row_changed(self, row) -> None:
        row.auto = self._guessing
        self.update_run_state()

    def _layers_added(self, _layers) -> None:
        if self._example_pending or self._adding_run:
            return  # the example fills the rows once all of it is there; a run's own layers fill nothing
        self.guess_sources()

    def _layers_removed(self, _ids) -> None:
        self.update_run_state()

    def _sites_layer_changed(self, layer: Optional[QgsMapLayer]) -> None:
        self.sites_field.setLayer(layer)
        self.name_field.setLayer(layer)
        if isinstance(layer, QgsVectorLayer):
            want = self.settings.sites_field if layer.fields().indexOf(self.settings.sites_field) >= 0 else \
                ls.commodity_field(layer)
            if want:
                self.sites_field.setField(want)
            from .core.data.features import name_field_for

            self.name_field.setField(name_field_for([f.name() for f in layer.fields()],
                                                    self.settings.name_field or None))

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
                self._rubber.setFillColor(QColor(0, 0, 0, 0))  # an outline: the result shows through
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
        self.update_run_state()

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
        """Add the embedded CONUS data to the project (see :mod:`example_data`), zoom to the
        conterminous US, and fill the empty rows once all of it is there."""
        missing = [m for m in missing_packages() if m in ("numpy", "scipy", "rasterio")]
        if missing:
            self.message(missing_message(missing), Qgis.Critical)
            return None
        from .core.errors import M3Error
        from .example_data import ExampleData

        self.example = ExampleData(lambda text, error: self.message(text, Qgis.Critical if error else Qgis.Info))
        self.example.on_stack = self._example_ready
        self._example_pending = True
        try:
            self.example.load()
        except M3Error as e:
            self._example_pending = False
            self.message(str(e), Qgis.Critical)
            return None
        if self.example.task is None:  # the stack was cached (or already there): all of it is in
            self._example_ready()
        self.zoom_to_example()
        return self.example

    def _example_ready(self, *_args) -> None:
        self._example_pending = False
        self.guess_sources()

    def zoom_to_example(self) -> None:
        """Zoom the map to the conterminous US (the example outline)."""
        from .example_data import CONUS_EXTENT_WGS84

        canvas = self._canvas()
        if canvas is None:
            return
        dest = canvas.mapSettings().destinationCrs()
        if not dest.isValid():
            return
        tr = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), dest, QgsProject.instance())
        try:
            canvas.setExtent(tr.transformBoundingBox(QgsRectangle(*CONUS_EXTENT_WGS84)))
        except Exception:  # noqa: BLE001 (a CRS that cannot hold the US: leave the view)
            return
        canvas.refresh()

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
            s.threshold = self.threshold_spin.value() if self._threshold_overridden() else None
        s.output_dir = self.output_widget.filePath()
        s.hidden_species = [sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()]
        s.region_mode = self.region_mode.currentData()
        s.sites_field = self.sites_field.currentField()
        s.name_field = self.name_field.currentField()
        s.find_clusters = self.clusters_check.isChecked()
        s.cluster_min_area_km2 = self.cluster_area_spin.value()
        s.cluster_min_distance_km = self.cluster_distance_spin.value()
        s.save()

    def _run_folder(self, name: str) -> Path:
        from .core.data import defaults

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
        from .core.inference.layer_inputs import LayerInputs, as_region, region_grid
        from .infill_task import InfillJob

        if self.card is None:
            raise InputError(self.card_label.text().replace("<br>", " ") or "Choose a model file first.")
        card = self.card
        hidden = [sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()]
        shapes = self.region_shapes()
        grid = region_grid(card, as_region(shapes))
        qcrs = QgsCoordinateReferenceSystem.fromWkt(grid.crs.to_wkt())
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
            sites = ls.point_records(sites_layer, self.sites_field.currentField(), (wide, qcrs),
                                     self.name_field.currentField())
            sites_id = sites_layer.id()
        what = ", ".join(hidden) if hidden else "all species"
        name = f"M3 infill {what} {time.strftime('%H:%M:%S')}"
        threshold = self._threshold(hidden)
        settings = {"model": ", ".join(Path(p).name for p in self.model_paths), "hidden species": what,
                    "region": self.region_label.text(), "mask draws per model": self.draws_spin.value(),
                    "threshold at the run": f"{threshold:.2f}",
                    "known sites": sites_layer.name() if sites is not None else "none",
                    "device": self.device_combo.currentText()}
        return InfillJob(name=name, folder=self._run_folder(name.replace(", ", "-")), inputs=inputs, region=shapes,
                         hide_species=hidden, model_paths=list(self.model_paths), grid=grid,
                         draws=self.draws_spin.value(),
                         batch_size=self.batch_spin.value(), device=self.device_combo.currentData(),
                         threshold=threshold, sites=sites, sites_layer_id=sites_id,
                         find_clusters=self.clusters_check.isChecked(),
                         cluster_min_area_km2=self.cluster_area_spin.value(),
                         cluster_min_distance_km=self.cluster_distance_spin.value(), settings=settings)

    def _pooled_threshold(self) -> float:
        """The ensemble's pooled threshold (:func:`core.model.model_file.ensemble_threshold`): the spin box's default."""
        from .core.model.model_file import ensemble_threshold

        return ensemble_threshold(self.cards)

    def _threshold_overridden(self) -> bool:
        """Whether the user moved the threshold spin box off the ensemble's pooled threshold."""
        shown = round(self._pooled_threshold(), self.threshold_spin.decimals())  # as the spin box holds it
        return abs(self.threshold_spin.value() - shown) > 1e-9

    def _threshold(self, hidden: list[str]) -> float:
        """The spin box's value when the user changed it, else the ensemble's validation threshold for
        this kind of question (a region with some or all species hidden), as infill writes it."""
        from .core.masks.hiding import hiding_scenario
        from .core.model.model_file import ensemble_threshold

        if self._threshold_overridden():
            return float(self.threshold_spin.value())
        return ensemble_threshold(self.cards, hiding_scenario(hidden, True, self.card.species))

    def run_blocker(self) -> str:
        """Why Run cannot start now ('' when it can): what is missing, in the dock's words."""
        missing = missing_packages()
        if missing:
            return "Install the missing packages first (above)."
        if self.card is None:
            return "Choose a model file (Model)."
        mode = self.region_mode.currentData()
        if mode == "drawn" and self.region is None:
            return "Draw the region to hide (Region to hide: Rectangle or Polygon)."
        if mode == "selection":
            layer = self.region_layer.currentLayer()
            if layer is None or layer.selectedFeatureCount() == 0:
                return "Select the region's polygons in a polygon layer (Region to hide)."
        empty = [sym for sym, row in self.mineral_rows.items() if row.layer.currentLayer() is None]
        if empty:
            return f"Choose a layer for {', '.join(empty)} (Minerals), or click Load example data."
        if not self.card.tolerates_blank_aux:
            blank = [name for name, row in self.aux_rows.items() if row.layer.currentLayer() is None]
            if blank:
                return f"Choose a layer for the aux band(s) {', '.join(blank)} (Auxiliary layers)."
        return ""

    def update_run_state(self) -> None:
        """Enable Run only when everything it needs is there; else say what is missing."""
        if not hasattr(self, "run_button"):
            return
        reason = self.run_blocker()
        running = self.task is not None
        self.run_button.setEnabled(not running and not reason)
        self.reason_label.setText("" if running else reason)
        self.reason_label.setVisible(bool(reason) and not running)

    def _dependencies_installed(self) -> None:
        self._update_device()
        self.set_model_paths(self.model_paths or default_model_paths())
        self.message("The packages M3 needs are installed; Run is ready once the inputs are set.", Qgis.Success)

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
        self.update_run_state()
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"Running: {job.name}...")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self) -> None:
        """Cancel the running infill; nothing is added to the project."""
        if self.task is not None:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling: stopping after the current batch...")

    def _task_done(self, task) -> None:
        from .core.errors import M3Error

        self.task = None
        self.update_run_state()
        self.cancel_button.setEnabled(False)
        if task.outputs is None:
            self.progress_bar.setValue(0)
            if task.error:
                self.message(task.error, Qgis.Critical)
            else:
                self.message("Cancelled: nothing was added to the project.", Qgis.Info, duration=5)
            return
        hide = [row.layer.currentLayer().id() for sym, row in self.mineral_rows.items()
                if sym in task.outputs.species and isinstance(row.layer.currentLayer(), QgsRasterLayer)]
        self._adding_run = True
        try:
            self.last_group = add_run_group(task.outputs, hide_layer_ids=sorted(set(hide)))
        except M3Error as e:
            task._created = True
            task._discard()
            self.message(str(e), Qgis.Critical)
            return
        finally:
            self._adding_run = False
        if self._rubber is not None:  # the run's region layer is the outline now
            self._rubber.setVisible(False)
        self.last_outputs = task.outputs
        self.results.set_run(task.outputs, self.last_group)
        self.message(f"{task.outputs.name}: {task.outputs.summary}", Qgis.Success)

    def show_comparison(self, rows) -> None:
        """Show a run's table rows (``SpeciesComparison``) without scores (no slider, no curve)."""
        from .results import comparison_rows

        self.results._fill(comparison_rows(rows))

    def comparison_cells(self) -> list[list[str]]:
        """The comparison table's text, row by row."""
        return self.results.cells()

    # -- tear-down ----------------------------------------------------------------------------
    def close_down(self) -> None:
        """Cancel a running task, remove map tools and the region outline, keep the settings."""
        for signal, slot in ((QgsProject.instance().layersAdded, self._layers_added),
                             (QgsProject.instance().layersRemoved, self._layers_removed)):
            try:
                signal.disconnect(slot)
            except TypeError:
                pass
        if self.install_panel.task is not None:
            self.install_panel.task.cancel()
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
