"""The M3 dock widget: where the user sets up and runs an infill."""
from __future__ import annotations

from typing import Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget

from .dependencies import install_hint, missing_message, missing_packages


def device_text() -> str:
    """Which torch device an infill would run on, or what to install when torch is missing."""
    missing = missing_packages()
    if "torch" in missing:
        return missing_message(missing)
    try:
        from .core.models import pick_device  # imports torch: only once it is known to be there
    except (ImportError, OSError) as err:  # e.g. a torch build that does not fit this system
        return f"torch does not load in QGIS's Python ({err}). Reinstall it. {install_hint(['torch'])}"

    text = f"Device: {pick_device()[1]}"
    if missing:
        text += "\n" + missing_message(missing)
    return text


class M3Dock(QDockWidget):
    """Dock titled "M3 mineral infill"; for now it shows the device infill would use."""

    TITLE = "M3 mineral infill"

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(self.TITLE, parent)
        self.setObjectName("M3Dock")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        self.device_label = QLabel(device_text(), body)
        self.device_label.setObjectName("m3DeviceLabel")
        self.device_label.setWordWrap(True)
        self.device_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.device_label)
        layout.addStretch(1)
        self.setWidget(body)
