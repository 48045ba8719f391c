"""The M3 Processing provider: "Build stack", "Infill minerals", "Aux-only map", "Combine maps" and
"Find clusters", for the toolbox, batch mode and the Model Designer. Each calls the same ``core``
functions as the CLI and the dock."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingContext,
                       QgsProcessingException, QgsProcessingFeedback, QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterCrs, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString, QgsProcessingParameterVectorDestination,
                       QgsProcessingParameterVectorLayer, QgsProcessingProvider, QgsRasterLayer,
                       QgsVectorFileWriter, QgsVectorLayer)
from qgis.PyQt.QtGui import QIcon

from .core.inference.map_choice import WHICH_MAP
from .core.data import defaults
from .core.errors import M3Error
from .core.progress import CallbackProgress
from .qt_compat import (NUMBER_DOUBLE, NUMBER_INTEGER, NUMERIC_FIELD, PARAMETER_FILE, SOURCE_LINES, SOURCE_POINTS,
                        SOURCE_POLYGONS, SOURCE_RASTER)

ICON = Path(__file__).resolve().parent / "resources" / "icons" / "m3.png"
DEVICES = ("auto", "cpu", "cuda")
# core's messages name the CLI command that makes a file; in QGIS the M3 algorithm makes it
CLI_TO_ALGORITHM = (
    (r"(?:python )?train_cli\.py build-stack(?: --out \S+)?", "the M3 algorithm 'Build stack' (m3:buildstack)"),
    (r"(?:python )?train_cli\.py predict(?: --out \S+)?", "the M3 algorithm 'Infill minerals' (m3:infill)"),
    (r"(?:python )?train_cli\.py clusters(?: --out \S+)?", "the M3 algorithm 'Find clusters' (m3:clusters)"),
    (r"(?:python )?train_cli\.py aux-map(?: --out \S+)?", "the M3 algorithm 'Aux-only map' (m3:auxmap)"),
    (r"(?:python )?train_cli\.py combine-maps(?: --out \S+)?", "the M3 algorithm 'Combine maps' (m3:combinemaps)"),
    (r"(?:python )?train_cli\.py train(?: --out \S+)?",
     "M3's training command (see the plugin's Help), or leave the model empty for the bundled model"),
)


def for_processing(message: str) -> str:
    """An M3 error as a Processing user reads it: the M3 algorithm to run, not a CLI command."""
    for pattern, algorithm in CLI_TO_ALGORITHM:
        message = re.sub("`?" + pattern + "`?", algorithm, message)
    return message


class _StylePrediction(QgsProcessingLayerPostProcessorInterface):
    """Styles an infill output as it is loaded (not as a black RGB composite of its bands)."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        from . import styles

        if isinstance(layer, QgsRasterLayer):
            styles.style_prediction_layer(layer)


class _StyleClusters(QgsProcessingLayerPostProcessorInterface):
    """Styles a clusters output by species, labelled with the nearest known site's name."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        from . import styles

        if isinstance(layer, QgsVectorLayer):
            styles.style_clusters(layer, label_field="nearest_site")


_POST_PROCESSORS: list = []  # Processing holds them weakly: keep them alive here


def _style_on_load(context: QgsProcessingContext, out: str, styler, name: str = "") -> None:
    if context.willLoadLayerOnCompletion(out):
        processor = styler()
        _POST_PROCESSORS.append(processor)
        details = context.layerToLoadOnCompletionDetails(out)
        if name:
            details.name = name
        details.setPostProcessor(processor)


def _progress(feedback: Optional[QgsProcessingFeedback]) -> CallbackProgress:
    feedback = feedback or QgsProcessingFeedback()
    return CallbackProgress(feedback.setProgress, feedback.isCanceled)


def _symbols(text: str) -> list[str]:
    return [s.strip() for s in (text or "").replace(";", ",").replace(" ", ",").split(",") if s.strip()]


def _vector_file(layer: Optional[QgsVectorLayer], context: QgsProcessingContext, name: str) -> Optional[str]:
    """A file GDAL can open holding just this layer: its own file, else a temporary GeoPackage copy."""
    if layer is None:
        return None
    source = layer.source()
    if layer.providerType() == "ogr" and "|" not in source and Path(source).is_file():
        return source
    out = QgsProcessing.generateTempFilename(f"{name}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    err = QgsVectorFileWriter.writeAsVectorFormatV3(layer, out, context.transformContext(), options)
    if err[0] != QgsVectorFileWriter.WriterError.NoError:
        raise QgsProcessingException(f"Could not write {layer.name()} to a temporary GeoPackage: {err[1]}")
    return out


def _layer_file(layer: QgsVectorLayer, context: QgsProcessingContext, name: str) -> tuple[str, Optional[str],
                                                                                          Optional[str]]:
    """(file, layer name, attribute filter) GDAL can read a vector layer from: its own file, with
    ``|layername=`` and ``|subset=`` of an OGR source; else a temporary GeoPackage copy."""
    parts = layer.source().split("|")
    opts = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if (layer.providerType() == "ogr" and Path(parts[0]).is_file()
            and set(opts) <= {"layername", "subset"}):
        return parts[0], opts.get("layername") or None, opts.get("subset") or None
    return _vector_file(layer, context, name), None, None


def _band_prefix(layer_name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", layer_name).strip("_") or "points"


class M3Algorithm(QgsProcessingAlgorithm):
    """Shared: the group, the icon, and M3's errors turned into Processing errors."""

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return ""

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def createInstance(self):  # noqa: N802
        return type(self)()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            return self.process(parameters, context, feedback)
        except M3Error as e:
            raise QgsProcessingException(for_processing(str(e))) from None
        except ImportError as e:  # e.g. torch missing in QGIS's Python
            from .dependencies import missing_message, missing_packages

            raise QgsProcessingException(missing_message(missing_packages()) if missing_packages()
                                         else f"M3 cannot load: {e}") from None

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        raise NotImplementedError


class BuildStackAlgorithm(M3Algorithm):
    RECORDS, AUX, FAULTS, OUTLINE, CRS, RESOLUTION, SPECIES, OUTPUT = (
        "RECORDS", "AUX", "FAULTS", "OUTLINE", "CRS", "RESOLUTION", "SPECIES", "OUTPUT")
    POINTS, POINT_FIELDS, POINT_LOG, CATEGORIES, CATEGORY_FIELD, LINES, LINE_FIELD, LINE_SIGMA, EMBEDDED_VECTORS = (
        "POINTS", "POINT_FIELDS", "POINT_LOG", "CATEGORIES", "CATEGORY_FIELD", "LINES", "LINE_FIELD", "LINE_SIGMA",
        "EMBEDDED_VECTORS")

    def name(self) -> str:
        return "buildstack"

    def displayName(self) -> str:  # noqa: N802
        return "Build stack"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Rasterise mineral records per species and resample auxiliary rasters onto one grid (a projected "
                "CRS in metres): the multi-band GeoTIFF M3 trains on and infills. Empty inputs use the embedded "
                "CONUS data.\n\nVector layers as aux bands: point samples → one band per numeric field, log10 "
                "(values ≤ 0 dropped) and interpolated by inverse-distance weighting (1/d²) of the 8 nearest "
                "samples, plus the distance to the nearest sample (km); polygons → one 0/1 band per value of "
                "the category field (cell centre inside); lines → the attribute-weighted line density "
                "(attribute × km of line per km²), Gaussian-smoothed. Where no layer of a kind is chosen, "
                "the embedded one is used (soil C-horizon geochemistry of 15 elements, principal-aquifer rock "
                "type, Quaternary fault slip rate) unless 'Embedded vector layers' is unticked.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.RECORDS, "Records CSV (MinMod: lon, lat, commodities; or USGS MRDS); empty: the embedded records",
            PARAMETER_FILE, fileFilter="Records CSV (*.csv *.gz *.txt)", defaultValue=str(defaults.RECORDS),
            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.AUX, "Auxiliary rasters (empty: the embedded geophysics)", SOURCE_RASTER, optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.FAULTS, "Fault lines (distance-to-fault band)", [SOURCE_LINES],
            defaultValue=str(defaults.FAULTS), optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.OUTLINE, "Outline (valid cells); empty: the conterminous US", [SOURCE_POLYGONS],
            defaultValue=str(defaults.OUTLINE), optional=True))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Grid CRS (projected, metres)", defaults.GRID_CRS))
        self.addParameter(QgsProcessingParameterNumber(
            self.RESOLUTION, "Cell size (m)", NUMBER_DOUBLE, defaults.RESOLUTION_M,
            minValue=1.0))
        self.addParameter(QgsProcessingParameterString(
            self.SPECIES, "Species symbols (empty: the 10 defaults)", "", optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.POINTS, "Point samples (e.g. geochemistry): one band per field", [SOURCE_POINTS],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.POINT_FIELDS, "Numeric fields of the point samples", parentLayerParameterName=self.POINTS,
            type=NUMERIC_FIELD, allowMultiple=True, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.POINT_LOG, "log10 of the sample values (concentrations; values ≤ 0 dropped)", True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.CATEGORIES, "Category polygons (e.g. rock type): one 0/1 band per value",
            [SOURCE_POLYGONS], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CATEGORY_FIELD, "Category field", parentLayerParameterName=self.CATEGORIES, optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LINES, "Lines with a numeric attribute (e.g. fault slip rate): weighted line density",
            [SOURCE_LINES], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.LINE_FIELD, "Numeric field of the lines", parentLayerParameterName=self.LINES,
            type=NUMERIC_FIELD, optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.LINE_SIGMA, "Line density smoothing σ (km)", NUMBER_DOUBLE, 10.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.EMBEDDED_VECTORS, "Embedded vector layers where none is chosen above (soil geochemistry, aquifer "
            "rock type, fault slip rate)", True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Stack"))

    def _vector_specs(self, parameters, context) -> dict[str, list]:
        """The point-samples, categorical-polygons and line-attribute specs chosen in the dialog; an
        empty kind takes the embedded default when 'Embedded vector layers' is ticked."""
        from .core.data.vector_aux import CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec

        embedded = self.parameterAsBoolean(parameters, self.EMBEDDED_VECTORS, context)
        specs = {"point_samples": list(defaults.POINT_SAMPLES) if embedded else [],
                 "categorical_polygons": list(defaults.CATEGORICAL_POLYGONS) if embedded else [],
                 "line_attributes": list(defaults.LINE_ATTRIBUTES) if embedded else []}
        points = self.parameterAsVectorLayer(parameters, self.POINTS, context)
        if points is not None:
            fields = self.parameterAsFields(parameters, self.POINT_FIELDS, context)
            if not fields:
                raise QgsProcessingException(f"Choose the numeric fields of {points.name()} to grid.")
            path, lyr, where = _layer_file(points, context, "points")
            specs["point_samples"] = [PointSamplesSpec(path, tuple(fields), lyr, where,
                                                       self.parameterAsBoolean(parameters, self.POINT_LOG, context),
                                                       prefix=_band_prefix(points.name()))]
        polygons = self.parameterAsVectorLayer(parameters, self.CATEGORIES, context)
        if polygons is not None:
            field = self.parameterAsString(parameters, self.CATEGORY_FIELD, context)
            if not field:
                raise QgsProcessingException(f"Choose the category field of {polygons.name()}.")
            path, lyr, where = _layer_file(polygons, context, "categories")
            specs["categorical_polygons"] = [CategoricalPolygonsSpec(path, field, lyr, where)]
        lines = self.parameterAsVectorLayer(parameters, self.LINES, context)
        if lines is not None:
            field = self.parameterAsString(parameters, self.LINE_FIELD, context)
            if not field:
                raise QgsProcessingException(f"Choose the numeric field of {lines.name()}.")
            path, lyr, where = _layer_file(lines, context, "lines")
            specs["line_attributes"] = [LineAttributeSpec(path, field, lyr, where,
                                                          self.parameterAsDouble(parameters, self.LINE_SIGMA, context))]
        return specs

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        from .core.data.build_stack import build_stack
        from .core.data.species import SpeciesCatalog

        aux_layers = self.parameterAsLayerList(parameters, self.AUX, context)
        aux = [layer.source() for layer in aux_layers] or list(defaults.AUX_RASTERS)
        faults = _vector_file(self.parameterAsVectorLayer(parameters, self.FAULTS, context), context, "faults")
        outline = _vector_file(self.parameterAsVectorLayer(parameters, self.OUTLINE, context), context,
                               "outline") or str(defaults.OUTLINE)
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        catalog = SpeciesCatalog()
        species = _symbols(self.parameterAsString(parameters, self.SPECIES, context))
        if species:
            catalog = catalog.subset(species)
        records = self.parameterAsFile(parameters, self.RECORDS, context) or str(defaults.RECORDS)
        stack = build_stack(out, records=records, aux_rasters=aux,
                            faults=faults, outline=outline, crs=crs.authid() or crs.toWkt(),
                            resolution=self.parameterAsDouble(parameters, self.RESOLUTION, context),
                            catalog=catalog, progress=_progress(feedback),
                            **self._vector_specs(parameters, context))
        g = stack.grid
        feedback.pushInfo(f"{g.width} x {g.height} cells of {g.resolution:g} m; presence cells: "
                          + ", ".join(f"{k} {v}" for k, v in stack.presence_counts().items()))
        feedback.pushInfo("aux bands: " + ", ".join(stack.aux_names))
        return {self.OUTPUT: out}


class InfillAlgorithm(M3Algorithm):
    STACK, MODEL, MORE_MODELS, SPECIES, REGION, DRAWS, BATCH, DEVICE, OUTPUT = (
        "STACK", "MODEL", "MORE_MODELS", "SPECIES", "REGION", "DRAWS", "BATCH", "DEVICE", "OUTPUT")
    UNRECORDED = "UNRECORDED"

    def name(self) -> str:
        return "infill"

    def displayName(self) -> str:  # noqa: N802
        return "Infill minerals"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Hide species (and/or a region) of an M3 stack and let an ensemble of models × random mask draws "
                "predict them: a GeoTIFF with the mean probability (mean_<species>) and its standard deviation "
                "(std_<species>) per hidden species. With a region, only the region and half a tile of context "
                "around it are computed. 'Hide only the cells without a record' asks where the unrecorded "
                "minerals are: every record stays visible (and shows as probability 1 of its species).\n\n"
                + WHICH_MAP)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.STACK, "M3 stack (from Build stack)"))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model file (empty: the bundled model)", PARAMETER_FILE,
            fileFilter="M3 model (*.safetensors)",
            defaultValue=str(defaults.BUNDLED_MODEL) if defaults.BUNDLED_MODEL.exists() else None, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MORE_MODELS, "More model files for the ensemble (other seeds; ';'-separated)", "", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.SPECIES, "Species to hide (e.g. Au, Cu; empty: all, in the region)", "", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REGION, "Region to hide (polygons)", [SOURCE_POLYGONS], optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.UNRECORDED, "Hide only the cells without a record (in the region, if one is given)", False,
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.DRAWS, "Mask draws per model",
                                                       NUMBER_INTEGER, 10, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH, "Batch size (windows per forward pass)",
                                                       NUMBER_INTEGER, 8, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", ["Automatic (CUDA when available)",
                                                                             "CPU", "CUDA"], defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Mean probability and spread"))

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        from .core.masks.hiding import HideSpec, UnrecordedRegion
        from .core.inference.infer import infill
        from .core.inference.layer_inputs import as_region, region_grid, window_in
        from .core.model.model_file import read_ensemble_cards
        from .layer_sources import source_shapes
        from .core.data.prediction_io import band_names
        from .core.data.stack_sources import GeoTiffStackSource

        stack_layer = self.parameterAsRasterLayer(parameters, self.STACK, context)
        if stack_layer is None:
            raise QgsProcessingException("Choose an M3 stack raster (made by Build stack).")
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if not model and defaults.BUNDLED_MODEL.exists():  # scripts (processing.run) may leave it out
            model = str(defaults.BUNDLED_MODEL)
        if not model:
            raise QgsProcessingException("Choose a model file (.safetensors with its .json card): the bundled "
                                         "model is not installed.")
        models = [model] + [p for p in (self.parameterAsString(parameters, self.MORE_MODELS, context) or "")
                            .split(";") if p.strip()]
        source = self.parameterAsSource(parameters, self.REGION, context)
        region = as_region(source_shapes(source, source.sourceCrs(), "region")) if source is not None else None
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        from .core.output_paths import check_outputs
        check_outputs({"The output": out}, inputs={"the stack": stack_layer.source(), "the model": models})
        stack = GeoTiffStackSource(stack_layer.source())
        try:
            if region is not None:  # the region and its context only
                grid = region_grid(read_ensemble_cards(models)[0], region, stack.grid)
                stack_in = stack.read_window(*window_in(stack.grid, grid))
            else:
                stack_in = stack
            if self.parameterAsBoolean(parameters, self.UNRECORDED, context):
                region = UnrecordedRegion(stack_in, region)
            hide = HideSpec(tuple(_symbols(self.parameterAsString(parameters, self.SPECIES, context))), region)
            device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
            result = infill(stack_in, models, hide, draws=self.parameterAsInt(parameters, self.DRAWS, context),
                            batch_size=self.parameterAsInt(parameters, self.BATCH, context), device=device,
                            progress=_progress(feedback), out=out)
        finally:
            stack.close()
        feedback.pushInfo(f"{result.evaluations} evaluations on {result.device} in {result.seconds:.1f} s; "
                          f"{result.hide}; bands in the file's order: " + ", ".join(band_names(result.species)))
        _style_on_load(context, out, _StylePrediction,
                       f"M3 infill: {', '.join(result.species[:1])} mean probability" if result.species else "")
        return {self.OUTPUT: out}


class AuxMapAlgorithm(M3Algorithm):
    STACK, SPECIES, SEEDS, EXTENT, OUTPUT = "STACK", "SPECIES", "SEEDS", "EXTENT", "OUTPUT"

    def name(self) -> str:
        return "auxmap"

    def displayName(self) -> str:  # noqa: N802
        return "Aux-only map"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Per species, gradient boosting (scikit-learn) on the stack's aux bands and their local mean and "
                "spread, fitted to where that species' records are: the probability on every valid cell, with "
                "no record as input (mean_<species>, std_<species> over the seeds; the layout of Infill "
                "minerals). On M3's discovery test (README) this map ranks some held-out surveys' records "
                "better than M3's own maps: look at it beside M3's, or add the two with Combine maps. "
                + WHICH_MAP + "\n\n"
                "Extent (optional): map only the extent's cells, fitted on them and the cells around them (the "
                "extent grown on every side by its larger side, as the dock grows a hidden region); only that "
                "part of the stack is read. Empty: the whole stack.\n\n"
                "Time and memory: each fit learns from the cells holding a record (at most 200,000) and 300,000 "
                "random cells holding none, weighted back to their share; the map is predicted by strips of "
                "256 rows. Memory: the part of the stack read (about 4 bytes per aux band per cell), the map (8 "
                "bytes per species per cell) and at most about 1 GB more while a fit runs. Measured over the "
                "whole conterminous US (1-mile cells, 10 species, 1 seed): 6 min 41 s on one CPU core, 3.1 GiB "
                "at most.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        from qgis.core import QgsProcessingParameterExtent

        self.addParameter(QgsProcessingParameterRasterLayer(self.STACK, "M3 stack (from Build stack)"))
        self.addParameter(QgsProcessingParameterString(
            self.SPECIES, "Species (e.g. Au, Cu; empty: all the stack's)", "", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.SEEDS, "Fits per species (mean and spread over them)",
                                                       NUMBER_INTEGER, 1, minValue=1))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent to map (empty: the whole stack)", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Aux-only probability"))

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        from .core.inference.aux_map import make_aux_map, read_for_extent, sklearn_missing, write_aux_map
        from .core.output_paths import check_outputs

        if sklearn_missing():
            raise QgsProcessingException("The aux-only map needs scikit-learn, which QGIS's Python cannot import: "
                                         "install it (e.g. python3 -m pip install --user scikit-learn) and "
                                         "restart QGIS.")
        stack_layer = self.parameterAsRasterLayer(parameters, self.STACK, context)
        if stack_layer is None:
            raise QgsProcessingException("Choose an M3 stack raster (made by Build stack).")
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        check_outputs({"The output": out}, inputs={"the stack": stack_layer.source()})
        rect = self.parameterAsExtent(parameters, self.EXTENT, context, stack_layer.crs())
        extent = None if rect.isNull() or rect.isEmpty() else (
            rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        stack, window = read_for_extent(stack_layer.source(), extent)
        g = stack.grid
        feedback.pushInfo(f"Fitting on the CPU (scikit-learn) on {g.width} x {g.height} cells"
                          + (f"; mapping the extent's {window[3]} x {window[2]}." if window else "."))
        aux_map = make_aux_map(stack, _symbols(self.parameterAsString(parameters, self.SPECIES, context)),
                               self.parameterAsInt(parameters, self.SEEDS, context), progress=_progress(feedback),
                               window=window)
        write_aux_map(aux_map, stack, out)
        feedback.setProgress(100)
        feedback.pushInfo(f"aux-only map of {', '.join(aux_map.species)} from {len(stack.aux_names)} aux bands")
        _style_on_load(context, out, _StylePrediction, f"M3 aux-only map: {aux_map.species[0]}")
        return {self.OUTPUT: out}


class CombineMapsAlgorithm(M3Algorithm):
    MAPS, OUTPUT = "MAPS", "OUTPUT"

    def name(self) -> str:
        return "combinemaps"

    def displayName(self) -> str:  # noqa: N802
        return "Combine maps"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Per species, adds the log-odds of maps made on the same stack (e.g. Infill minerals' map and the "
                "Aux-only map): one ranking of the cells, each map's odds multiplied as independent evidence. "
                "Not a calibrated probability: it has no threshold and no spread (std_* bands empty).")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MAPS, "Maps (Infill minerals, Aux-only map) on the same stack", SOURCE_RASTER))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Combined map"))

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        from .core.inference.combine import combine_predictions
        from .core.output_paths import check_outputs

        maps = [layer.source() for layer in self.parameterAsLayerList(parameters, self.MAPS, context)]
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        check_outputs({"The output": out}, inputs={"the maps": maps})
        species = combine_predictions(maps, out)
        feedback.pushInfo(f"{len(maps)} maps combined (sum of log-odds) for {', '.join(species)}")
        _style_on_load(context, out, _StylePrediction, f"M3 combined map: {species[0]}")
        return {self.OUTPUT: out}


class ClustersAlgorithm(M3Algorithm):
    PREDICTION, SITES, FIELD, STACK, THRESHOLD, MIN_AREA, MIN_DISTANCE, SPECIES, OUTPUT = (
        "PREDICTION", "SITES", "FIELD", "STACK", "THRESHOLD", "MIN_AREA", "MIN_DISTANCE", "SPECIES", "OUTPUT")
    NAME_FIELD = "NAME_FIELD"

    def name(self) -> str:
        return "clusters"

    def displayName(self) -> str:  # noqa: N802
        return "Find clusters"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Connected regions of an infill's mean probability at or above the threshold, at least the minimum "
                "area, with no known site of that species within the minimum distance: where the model expects a "
                "mineral nobody recorded. Known sites (the rule the dock and the CLI use too): a point layer with a "
                "commodity field (a multipoint counts as its first point); else the stack's records when it was "
                "built from the embedded ones, otherwise its presence cells; else the embedded records.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, "Infill result (Infill minerals)"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.SITES, "Known sites (points)", [SOURCE_POINTS], optional=True))
        self.addParameter(QgsProcessingParameterField(self.FIELD, "Commodity field of the known sites",
                                                      parentLayerParameterName=self.SITES, optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.NAME_FIELD, "Name field of the known sites (labels the clusters; empty: a field called name)",
            parentLayerParameterName=self.SITES, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.STACK, "Or: the stack whose presence cells are the known sites", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.THRESHOLD, "Probability threshold (empty: the models')", NUMBER_DOUBLE,
            optional=True, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (km²)",
                                                       NUMBER_DOUBLE, 25.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_DISTANCE, "No known site closer than (km)",
                                                       NUMBER_DOUBLE, 10.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterString(self.SPECIES, "Species (empty: all in the result)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Clusters", SOURCE_POLYGONS, defaultValue="TEMPORARY_OUTPUT"))
        self.addOutput(QgsProcessingOutputNumber("COUNT", "Number of clusters"))

    def _known_sites(self, parameters, context, grid, species):
        """Known sites by core's one rule (:func:`core.inference.clusters.known_sites`) from this algorithm's inputs."""
        from .core.inference.clusters import known_sites
        from .core.data.features import guess_commodity_field
        from .core.data.stack_sources import GeoTiffStackSource
        from .layer_sources import site_points

        sites = self.parameterAsSource(parameters, self.SITES, context)
        if sites is not None:
            field = (self.parameterAsString(parameters, self.FIELD, context)
                     or guess_commodity_field([f.name() for f in sites.fields()]))
            if sites.fields().indexOf(field) < 0:
                raise QgsProcessingException("Choose the known sites' commodity field.")
            name_field = self.parameterAsString(parameters, self.NAME_FIELD, context) or None
            points = site_points(sites, sites.sourceCrs(), field, name_field, name="sites")
            return known_sites(grid, species, points=points)[0]
        stack_layer = self.parameterAsRasterLayer(parameters, self.STACK, context)
        if stack_layer is not None:
            with GeoTiffStackSource(stack_layer.source()) as source:
                return known_sites(grid, species, stack=source)[0]
        return known_sites(grid, species)[0]

    def process(self, parameters, context, feedback) -> dict[str, Any]:
        from .core.inference.clusters import find_clusters, summary, write_clusters
        from .core.data.prediction_io import prediction_threshold, read_prediction_info

        layer = self.parameterAsRasterLayer(parameters, self.PREDICTION, context)
        if layer is None:
            raise QgsProcessingException("Choose an infill result (a GeoTIFF made by Infill minerals).")
        grid, species, meta = read_prediction_info(layer.source())
        threshold = prediction_threshold(meta, self.parameterAsDouble(parameters, self.THRESHOLD, context)
                                         if parameters.get(self.THRESHOLD) not in (None, "") else None)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".gpkg"):
            raise QgsProcessingException(f"Write the clusters to a GeoPackage (.gpkg), not {out}.")
        from .core.output_paths import check_outputs
        check_outputs({"The output": out}, inputs={"the infill result": layer.source()})
        sites = self._known_sites(parameters, context, grid, species)
        feedback.setProgress(20)
        chosen = _symbols(self.parameterAsString(parameters, self.SPECIES, context)) or None
        min_area = self.parameterAsDouble(parameters, self.MIN_AREA, context)
        min_dist = self.parameterAsDouble(parameters, self.MIN_DISTANCE, context)
        clusters = find_clusters(layer.source(), sites, threshold, min_area, min_dist, chosen)
        write_clusters(clusters, out, grid.crs, {"prediction": layer.source(), "threshold": threshold,
                                                  "min_area_km2": min_area, "min_distance_km": min_dist})
        feedback.pushInfo(summary(clusters))
        _style_on_load(context, out, _StyleClusters)
        return {self.OUTPUT: out, "COUNT": len(clusters)}


class M3ProcessingProvider(QgsProcessingProvider):
    """Provider id ``m3``: algorithms ``m3:buildstack``, ``m3:infill``, ``m3:auxmap``, ``m3:combinemaps``,
    ``m3:clusters``."""

    def id(self) -> str:
        return "m3"

    def name(self) -> str:
        return "M3 mineral infill"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802
        for alg in (BuildStackAlgorithm(), InfillAlgorithm(), AuxMapAlgorithm(), CombineMapsAlgorithm(),
                    ClustersAlgorithm()):
            self.addAlgorithm(alg)
