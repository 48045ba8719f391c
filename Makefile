# M3: the two commands are `make demo` and `make test`; both set up everything first.
# Set-up (apt packages, .venv with QGIS's system site packages, pinned pip packages) is
# idempotent: scripts/setup.sh skips what is already there.

PYTHON := .venv/bin/python
OUT ?= out/

.PHONY: setup test demo plugin-zip clean

setup:
	bash scripts/setup.sh

# Headless: Qt draws offscreen, pytest-qgis runs without a GUI (see pytest.ini).
test: setup
	QT_QPA_PLATFORM=offscreen $(PYTHON) -m pytest -q tests

demo: setup
	$(PYTHON) train_cli.py demo --out $(OUT)

# Needs only the standard library: no set-up.
plugin-zip:
	python3 scripts/build_plugin_zip.py --out dist/m3_plugin.zip

clean:
	rm -rf dist/ build/ .pytest_cache/
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
