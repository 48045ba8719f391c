"""The user guide shown by the dock's Help button: the QGIS plugin section of the README that the plugin
zip carries (with its screenshots), rendered inside QGIS, so it reads the same offline."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

PLUGIN_DIR = Path(__file__).resolve().parent
GUIDE_FILE = "README.md"
GUIDE_SECTION = "## QGIS plugin"
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def guide_file(plugin_dir: Path = PLUGIN_DIR) -> Optional[Path]:
    """The README beside the plugin code (the zip's layout), else one folder up (the repository's)."""
    for folder in (plugin_dir, plugin_dir.parent):
        if (folder / GUIDE_FILE).is_file():
            return folder / GUIDE_FILE
    return None


def guide_markdown(readme: str, folder: Path) -> str:
    """The README's QGIS plugin section (the whole README when it has none). Links to web pages stay;
    links to files not next to the README, or to other sections, become plain text."""
    lines = readme.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == GUIDE_SECTION), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[start:end]

    def link(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        if target.startswith(("http://", "https://")):
            return m.group(0)
        path = target.split("#")[0]
        return m.group(0) if path and (folder / path).is_file() else text

    return _LINK.sub(link, "\n".join(lines))


class UserGuideDialog(QDialog):
    """The guide in a window of its own: text, screenshots, links to web pages open in the browser."""

    def __init__(self, parent: Optional[QWidget] = None, plugin_dir: Path = PLUGIN_DIR):
        super().__init__(parent)
        self.setWindowTitle("M3 user guide")
        self.setObjectName("m3UserGuide")
        self.resize(760, 680)
        self.browser = QTextBrowser(self)
        self.browser.setOpenExternalLinks(True)
        path = guide_file(plugin_dir)
        if path is None:
            self.browser.setPlainText(f"The user guide ({GUIDE_FILE}) is missing from {plugin_dir}: reinstall "
                                      "the plugin from its zip (Plugins > Manage and Install Plugins > "
                                      "Install from ZIP).")
        else:
            self.browser.setSearchPaths([str(path.parent)])  # the screenshots: docs/*.png beside the README
            self.browser.setMarkdown(guide_markdown(path.read_text(encoding="utf-8"), path.parent))
        self.guide_path = path
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
