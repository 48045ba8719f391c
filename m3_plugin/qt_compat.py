"""QGIS enum values whose scoped name differs between QGIS 3.22 and newer QGIS (3.30+, QGIS 4 on Qt 6).

Newer QGIS moved these enums into ``Qgis`` (``Qgis.GeometryType.Polygon`` for
``QgsWkbTypes.GeometryType.PolygonGeometry``); each name here takes the newer value where it exists,
else the QGIS 3.22 one. Qt's own scoped enums (``Qt.AlignmentFlag.AlignTop``) are the same in PyQt5
and PyQt6 and are written in place."""
from __future__ import annotations

from qgis.core import (Qgis, QgsColorRampShader, QgsMapLayerProxyModel, QgsProcessing, QgsProcessingParameterField,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber, QgsWkbTypes)

if hasattr(Qgis, "GeometryType"):  # QGIS >= 3.30
    POINT_GEOMETRY = Qgis.GeometryType.Point
    LINE_GEOMETRY = Qgis.GeometryType.Line
    POLYGON_GEOMETRY = Qgis.GeometryType.Polygon
else:
    POINT_GEOMETRY = QgsWkbTypes.GeometryType.PointGeometry
    LINE_GEOMETRY = QgsWkbTypes.GeometryType.LineGeometry
    POLYGON_GEOMETRY = QgsWkbTypes.GeometryType.PolygonGeometry

if hasattr(Qgis, "WkbType"):  # QGIS >= 3.30
    WKB_POINT = Qgis.WkbType.Point
    WKB_MULTIPOINT = Qgis.WkbType.MultiPoint
else:
    WKB_POINT = QgsWkbTypes.Type.Point
    WKB_MULTIPOINT = QgsWkbTypes.Type.MultiPoint

if hasattr(Qgis, "LayerFilter"):  # QGIS >= 3.34
    POINT_LAYERS = Qgis.LayerFilter.PointLayer
    LINE_LAYERS = Qgis.LayerFilter.LineLayer
    POLYGON_LAYERS = Qgis.LayerFilter.PolygonLayer
    RASTER_LAYERS = Qgis.LayerFilter.RasterLayer
else:
    POINT_LAYERS = QgsMapLayerProxyModel.Filter.PointLayer
    LINE_LAYERS = QgsMapLayerProxyModel.Filter.LineLayer
    POLYGON_LAYERS = QgsMapLayerProxyModel.Filter.PolygonLayer
    RASTER_LAYERS = QgsMapLayerProxyModel.Filter.RasterLayer

if hasattr(Qgis, "ProcessingSourceType"):  # QGIS >= 3.36
    SOURCE_RASTER = Qgis.ProcessingSourceType.Raster
    SOURCE_POINTS = Qgis.ProcessingSourceType.VectorPoint
    SOURCE_LINES = Qgis.ProcessingSourceType.VectorLine
    SOURCE_POLYGONS = Qgis.ProcessingSourceType.VectorPolygon
    NUMBER_INTEGER = Qgis.ProcessingNumberParameterType.Integer
    NUMBER_DOUBLE = Qgis.ProcessingNumberParameterType.Double
    PARAMETER_FILE = Qgis.ProcessingFileParameterBehavior.File
    NUMERIC_FIELD = Qgis.ProcessingFieldParameterDataType.Numeric
else:
    SOURCE_RASTER = QgsProcessing.SourceType.TypeRaster
    SOURCE_POINTS = QgsProcessing.SourceType.TypeVectorPoint
    SOURCE_LINES = QgsProcessing.SourceType.TypeVectorLine
    SOURCE_POLYGONS = QgsProcessing.SourceType.TypeVectorPolygon
    NUMBER_INTEGER = QgsProcessingParameterNumber.Type.Integer
    NUMBER_DOUBLE = QgsProcessingParameterNumber.Type.Double
    PARAMETER_FILE = QgsProcessingParameterFile.Behavior.File
    NUMERIC_FIELD = QgsProcessingParameterField.DataType.Numeric

if hasattr(Qgis, "ShaderInterpolationMethod"):  # QGIS >= 3.30
    SHADER_DISCRETE = Qgis.ShaderInterpolationMethod.Discrete
    SHADER_LINEAR = Qgis.ShaderInterpolationMethod.Linear
else:
    SHADER_DISCRETE = QgsColorRampShader.Type.Discrete
    SHADER_LINEAR = QgsColorRampShader.Type.Interpolated
