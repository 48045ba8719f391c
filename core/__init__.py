"""M3 core: data stack, masked training, inference. Never imports Qt or qgis.

All imports inside this package are relative, so that the QGIS plugin can ship it as
``m3_plugin.core`` without clashing with other plugins' top-level ``core`` packages.
"""

__version__ = "0.6.0"  # the plugin version of metadata.txt
