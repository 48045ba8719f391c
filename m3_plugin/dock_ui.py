"""The M3 dock's widgets: its sections, built the way Qt Designer's ``Ui_`` classes build a form
(:meth:`DockUi.setup_ui` on the dock), with their tooltips. What the widgets do lives in
:mod:`dock`; the region section is :class:`region_chooser.RegionChooser`."""
from __future__ import annotations

import re

from qgis.core import Qgis
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QHBoxLayout,
                                 QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox,
                                 QToolButton, QVBoxLayout, QWidget)

from .core.inference.map_choice import WHICH_MAP
from . import dependencies
from .dependencies import install_hint
from .installer import InstallPanel
from .model_info import default_model_paths
from .qt_compat import POINT_LAYERS, POLYGON_LAYERS
from .region_chooser import RegionChooser
from .results_panel import ResultsPanel
from .source_rows import _compact
from .user_guide import UserGuideDialog


def device_text(prefer: str = "auto") -> str:
    """Which torch device an infill would run on, or what to install when torch is missing."""
    missing = dependencies.missing_packages()
    if "torch" in missing:
        return "Device: chosen once torch is installed (Install, above)."
    try:
        from .core.device import pick_device  # imports torch: only once it is known to be there
    except (ImportError, OSError) as err:  # e.g. a torch build that does not fit this system
        return f"torch does not load in QGIS's Python ({err}). Reinstall it. {install_hint(['torch'])}"

    return f"Device: {pick_device(prefer)[1]}"


INTRO = ("Hide mineral records in a region and see where the model expects them, compared with the known "
         "sites. First time: Load example data, tick a species, draw a region, Run.")


def _wrap(label: QLabel) -> QLabel:
    """A word-wrapped label that takes the dock's width instead of setting it."""
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(80)
    return label


def _collapsible(title: str, parent: QWidget, collapsed: bool = False, name: str = "") -> QgsCollapsibleGroupBox:
    box = QgsCollapsibleGroupBox(title, parent)
    box.setObjectName(name or "m3Section_" + re.sub(r"\W+", "_", title))
    box.setSaveCollapsedState(False)
    box.setCollapsed(collapsed)
    return box


class DockUi:
    """The dock's sections; mixed into :class:`dock.M3Dock`, whose methods the widgets call."""

    def setup_ui(self) -> None:
        """Build the dock's sections inside a scroll area."""
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._intro(body))
        self.install_panel = InstallPanel(body)
        self.install_panel.installed.connect(self._dependencies_installed)
        layout.addWidget(self.install_panel)
        layout.addWidget(self._model_box(body))
        layout.addWidget(self._minerals_box(body))
        self.region_box = RegionChooser(self.iface.mapCanvas() if self.iface is not None else None,
                                        self.settings.region_mode, body)
        layout.addWidget(self.region_box)
        for build in (self._aux_box, self._valid_box, self._sites_box, self._options_box, self._run_box,
                      self._comparison_box):
            layout.addWidget(build(body))
        layout.addStretch(1)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.scroll = scroll

    def _intro(self, body: QWidget) -> QHBoxLayout:
        row = QHBoxLayout()
        self.intro_label = QLabel(INTRO, body)
        _wrap(self.intro_label)
        self.help_button = QToolButton(body)
        self.help_button.setText("Help")
        self.help_button.setObjectName("m3Help")
        self.help_button.setToolTip("Open the user guide that comes with the plugin (no network needed).")
        self.help_button.clicked.connect(self.open_help)
        row.addWidget(self.intro_label, 1)
        row.addWidget(self.help_button, 0, Qt.AlignmentFlag.AlignTop)
        return row

    def open_help(self) -> bool:
        """Show the bundled user guide in a window of its own; False when its file is missing."""
        if getattr(self, "user_guide", None) is None:
            self.user_guide = UserGuideDialog(self)
        self.user_guide.show()
        self.user_guide.raise_()
        return self.user_guide.guide_path is not None

    def _model_box(self, body: QWidget) -> QWidget:
        """Model file(s), its card, the device, Load example data."""
        model_box = _collapsible("Model", body)
        mform = QFormLayout(model_box)
        mform.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.example_button = QPushButton("Load example data", model_box)
        self.example_button.setToolTip("Add the embedded CONUS data (presence stack, aux rasters, mineral sites, "
                                       "faults, outline) to the project and zoom to it.")
        self.example_button.clicked.connect(self.load_example_data)
        mform.addRow(self.example_button)
        self.model_widget = QgsFileWidget(model_box)
        self.model_widget.setStorageMode(QgsFileWidget.StorageMode.GetMultipleFiles)
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
        self.card_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.card_label.setToolTip("What the model was trained on: its species, aux bands, cells and threshold.")
        mform.addRow(self.card_label)
        self.device_combo = QComboBox(model_box)
        self.device_combo.addItem("Auto (GPU if any)", "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.settings.device)))
        _compact(self.device_combo, 12)
        self.device_combo.setToolTip("Where torch runs the model: a CUDA GPU when there is one, else the CPU.")
        self.device_combo.currentIndexChanged.connect(lambda _: self._update_device())
        mform.addRow("Device", self.device_combo)
        self.device_label = QLabel(device_text(self.settings.device), model_box)
        self.device_label.setObjectName("m3DeviceLabel")
        _wrap(self.device_label)
        self.device_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        vform.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.outline_layer = QgsMapLayerComboBox(valid_box)
        self.outline_layer.setFilters(POLYGON_LAYERS)
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
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.sites_layer = QgsMapLayerComboBox(box)
        self.sites_layer.setFilters(POINT_LAYERS)
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
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
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
        self.flag_share_spin = QDoubleSpinBox(box)
        self.flag_share_spin.setObjectName("m3FlagShare")
        self.flag_share_spin.setRange(0.1, 50.0)
        self.flag_share_spin.setSingleStep(0.5)
        self.flag_share_spin.setDecimals(1)
        self.flag_share_spin.setPrefix("top ")
        self.flag_share_spin.setSuffix(" %")
        self.flag_share_spin.setValue(self.settings.flag_percent)
        self.flag_share_spin.setToolTip("Which cells the run flags (map colours, table, clusters): the most "
                                        "likely cells of the region, this share of them over the hidden species. "
                                        "The probability this takes is shown after the run; the slider under "
                                        "Results moves it.")
        form.addRow("Flag", self.flag_share_spin)
        self.threshold_spin = QDoubleSpinBox(box)
        self.threshold_spin.setRange(0.0, 0.999)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setDecimals(3)
        self.threshold_spin.setSpecialValueText("none")
        self.threshold_spin.setToolTip("A fixed probability at or above which cells are flagged instead of the "
                                       "top share; 0 = none. With a calibrated model (see the model card) a "
                                       "probability of 0.2 means about one such cell in five held a recorded "
                                       "site on validation blocks.")
        form.addRow("Or p ≥", self.threshold_spin)
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
        self.aux_only_check = QCheckBox("Aux-only map beside M3's", box)
        self.aux_only_check.setToolTip(
            "Also map the hidden species from the aux layers alone (gradient boosting, scikit-learn), fitted "
            "on the cells around the region, never on it: on M3's discovery test this map ranks some "
            "held-out surveys better than M3's. Added as hidden layers; the summary compares the known sites "
            "each map puts in the top 10 % of the region. Takes longer.\n\n" + WHICH_MAP)
        self.aux_only_check.setChecked(self.settings.aux_only_map)
        form.addRow(self.aux_only_check)
        self.output_widget = QgsFileWidget(box)
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
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
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addWidget(self.status_label)
        return run_box

    def _comparison_box(self, body: QWidget) -> QWidget:
        """Threshold slider, table, capture curve, export."""
        box = _collapsible("Results", body, name="m3Results")
        layout = QVBoxLayout(box)
        self.results = ResultsPanel(box)
        self.results.exported.connect(lambda folder: self.message(f"Exported to {folder}", Qgis.MessageLevel.Success))
        self.comparison_table = self.results.table
        layout.addWidget(self.results)
        return box

    # -- model --------------------------------------------------------------------------------

