"""How M3's layers look: presence cells, probability (transparent at low values), uncertainty,
outlines and clusters."""
from __future__ import annotations

from qgis.core import (QgsColorRampShader, QgsFillSymbol, QgsMarkerSymbol, QgsRasterLayer, QgsRasterShader,
                       QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor

# yellow → orange → dark red (ColorBrewer YlOrRd), reached at probability 1
PROBABILITY_COLOURS = ((255, 255, 178), (254, 204, 92), (253, 141, 60), (240, 59, 32), (189, 0, 38))
UNCERTAINTY_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))  # viridis


def _pseudocolor(layer: QgsRasterLayer, band: int, items: list[QgsColorRampShader.ColorRampItem],
                 minimum: float, maximum: float, discrete: bool = False) -> None:
    fn = QgsColorRampShader(minimum, maximum)
    fn.setColorRampType(QgsColorRampShader.Discrete if discrete else QgsColorRampShader.Interpolated)
    fn.setClip(False)
    fn.setColorRampItemList(items)
    shader = QgsRasterShader(minimum, maximum)
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(minimum)
    renderer.setClassificationMax(maximum)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_presence(layer: QgsRasterLayer, band: int = 1) -> None:
    """Presence cells dark red, the rest transparent."""
    _pseudocolor(layer, band, [QgsColorRampShader.ColorRampItem(0.5, QColor(0, 0, 0, 0), "absent"),
                               QgsColorRampShader.ColorRampItem(float("inf"), QColor(150, 20, 20), "present")],
                 0.0, 1.0, discrete=True)


def style_probability(layer: QgsRasterLayer, threshold: float, band: int = 1) -> None:
    """Transparent below half the threshold, fading in up to the threshold, then YlOrRd to 1."""
    low = max(0.0, threshold / 2)
    items = [QgsColorRampShader.ColorRampItem(0.0, QColor(255, 255, 178, 0), "0"),
             QgsColorRampShader.ColorRampItem(low, QColor(255, 255, 178, 0), f"{low:.2f}")]
    steps = len(PROBABILITY_COLOURS)
    for i, rgb in enumerate(PROBABILITY_COLOURS):
        value = threshold + (1.0 - threshold) * i / (steps - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(*rgb, 220), f"{value:.2f}"))
    _pseudocolor(layer, band, items, 0.0, 1.0)


def style_uncertainty(layer: QgsRasterLayer, maximum: float, band: int = 1) -> None:
    """Viridis from 0 (transparent) to ``maximum``."""
    maximum = max(maximum, 1e-6)
    steps = len(UNCERTAINTY_COLOURS)
    items = [QgsColorRampShader.ColorRampItem(0.0, QColor(*UNCERTAINTY_COLOURS[0], 0), "0")]
    for i, rgb in enumerate(UNCERTAINTY_COLOURS[1:], start=1):
        value = maximum * i / (steps - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(*rgb, 200), f"{value:.3f}"))
    _pseudocolor(layer, band, items, 0.0, maximum)


def style_outline(layer: QgsVectorLayer, colour: QColor, width_mm: float = 0.8, dashed: bool = False) -> None:
    """Polygons drawn as an outline only."""
    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": colour.name(),
                                         "outline_width": str(width_mm),
                                         "outline_style": "dash" if dashed else "solid"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def style_clusters(layer: QgsVectorLayer) -> None:
    """Discovered clusters: cyan outline over a light cyan fill."""
    symbol = QgsFillSymbol.createSimple({"color": "0,200,230,60", "outline_color": "0,120,160",
                                         "outline_width": "0.6"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def style_sites(layer: QgsVectorLayer) -> None:
    """Known sites: small black-rimmed white dots, visible over the probability map."""
    symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": "255,255,255", "outline_color": "0,0,0",
                                           "outline_width": "0.1", "size": "0.9"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()
