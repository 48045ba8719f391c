""""Load example data": the embedded CONUS data set as project layers, in one group.

Presence comes from the default stack (built from the embedded data and cached on first use:
under a minute, in a background task); the aux rasters, the records (as a GeoPackage point layer made
once in the cache folder), the faults and the outline are added at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsLayerTreeGroup, QgsMapLayer, QgsProject,
                       QgsRasterLayer, QgsTask, QgsVectorLayer)
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QColor

from . import styles
from .layer_sources import raster_layer
from .core.data import defaults
from .core.atomic import atomic_path
from .core.data.aux_layers import layer_name
from .core.errors import M3Error
from .core.progress import CallbackProgress

GROUP = "M3 example data"
STACK_LAYER = "M3 stack (CONUS, 1 mile)"
RECORDS_LAYER = "mineral sites (MinMod)"
RECORDS_TABLE = "mineral_sites"
CONUS_EXTENT_WGS84 = (-125.0, 24.0, -66.5, 49.5)  # the conterminous US (xmin, ymin, xmax, ymax)


EXAMPLE_CRS = "EPSG:5070"   # NAD83 / Conus Albers: the stack's grid


def prefer_datum_operations(project) -> None:
    """Record in the project which operation turns WGS84 (and NAD83) coordinates into the
    example's CRS, so that adding an ordinary WGS84 layer does not stop on QGIS's datum
    transformation dialog (NAD83 and WGS84 differ by about a metre; the cells are 1.6 km)."""
    from qgis.core import QgsDatumTransform

    dest = QgsCoordinateReferenceSystem(EXAMPLE_CRS)
    context = project.transformContext()
    for code in ("EPSG:4326", "EPSG:4269"):
        src = QgsCoordinateReferenceSystem(code)
        if context.hasTransform(src, dest):
            continue
        try:
            ops = [op for op in QgsDatumTransform.operations(src, dest) if op.isAvailable]
        except Exception:  # noqa: BLE001 (an older QGIS without the API: QGIS asks as before)
            return
        if ops:
            context.addCoordinateOperation(src, dest, ops[0].proj)
    project.setTransformContext(context)


def records_geopackage() -> Path:
    """The embedded records CSV as a GeoPackage point layer in the cache folder (made once)."""
    from osgeo import gdal

    out = defaults.cache_dir() / "example" / "mineral_sites_us.gpkg"
    if out.exists() and out.stat().st_mtime >= defaults.RECORDS.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    src = gdal.OpenEx(f"/vsigzip/{defaults.RECORDS}", gdal.OF_VECTOR,
                      open_options=["X_POSSIBLE_NAMES=lon", "Y_POSSIBLE_NAMES=lat"])
    if src is None:
        raise M3Error(f"Could not read {defaults.RECORDS}: {gdal.GetLastErrorMsg()}. Reinstall the plugin.")
    with atomic_path(out) as tmp:
        tmp.unlink()
        ds = gdal.VectorTranslate(str(tmp), src, format="GPKG", layerName=RECORDS_TABLE, srcSRS="EPSG:4326",
                                  dstSRS="EPSG:4326", geometryType="POINT")
        if ds is None:
            raise M3Error(f"Could not convert {defaults.RECORDS} to a GeoPackage: {gdal.GetLastErrorMsg()}")
        ds = None  # close before the rename
    src = None
    return out


def _vector(path: Path, name: str, table: str = "") -> QgsVectorLayer:
    uri = f"{path}|layername={table}" if table else str(path)
    return QgsVectorLayer(uri, name, "ogr")


def _raster(path: Path, name: str) -> QgsRasterLayer:
    return raster_layer(str(path), name)


def _add(group: QgsLayerTreeGroup, layers: list[QgsMapLayer], visible: bool = True, at_top: bool = False) -> None:
    project = QgsProject.instance()
    for layer in layers:
        if not layer.isValid():
            raise M3Error(f"The example layer '{layer.name()}' ({layer.source()}) did not load. "
                          "Reinstall the plugin.")
    for layer in layers:
        project.addMapLayer(layer, False)
        node = group.insertLayer(0, layer) if at_top else group.addLayer(layer)
        node.setItemVisibilityChecked(visible)
        node.setExpanded(False)


class StackBuildTask(QgsTask):
    """Builds the default stack in the background (first use only)."""

    def __init__(self, on_built: Callable[[Optional[Path], Optional[str]], None]) -> None:
        super().__init__("M3: build the example stack", QgsTask.Flag.CanCancel)
        self.on_built = on_built
        self.path: Optional[Path] = None
        self.error: Optional[str] = None

    def run(self) -> bool:
        from .core.data.build_stack import build_stack

        path = defaults.cache_dir() / defaults.DEFAULT_STACK_NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                import warnings

                # the embedded records also name quarries, sand and gravel...: left out on purpose, and
                # the CLI's hint (--extra-species) means nothing in QGIS: said in the log, not the message bar
                with warnings.catch_warnings(record=True) as seen:
                    warnings.simplefilter("always")
                    build_stack(path, progress=CallbackProgress(self.setProgress, self.isCanceled))
                from qgis.core import Qgis, QgsMessageLog

                for w in seen:
                    QgsMessageLog.logMessage(str(w.message), "M3", Qgis.MessageLevel.Info)
            self.path = path
            return True
        except M3Error as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001  (never let an exception escape into QGIS's task thread)
            self.error = f"Building the example stack failed: {e!r}"
        return False

    def finished(self, ok: bool) -> None:  # noqa: D401 (QgsTask API)
        self.on_built(self.path if ok else None, self.error or (None if ok else "Cancelled."))


class ExampleData:
    """Adds the example layers; ``task`` is the stack build when the stack was not cached yet."""

    def __init__(self, report: Callable[[str, bool], None]) -> None:
        self.report = report  # (message, is_error)
        self.group: Optional[QgsLayerTreeGroup] = None
        self.task: Optional[StackBuildTask] = None
        self.stack_layer_id: Optional[str] = None
        self.on_stack: Optional[Callable[[Optional[str]], None]] = None  # called once the stack is in (or failed)
        self.owns_crs = False  # the project was new and took the example's CRS

    def load(self) -> QgsLayerTreeGroup:
        """Add the layers that need no build; start (or finish at once) adding the stack."""
        project = QgsProject.instance()
        root = project.layerTreeRoot()
        old = root.findGroup(GROUP)
        if old is not None:
            self.group = old
            self.report("The example data is already in the project.", False)
            return old
        if not project.mapLayers():  # a new project: the example's own equal-area CRS, set before any layer
            project.setCrs(QgsCoordinateReferenceSystem(EXAMPLE_CRS))
            self.owns_crs = True
        prefer_datum_operations(project)
        group = root.insertGroup(0, GROUP)
        try:
            outline = _vector(defaults.OUTLINE, "CONUS outline")
            styles.style_outline(outline, QColor(60, 60, 60), 0.4)
            faults = _vector(defaults.FAULTS, "active faults")
            records = _vector(records_geopackage(), RECORDS_LAYER, RECORDS_TABLE)
            styles.style_sites(records)
            _add(group, [records, faults, outline])
            _add(group, [_raster(p, layer_name(p)) for p in defaults.AUX_RASTERS], visible=False)
        except Exception:
            self._remove(group)
            raise
        self.group = group
        cached = defaults.cache_dir() / defaults.DEFAULT_STACK_NAME
        if cached.exists():
            self._add_stack(cached, None)
        else:
            self.report("Building the example stack from the embedded data (first use, under a minute)...", False)
            self.task = StackBuildTask(self._add_stack)
            QgsApplication.taskManager().addTask(self.task)
        return group

    def keep_crs(self) -> None:
        """Set the example's CRS again on a project it started: QGIS 3.44 gives a new project the CRS of its
        first layer (the records, WGS84) once the layers are drawn, after :meth:`load` set it."""
        project = QgsProject.instance()
        if self.owns_crs and project.crs().authid() != EXAMPLE_CRS:
            project.setCrs(QgsCoordinateReferenceSystem(EXAMPLE_CRS))

    def _add_stack(self, path: Optional[Path], error: Optional[str]) -> None:
        if self.group is None or sip.isdeleted(self.group):  # the project was closed meanwhile
            return
        try:
            if path is None:
                self.report(f"The example stack was not built: {error}", True)
                return
            layer = _raster(path, STACK_LAYER)
            styles.style_presence(layer, 1)
            try:
                _add(self.group, [layer], at_top=True)
            except M3Error as e:
                self.report(str(e), True)
                return
            self.stack_layer_id = layer.id()
            self.report("Example data loaded: the stack's presence bands, aux rasters, mineral sites, faults "
                        "and the outline.", False)
        finally:
            if self.on_stack is not None and self.task is not None:  # added later, in the background
                self.on_stack(self.stack_layer_id)

    @staticmethod
    def _remove(group: QgsLayerTreeGroup) -> None:
        project = QgsProject.instance()
        for node in group.findLayers():
            project.removeMapLayer(node.layerId())
        project.layerTreeRoot().removeChildNode(group)
