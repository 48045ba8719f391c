"""M3 Masked Mineral Modeling: the QGIS plugin. QGIS calls :func:`classFactory` to load it.

The science lives in ``m3_plugin.core`` (the repository's ``core/``, shipped inside the plugin);
this package holds only the QGIS side. Import it as ``from .core.xxx import ...``, never as a
top-level ``core``, so that the plugin cannot clash with another plugin's ``core`` package.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """Create the plugin for the QGIS interface ``iface``."""
    from .dependencies import activate

    activate()  # the packages the dock's Install put in the plugin's folder on the profile
    from .plugin import M3Plugin

    return M3Plugin(iface)
