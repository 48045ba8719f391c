"""The plugin object QGIS holds: a toolbar/menu action that shows and hides the M3 dock, and the
M3 Processing provider."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .dock import M3Dock

PLUGIN_DIR = Path(__file__).resolve().parent
ICON_PATH = PLUGIN_DIR / "resources" / "icons" / "m3.png"
MENU = "&M3"
PROCESSING_NEEDS = ("numpy", "scipy", "rasterio")  # to load the provider; infill also needs torch


class M3Plugin:
    """Adds the "M3 mineral infill" action; the dock is created the first time it is shown."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: Optional[QAction] = None
        self.dock: Optional[M3Dock] = None
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 (name fixed by QGIS)
        """Register the M3 algorithms in the Processing toolbox (metadata: hasProcessingProvider=yes)."""
        from qgis.core import Qgis, QgsApplication, QgsMessageLog

        from .dependencies import missing_message, missing_packages

        missing = [m for m in missing_packages() if m in PROCESSING_NEEDS]
        if missing:  # the dock says the same; the algorithms cannot even load without these
            QgsMessageLog.logMessage(f"M3 Processing algorithms not loaded: {missing_message(missing)}", "M3",
                                     Qgis.MessageLevel.Warning)
            return
        from .processing_provider import M3ProcessingProvider

        if self.provider is None:
            self.provider = M3ProcessingProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (name fixed by QGIS)
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON_PATH)), M3Dock.TITLE, self.iface.mainWindow())
        self.action.setObjectName("m3ShowDock")
        self.action.setCheckable(True)
        self.action.triggered.connect(self.show_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)

    def show_dock(self, visible: bool = True) -> None:
        """Show or hide the dock, creating it on first use."""
        if self.dock is None:
            if not visible:
                return
            self.dock = M3Dock(self.iface)
            self.dock.visibilityChanged.connect(self._sync_action)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.setVisible(visible)
        if visible:
            self.dock.raise_()

    def _sync_action(self, visible: bool) -> None:
        # setChecked does not emit `triggered`, so this cannot loop back into show_dock.
        if self.action is not None:
            self.action.setChecked(visible)

    def unload(self) -> None:
        """Remove the action, the menu entry, the dock and the Processing provider."""
        if self.dock is not None:
            self.dock.save_settings()
            self.dock.close_down()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            from qgis.core import QgsApplication

            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
