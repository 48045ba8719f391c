"""Keep what a crash would lose, for scripts/qgis_lts_inside.sh: QGIS's critical log messages and the
Python exceptions raised inside Qt callbacks go to the file $M3_QGIS_ERROR_LOG, each under the test
(or desktop step) that raised it.

Two uses: a pytest plugin (``-p qgis_lts_log`` with scripts/ on sys.path), and a QGIS start-up file
(PYQGIS_STARTUP) for the desktop run. Under pytest its exception hook also stands in for PyQt5's
default (abort the process, which loses pytest's captured output and every later test), the way the
QGIS desktop's own hook does: the test that raised then fails or times out on its own."""
from __future__ import annotations

import os
import sys
import traceback

LOG = os.environ.get("M3_QGIS_ERROR_LOG", "qgis_errors.log")
_where = {"test": "desktop"}


def _write(text: str) -> None:
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(f"[{_where['test']}] {text.rstrip()}\n")


def _exception_hook(kind, value, tb) -> None:
    _write("exception in a Qt callback:\n" + "".join(traceback.format_exception(kind, value, tb)))
    sys.__excepthook__(kind, value, tb)


def follow_qgis_log() -> None:
    """Copy QGIS's critical log messages to LOG."""
    from qgis.core import Qgis, QgsApplication

    def received(message: str, tag: str, level) -> None:
        if level == Qgis.MessageLevel.Critical:
            _write(f"QGIS log, {tag}: {message}")

    QgsApplication.messageLog().messageReceived.connect(received)
    follow_qgis_log.keep = received  # the connection lives as long as the function object


def pytest_configure(config) -> None:
    sys.excepthook = _exception_hook


def pytest_sessionstart(session) -> None:
    follow_qgis_log()


def pytest_runtest_logstart(nodeid, location) -> None:
    _where["test"] = nodeid


if "pytest" not in sys.modules:  # run by QGIS at start-up (PYQGIS_STARTUP)
    follow_qgis_log()
