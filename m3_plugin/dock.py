"""The M3 dock widget: choose the model, the layers, the species and the region to hide, run an
infill in the background and compare the result with known mines."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry,
                       QgsMapLayer, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QWidget

from . import layer_sources as ls
from .dependencies import missing_message, missing_packages
from .dock_ui import DockUi, device_text
from .model_info import card_text, default_model_paths, read_cards
from .results import REGION_LAYER_NAME, add_run_group
from .settings import DockSettings
from .source_rows import AuxRow, MineralRow


class M3Dock(DockUi, QDockWidget):
    """Dock titled "M3 mineral infill": gathers the run's parameters, starts it, shows its results."""

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
        self.task = None
        self.example = None
        self.last_group = None
        self.last_outputs = None
        self.filled: list[str] = []  # what the last automatic fill of empty rows set
        self._example_pending = False
        self._adding_run = False
        self.setup_ui()
        self.region_box.changed.connect(self.update_run_state)
        self.region_box.update_label()
        self.set_model_paths(self.settings.model_paths or default_model_paths())
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_added)
        project.layersRemoved.connect(self._layers_removed)

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
        self.threshold_spin.setValue(self.settings.threshold or 0.0)
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

    # -- region (its own widget: region_chooser.RegionChooser) ---------------------------------
    @property
    def region(self) -> Optional[tuple[QgsGeometry, QgsCoordinateReferenceSystem]]:
        """The drawn region (geometry, CRS); None before one is drawn."""
        return self.region_box.region

    @property
    def region_mode(self):
        return self.region_box.mode

    @property
    def region_layer(self):
        return self.region_box.layer

    @property
    def region_label(self):
        return self.region_box.label

    def set_region(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """Use a drawn region (``geometry`` in ``crs``) and show it on the map."""
        self.region_box.set_region(geometry, crs)

    def start_drawing(self, kind: str) -> None:
        """Draw the region on the map: ``rectangle`` or ``polygon``."""
        self.region_box.start_drawing(kind)

    def region_shapes(self):
        """The region to hide, as core shapes."""
        return self.region_box.shapes()

    # -- example data -------------------------------------------------------------------------
    def load_example_data(self):
        """Add the embedded CONUS data to the project (see :mod:`example_data`), zoom to the
        conterminous US, and fill the empty rows once all of it is there."""
        missing = [m for m in missing_packages() if m in ("numpy", "scipy", "rasterio")]
        if missing:
            self.message(missing_message(missing), Qgis.MessageLevel.Critical)
            return None
        from .core.errors import M3Error
        from .example_data import ExampleData

        self.example = ExampleData(lambda text, error: self.message(text, Qgis.MessageLevel.Critical if error else Qgis.MessageLevel.Info))
        self.example.on_stack = self._example_ready
        self._example_pending = True
        try:
            self.example.load()
        except M3Error as e:
            self._example_pending = False
            self.message(str(e), Qgis.MessageLevel.Critical)
            return None
        if self.example.task is None:  # the stack was cached (or already there): all of it is in
            self._example_ready()
        self.zoom_to_example()
        # again once the event loop has run: QGIS zooms an empty project to its first layer's extent
        # (here the records, worldwide) after the layers are added
        QTimer.singleShot(300, self.zoom_to_example)
        return self.example

    def _example_ready(self, *_args) -> None:
        self._example_pending = False
        self.guess_sources()
        QTimer.singleShot(300, self.zoom_to_example)  # again: a layer added meanwhile may have moved the view

    def _canvas(self):
        return self.iface.mapCanvas() if self.iface is not None else None

    def zoom_to_example(self) -> None:
        """Zoom the map to the conterminous US (the example outline)."""
        from .example_data import CONUS_EXTENT_WGS84

        canvas = self._canvas()
        if canvas is None:
            return
        if self.example is not None:
            self.example.keep_crs()
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
    def message(self, text: str, level=Qgis.MessageLevel.Info, duration: int = 10) -> None:
        """Show ``text`` in QGIS's message bar (and in the dock's status line)."""
        self.status_label.setText(text)
        if self.iface is not None:
            self.iface.messageBar().pushMessage("M3", text, level=level,
                                                duration=0 if level == Qgis.MessageLevel.Critical else duration)

    def save_settings(self) -> None:
        s = self.settings
        s.model_paths = [] if self.model_paths == default_model_paths() else list(self.model_paths)
        s.draws = self.draws_spin.value()
        s.batch_size = self.batch_spin.value()
        s.device = self.device_combo.currentData()
        s.threshold = self._threshold_override()
        s.flag_percent = self.flag_share_spin.value()
        s.output_dir = self.output_widget.filePath()
        s.hidden_species = [sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()]
        s.region_mode = self.region_mode.currentData()
        s.sites_field = self.sites_field.currentField()
        s.name_field = self.name_field.currentField()
        s.find_clusters = self.clusters_check.isChecked()
        s.cluster_min_area_km2 = self.cluster_area_spin.value()
        s.cluster_min_distance_km = self.cluster_distance_spin.value()
        s.aux_only_map = self.aux_only_check.isChecked()
        s.save()

    def build_job(self):
        """The run as plain data: what the dock holds, gathered and handed to :func:`infill_job.build_job`."""
        from .core.errors import InputError

        missing = missing_packages()
        if missing:
            raise InputError(missing_message(missing))
        from .infill_job import JobRequest, build_job

        if self.card is None:
            raise InputError(self.card_label.text().replace("<br>", " ") or "Choose a model file first.")
        sites_layer = self.sites_layer.currentLayer()
        sites = ((sites_layer, self.sites_field.currentField(), self.name_field.currentField())
                 if sites_layer is not None and self.sites_field.currentField() else None)
        return build_job(JobRequest(
            cards=list(self.cards), model_paths=list(self.model_paths),
            hidden=[sym for sym, row in self.mineral_rows.items() if row.hide.isChecked()],
            region=self.region_shapes(), region_text=self.region_label.text(),
            minerals={sym: (row.layer.currentLayer(), row.choice.currentData()) for sym, row in self.mineral_rows.items()},
            aux={name: (row.layer.currentLayer(), row.band.currentData()) for name, row in self.aux_rows.items()},
            outline=self.outline_layer.currentLayer(), sites=sites, draws=self.draws_spin.value(),
            batch_size=self.batch_spin.value(), device=self.device_combo.currentData(),
            device_text=self.device_combo.currentText(),
            flag_share=self.flag_share_spin.value() / 100.0, threshold_override=self._threshold_override(),
            find_clusters=self.clusters_check.isChecked(), cluster_min_area_km2=self.cluster_area_spin.value(),
            cluster_min_distance_km=self.cluster_distance_spin.value(),
            aux_only_map=self.aux_only_check.isChecked(),
            run_base=Path(self.output_widget.filePath()) if self.output_widget.filePath() else None))

    def _threshold_override(self) -> Optional[float]:
        """The fixed probability the user set (None: flag the top share of the region)."""
        value = float(self.threshold_spin.value())
        return value if value > 0 else None

    def run_blocker(self) -> str:
        """Why Run cannot start now ('' when it can): what is missing, in the dock's words."""
        missing = missing_packages()
        if missing:
            return "Install the missing packages first (above)."
        if self.card is None:
            return "Choose a model file (Model)."
        region = self.region_box.blocker()
        if region:
            return region
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
        self.message("The packages M3 needs are installed; Run is ready once the inputs are set.", Qgis.MessageLevel.Success)

    def run(self):
        """Start an infill in the background; returns the task, or None when the inputs are not usable
        (the message bar says why)."""
        from .core.errors import M3Error

        if self.task is not None:
            self.message("An infill is already running; wait for it or cancel it.", Qgis.MessageLevel.Warning)
            return None
        try:
            job = self.build_job()
        except M3Error as e:
            self.message(str(e), Qgis.MessageLevel.Critical)
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
                self.message(task.error, Qgis.MessageLevel.Critical)
            else:
                self.message("Cancelled: nothing was added to the project.", Qgis.MessageLevel.Info, duration=5)
            return
        hide = [row.layer.currentLayer().id() for sym, row in self.mineral_rows.items()
                if sym in task.outputs.species and isinstance(row.layer.currentLayer(), QgsRasterLayer)]
        self._adding_run = True
        try:
            self.last_group = add_run_group(task.outputs, hide_layer_ids=sorted(set(hide)))
        except M3Error as e:
            task.discard()
            self.message(str(e), Qgis.MessageLevel.Critical)
            return
        finally:
            self._adding_run = False
        self.region_box.hide_outline()  # the run's region layer is the outline now
        self.last_outputs = task.outputs
        self.results.set_run(task.outputs, self.last_group)
        self.zoom_to_run(self.last_group)
        self.scroll.ensureWidgetVisible(self.results)  # the answer, not the top of the form
        self.message(f"{task.outputs.name}: {task.outputs.summary}", Qgis.MessageLevel.Success)

    def zoom_to_run(self, group) -> None:
        """Zoom the map to the run's hidden region (with a margin), where its answer is."""
        canvas = self._canvas()
        if canvas is None or group is None:
            return
        for node in group.findLayers():
            layer = node.layer()
            if layer is not None and layer.name() == REGION_LAYER_NAME and layer.isValid():
                tr = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
                try:
                    extent = tr.transformBoundingBox(layer.extent())
                except Exception:  # noqa: BLE001 (a CRS that cannot hold the region: leave the view)
                    return
                canvas.setExtent(extent.buffered(0.15 * max(extent.width(), extent.height())))
                canvas.refresh()
                return

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
        self.region_box.close_down()
