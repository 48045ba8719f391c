"""How M3's layers look, in one place for the dock and the Processing outputs: presence cells,
probability (legend naming the species and marking the threshold, transparent well below it),
uncertainty, known sites, outlines and clusters (by species, labelled)."""
from __future__ import annotations

from typing import Optional, Sequence

from qgis.core import (QgsBilinearRasterResampler, QgsCategorizedSymbolRenderer, QgsColorRampShader,
                       QgsFillSymbol, QgsMapLayerLegend, QgsMarkerSymbol, QgsPalLayerSettings, QgsRasterLayer,
                       QgsRasterShader, QgsRasterSymbolLegendNode, QgsSimpleLegendNode,
                       QgsRendererCategory, QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer,
                       QgsTextBufferSettings, QgsTextFormat, QgsVectorLayer, QgsVectorLayerSimpleLabeling)
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QColor

from .qt_compat import SHADER_DISCRETE, SHADER_LINEAR

# yellow → orange → dark red (ColorBrewer YlOrRd), reached at probability 1
PROBABILITY_COLOURS = ((255, 255, 178), (254, 204, 92), (253, 141, 60), (240, 59, 32), (189, 0, 38))
# flagged cells: saturated from the threshold up, so that a few flagged 1-mile cells show at a region's scale
FLAGGED_COLOURS = ((253, 141, 60), (240, 59, 32), (189, 0, 38), (128, 0, 38))
UNCERTAINTY_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))  # viridis
# one colour per species for clusters (ColorBrewer Set1 + Dark2), cycled
SPECIES_COLOURS = ((228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
                   (166, 86, 40), (247, 129, 191), (27, 158, 119), (117, 112, 179), (102, 166, 30))
SITE_COLOUR = QColor(20, 20, 20)


class TitledRasterLegend(QgsMapLayerLegend):
    """A raster legend under a title of ours ("Au: probability of presence") instead of QGIS's band
    header ("Band 1: mean_Au (Gray)"); a transparent class is listed without a swatch."""

    def __init__(self, title: str, items: list[tuple[str, QColor]]) -> None:
        super().__init__()
        self.title = title
        self.items = items

    def createLayerTreeModelLegendNodes(self, node_layer):  # noqa: N802 (QGIS API)
        nodes = [QgsSimpleLegendNode(node_layer, self.title)]
        for label, colour in self.items:
            if colour.alpha() == 0:
                nodes.append(QgsSimpleLegendNode(node_layer, label))
            else:
                nodes.append(QgsRasterSymbolLegendNode(node_layer, colour, label))
        for node in nodes:  # the layer tree model owns them, not Python
            sip.transferto(node, None)
        return nodes


def set_titled_legend(layer: QgsRasterLayer, title: str, items) -> None:
    """Give ``layer`` a :class:`TitledRasterLegend` of its colour-ramp ``items`` (QGIS owns it)."""
    layer.setLegend(TitledRasterLegend(title, [(i.label, QColor(i.color)) for i in items]))


def _pseudocolor(layer: QgsRasterLayer, band: int, items: list[QgsColorRampShader.ColorRampItem],
                 minimum: float, maximum: float, discrete: bool = False, smooth: bool = False) -> None:
    fn = QgsColorRampShader(minimum, maximum)
    fn.setColorRampType(SHADER_DISCRETE if discrete else SHADER_LINEAR)
    fn.setClip(False)
    fn.setColorRampItemList(items)
    try:  # QGIS >= 3.18: list the labelled items, not a gradient bar with bare numbers
        legend = fn.legendSettings()
        legend.setUseContinuousLegend(False)
        fn.setLegendSettings(legend)
    except AttributeError:
        pass
    shader = QgsRasterShader(minimum, maximum)
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(minimum)
    renderer.setClassificationMax(maximum)
    layer.setRenderer(renderer)
    if smooth and layer.resampleFilter() is not None:  # no blocky cells when zoomed in
        layer.resampleFilter().setZoomedInResampler(QgsBilinearRasterResampler())
    layer.triggerRepaint()


def style_presence(layer: QgsRasterLayer, band: int = 1) -> None:
    """Presence cells dark red, the rest transparent."""
    _pseudocolor(layer, band, [QgsColorRampShader.ColorRampItem(0.5, QColor(0, 0, 0, 0), "absent"),
                               QgsColorRampShader.ColorRampItem(float("inf"), QColor(150, 20, 20), "present")],
                 0.0, 1.0, discrete=True)


def probability_items(species: str, threshold: float, top: float = 1.0) -> list[QgsColorRampShader.ColorRampItem]:
    """Transparent below half the threshold, fading in up to the threshold, then orange to dark red up to
    ``top`` (the highest value of the run's map, so that the flagged cells use the whole ramp); the
    labels name the species, mark the threshold and say what the top is, never "certain"."""
    top = max(float(top) if top == top else 1.0, threshold + 1e-6)
    low = max(0.0, threshold / 2)
    items = [QgsColorRampShader.ColorRampItem(0.0, QColor(255, 255, 178, 0), "0: not drawn"),
             QgsColorRampShader.ColorRampItem(low, QColor(255, 255, 178, 0), f"{low:.3g}: faint below the threshold")]
    steps = len(FLAGGED_COLOURS)
    for i, rgb in enumerate(FLAGGED_COLOURS):
        # spaced by ratio: flagged values crowd near the threshold, and each step gets its share of colour
        value = threshold + (top - threshold) * i / (steps - 1) if threshold <= 0 else \
            threshold * (top / threshold) ** (i / (steps - 1))
        if i == 0:
            label = f"{value:.3g}: threshold, {species} flagged at or above"
        elif i == steps - 1:
            label = f"{value:.3g}: highest {species} value of this map"
        else:
            label = f"{value:.3g}"
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(*rgb, 235), label))
    return items


def style_probability(layer: QgsRasterLayer, threshold: float, band: int = 1, species: str = "",
                      top: float = 1.0, calibrated: bool = False) -> None:
    """The mean probability of ``species`` (see :func:`probability_items`); the legend's title says
    whether the numbers are calibrated probabilities (the model card decides)."""
    species = species or _band_species(layer, band, "mean_") or "mineral"
    items = probability_items(species, threshold, top)
    _pseudocolor(layer, band, items, 0.0, max(top, threshold), smooth=True)
    what = ("probability that a 1-mile cell holds a recorded site (calibrated)" if calibrated
            else "model score (not a calibrated probability)")
    set_titled_legend(layer, f"{species}: {what}", items)


def style_ranking(layer: QgsRasterLayer, band: int, species: str, low: float, high: float) -> None:
    """A map that ranks cells, not a calibrated probability (the aux-only map): transparent below
    ``low`` (the region's median), then YlOrRd up to ``high`` (its 99th percentile)."""
    high = max(high, low + 1e-9)
    steps = len(PROBABILITY_COLOURS)
    items = [QgsColorRampShader.ColorRampItem(low, QColor(255, 255, 178, 0), "below the region's median")]
    for i, rgb in enumerate(PROBABILITY_COLOURS):
        value = low + (high - low) * (i + 1) / steps
        label = ("top 1 % of the region" if i == steps - 1 else
                 "above the region's median" if i == 0 else "")
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(*rgb, 220), label))
    _pseudocolor(layer, band, items, low, high, smooth=True)
    set_titled_legend(layer, f"{species}: aux-only map (ranks cells)", items)


def style_uncertainty(layer: QgsRasterLayer, maximum: float, band: int = 1, species: str = "") -> None:
    """Viridis from 0 (transparent) to ``maximum``, labelled with two significant digits."""
    maximum = max(maximum, 1e-6)
    species = species or _band_species(layer, band, "std_") or ""
    steps = len(UNCERTAINTY_COLOURS)
    items = [QgsColorRampShader.ColorRampItem(0.0, QColor(*UNCERTAINTY_COLOURS[0], 0), "0: draws agree")]
    for i, rgb in enumerate(UNCERTAINTY_COLOURS[1:], start=1):
        value = maximum * i / (steps - 1)
        label = f"± {value:.2g}"
        if i == steps - 1:
            label += f": largest spread{' of ' + species if species else ''} between draws"
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(*rgb, 200), label))
    _pseudocolor(layer, band, items, 0.0, maximum, smooth=True)
    set_titled_legend(layer, f"{species + ': ' if species else ''}spread between draws (std)", items)


def _band_names(layer: QgsRasterLayer) -> list[str]:
    from .layer_sources import band_description

    return [band_description(layer, b) for b in range(1, layer.bandCount() + 1)]


def _band_species(layer: QgsRasterLayer, band: int, prefix: str) -> str:
    names = _band_names(layer)
    name = names[band - 1] if 0 < band <= len(names) else ""
    return name[len(prefix):] if name.startswith(prefix) else ""


def style_prediction_layer(layer: QgsRasterLayer, species: Optional[str] = None,
                           threshold: Optional[float] = None) -> bool:
    """Style an M3 prediction GeoTIFF (bands mean_<sp>, std_<sp>) as the probability of ``species``
    (default: its first) at ``threshold`` (default: the one in the file's tags, else 0.5). The dock and
    the Processing outputs both call this. False when the layer is not an M3 prediction."""
    names = _band_names(layer)
    means = [n[len("mean_"):] for n in names if n.startswith("mean_")]
    if not means:
        return False
    species = species if species in means else means[0]
    if threshold is None:
        threshold = prediction_threshold(layer.source())
    band = names.index(f"mean_{species}") + 1
    top = layer.dataProvider().bandStatistics(band).maximumValue
    style_probability(layer, threshold, band, species, top=top if 0 < top <= 1 else 1.0,
                      calibrated=prediction_scale(layer.source()) == "calibrated")
    return True


def prediction_scale(path: str) -> str:
    """"calibrated" when the prediction GeoTIFF says its probabilities are calibrated."""
    try:
        import rasterio

        with rasterio.open(path) as src:
            return str(src.tags().get("probability_scale", "model score"))
    except Exception:  # noqa: BLE001 — an unreadable file is styled as uncalibrated
        return "model score"


def prediction_threshold(path: str, default: float = 0.5) -> float:
    """The threshold an infill wrote into its prediction GeoTIFF."""
    try:
        from .core.data.prediction_io import prediction_threshold as threshold_of
        from .core.data.prediction_io import read_prediction_info

        return threshold_of(read_prediction_info(path)[2])
    except Exception:  # noqa: BLE001 (not an M3 file, or unreadable tags: the default)
        return default


def style_outline(layer: QgsVectorLayer, colour: QColor, width_mm: float = 0.8, dashed: bool = False) -> None:
    """Polygons drawn as an outline only."""
    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": colour.name(),
                                         "outline_width": str(width_mm),
                                         "outline_style": "dash" if dashed else "solid"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def species_colour(species: str, species_list: Sequence[str]) -> QColor:
    i = list(species_list).index(species) if species in species_list else abs(hash(species))
    return QColor(*SPECIES_COLOURS[i % len(SPECIES_COLOURS)])


def style_clusters(layer: QgsVectorLayer, species_list: Sequence[str] = (), label_field: str = "") -> None:
    """Discovered clusters: one outline colour per species (field ``species``), light fill, labelled
    with ``label_field`` (e.g. the nearest known site's name) when the layer has it."""
    idx = layer.fields().indexOf("species")
    values = sorted({str(v) for v in layer.uniqueValues(idx)}) if idx >= 0 else []
    order = list(species_list) or values
    categories = []
    for sp in values or order:
        c = species_colour(sp, order)
        symbol = QgsFillSymbol.createSimple({"color": f"{c.red()},{c.green()},{c.blue()},50",
                                             "outline_color": c.name(), "outline_width": "0.6"})
        categories.append(QgsRendererCategory(sp, symbol, f"{sp} cluster"))
    if idx >= 0 and categories:
        layer.setRenderer(QgsCategorizedSymbolRenderer("species", categories))
    else:
        layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {"color": "0,200,230,60", "outline_color": "0,120,160", "outline_width": "0.6"})))
    if label_field and layer.fields().indexOf(label_field) >= 0:
        label_layer(layer, label_field)
    layer.triggerRepaint()


def label_layer(layer: QgsVectorLayer, field: str, size: float = 8.0) -> None:
    """Label the features with ``field`` (dark text in a white halo)."""
    settings = QgsPalLayerSettings()
    settings.fieldName = field
    settings.enabled = True
    fmt = QgsTextFormat()
    fmt.setSize(size)
    fmt.setColor(QColor(30, 30, 30))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    buffer.setColor(QColor(255, 255, 255))
    fmt.setBuffer(buffer)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def style_sites(layer: QgsVectorLayer, size_mm: float = 0.9, colour: QColor = QColor(255, 255, 255),
                hollow: bool = False) -> None:
    """Known sites: small dark-rimmed dots; ``hollow``: rings of ``colour`` in a dark rim, through
    which the probability underneath stays visible."""
    fill = "0,0,0,0" if hollow else f"{colour.red()},{colour.green()},{colour.blue()}"
    symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": fill, "outline_color": SITE_COLOUR.name(),
                                           "outline_width": "0.25", "size": str(size_mm)})
    if hollow:  # a coloured ring inside the dark rim
        ring = QgsMarkerSymbol.createSimple({"name": "circle", "color": "0,0,0,0", "outline_color": colour.name(),
                                             "outline_width": "0.35", "size": str(max(0.4, size_mm - 0.5))})
        symbol.appendSymbolLayer(ring.symbolLayer(0).clone())
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()
