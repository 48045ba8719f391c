"""Shared test fixtures. pytest-qgis provides qgis_app, qgis_iface, qgis_new_project (see pytest.ini)."""
from __future__ import annotations

from collections import defaultdict

import pytest


@pytest.fixture
def plugin_iface(qgis_iface, monkeypatch):
    """pytest-qgis's iface, recording the plugin's toolbar and menu calls in ``iface.calls``
    (its own are no-ops), and docking dock widgets into its main window as QGIS does."""
    calls: dict[str, list[tuple]] = defaultdict(list)
    window = qgis_iface.mainWindow()

    def record(name, forward=None):
        def method(*args):
            calls[name].append(args)
            if forward is not None:
                forward(*args)
        monkeypatch.setattr(qgis_iface, name, method)

    for name in ("addToolBarIcon", "removeToolBarIcon", "addPluginToMenu", "removePluginMenu"):
        record(name)
    record("addDockWidget", window.addDockWidget)
    record("removeDockWidget", window.removeDockWidget)
    monkeypatch.setattr(qgis_iface, "calls", calls, raising=False)
    return qgis_iface
