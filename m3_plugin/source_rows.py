"""The dock's rows that say where each input comes from: a species' presence (raster band or point
layer with a commodity field) and each aux band the model expects (raster band or line layer)."""
from __future__ import annotations

from typing import Optional

from qgis.core import QgsMapLayer, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QLabel, QSizePolicy, QWidget

from . import layer_sources as ls
from .qt_compat import LINE_LAYERS, POINT_LAYERS, RASTER_LAYERS


def _compact_combo(parent: QWidget) -> QComboBox:
    """A combo box that does not widen the dock to its longest item (band descriptions are long)."""
    combo = QComboBox(parent)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(4)
    return combo


def _compact(combo: QComboBox, chars: int = 10) -> QComboBox:
    """Keep a (layer) combo box from widening the dock to its longest item."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


class MineralRow:
    """One species: hide it or not, and where its presence comes from (raster band or point field)."""

    def __init__(self, symbol: str, parent: QWidget) -> None:
        self.symbol = symbol
        self.hide = QCheckBox(symbol, parent)
        self.hide.setObjectName(f"m3Hide_{symbol}")
        self.hide.setToolTip(f"Hide {symbol} in the region: the model predicts it from everything else.")
        self.layer = QgsMapLayerComboBox(parent)
        self.layer.setFilters(RASTER_LAYERS | POINT_LAYERS)
        self.layer.setAllowEmptyLayer(True)
        self.layer.setLayer(None)
        _compact(self.layer, 4)
        self.layer.setToolTip(f"Where {symbol}'s known occurrences come from: a presence raster, or a point "
                              "layer of records.")
        self.choice = _compact_combo(parent)
        self.choice.setToolTip(f"The raster band holding {symbol}'s presence, or the point layer's commodity "
                               "field.")
        self.auto = True
        self.layer.layerChanged.connect(self._layer_changed)

    def _layer_changed(self, layer: Optional[QgsMapLayer]) -> None:
        self.choice.clear()
        if isinstance(layer, QgsRasterLayer):
            want = f"presence_{self.symbol}"
            for band, label in ls.raster_bands(layer):
                self.choice.addItem(label, band)
                if ls.band_description(layer, band) == want:
                    self.choice.setCurrentIndex(self.choice.count() - 1)
        elif isinstance(layer, QgsVectorLayer):
            for f in layer.fields():
                self.choice.addItem(f.name(), f.name())
            guess = ls.commodity_field(layer)
            if guess:
                self.choice.setCurrentIndex(self.choice.findData(guess))

    def set_source(self, layer: Optional[QgsMapLayer], choice=None, auto: bool = False) -> None:
        self.layer.setLayer(layer)
        if choice is not None:
            i = self.choice.findData(choice)
            if i >= 0:
                self.choice.setCurrentIndex(i)
        self.auto = auto


class AuxRow:
    """One aux band the model expects: a raster layer (and band) or a line layer (distance to lines)."""

    def __init__(self, name: str, parent: QWidget) -> None:
        self.name = name
        self.label = QLabel(name, parent)
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.layer = QgsMapLayerComboBox(parent)
        self.layer.setFilters(RASTER_LAYERS | LINE_LAYERS)
        self.layer.setAllowEmptyLayer(True)
        self.layer.setLayer(None)
        _compact(self.layer, 4)
        self.layer.setToolTip(f"The raster (or line layer, for a distance band) the model reads as '{name}'.")
        self.band = _compact_combo(parent)
        self.band.setToolTip(f"The band of the raster that holds '{name}'.")
        self.auto = True
        self.layer.layerChanged.connect(self._layer_changed)

    def _layer_changed(self, layer: Optional[QgsMapLayer]) -> None:
        self.band.clear()
        if isinstance(layer, QgsRasterLayer):
            for band, label in ls.raster_bands(layer):
                self.band.addItem(label, band)
                if ls.band_description(layer, band) == f"aux_{self.name}":
                    self.band.setCurrentIndex(self.band.count() - 1)
        elif isinstance(layer, QgsVectorLayer):
            self.band.addItem("distance to lines (km)", 0)

    def set_source(self, layer: Optional[QgsMapLayer], band: Optional[int] = None, auto: bool = False) -> None:
        self.layer.setLayer(layer)
        if band is not None and self.band.findData(band) >= 0:
            self.band.setCurrentIndex(self.band.findData(band))
        self.auto = auto
