"""The dock's Help works offline: the plugin zip carries the user guide (README.md and the docs/
pictures it shows) and Help renders it inside QGIS, from the zip's files, opening no web page."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices, QTextDocument

from m3_plugin.user_guide import GUIDE_SECTION, UserGuideDialog, guide_file, guide_markdown

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked_plugin(tmp_path_factory) -> Path:
    """The plugin zip built by scripts/build_plugin_zip.py, unpacked as QGIS installs it."""
    root = tmp_path_factory.mktemp("plugin")
    out = root / "m3_plugin.zip"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_plugin_zip.py"), "--out", str(out)],
                   check=True, capture_output=True)
    zipfile.ZipFile(out).extractall(root / "plugins")
    return root / "plugins" / "m3_plugin"


def _guide_pictures(markdown: str) -> list[str]:
    import re

    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)


def test_zip_carries_the_guide_and_its_pictures(unpacked_plugin):
    readme = unpacked_plugin / "README.md"
    assert readme.read_bytes() == (REPO / "README.md").read_bytes()
    shown = guide_markdown(readme.read_text(encoding="utf-8"), unpacked_plugin)
    assert shown.startswith(GUIDE_SECTION)
    pictures = _guide_pictures(shown)
    assert pictures and all(p.startswith("docs/") for p in pictures)
    for picture in pictures:
        assert (unpacked_plugin / picture).read_bytes() == (REPO / picture).read_bytes(), picture


def test_the_guide_keeps_web_links_and_flattens_links_it_cannot_follow(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.png").write_bytes(b"png")
    readme = "\n".join(["# Title", "intro", GUIDE_SECTION, "![shot](docs/a.png)",
                        "see [the test](#other-section), [cli](docs/cli.md#x), [Qt](https://doc.qt.io)",
                        "## Next", "not shown"])
    shown = guide_markdown(readme, tmp_path)
    assert shown.splitlines()[0] == GUIDE_SECTION and "not shown" not in shown
    assert "![shot](docs/a.png)" in shown and "[Qt](https://doc.qt.io)" in shown
    assert "see the test, cli," in shown


def test_help_shows_the_bundled_guide_without_network(unpacked_plugin, qgis_app, monkeypatch):
    """The dialog renders the unpacked zip's guide; its screenshots load from the zip's docs/ folder."""
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: pytest.fail(f"opened {url.toString()}"))
    dialog = UserGuideDialog(plugin_dir=unpacked_plugin)
    dialog.show()
    assert dialog.guide_path == unpacked_plugin / "README.md"
    text = dialog.browser.toPlainText()
    assert text.startswith("QGIS plugin") and "Region to hide" in text and "Command line" not in text
    shown = guide_markdown(dialog.guide_path.read_text(encoding="utf-8"), unpacked_plugin)
    for picture in _guide_pictures(shown):
        image = dialog.browser.loadResource(QTextDocument.ResourceType.ImageResource, QUrl(picture))
        assert image is not None and not image.isNull(), picture
    dialog.close()


def test_help_says_what_to_do_when_the_guide_is_missing(tmp_path, qgis_app):
    plugin_dir = tmp_path / "plugins" / "m3_plugin"
    plugin_dir.mkdir(parents=True)
    assert guide_file(plugin_dir) is None
    dialog = UserGuideDialog(plugin_dir=plugin_dir)
    assert dialog.guide_path is None
    assert "reinstall the plugin from its zip" in dialog.browser.toPlainText()
