#!/usr/bin/env bash
# One-time, idempotent set-up on Debian 12: apt packages, a venv that sees QGIS, pip packages.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-qgis qgis-providers python3-venv python3-rasterio python3-scipy python3-matplotlib python3-pip gdal-bin python3-gdal)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv (system site packages: QGIS, GDAL, rasterio)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] pip install -r requirements.txt"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  # triton clashes with Mesa's LLVM inside the real QGIS app under Xvfb (signal 11); M3 does not use it.
  .venv/bin/pip uninstall -y -q triton 2>/dev/null || true
  echo "$want" > "$stamp"
fi
# QGIS 4's Qt binding, in a venv of its own (QGIS 3's PyQt5 is loaded in .venv): tests/test_qt6_forms.py
# checks every Qt name the plugin writes against it.
PYQT6=PyQt6==6.11.0
if [ "$(cat .venv-qt6/.pyqt6 2>/dev/null)" != "$PYQT6" ]; then
  echo "[setup] $PYQT6 into .venv-qt6 (the plugin's Qt 6 names check)"
  /usr/bin/python3 -m venv .venv-qt6
  .venv-qt6/bin/pip install -q --disable-pip-version-check "$PYQT6"
  echo "$PYQT6" > .venv-qt6/.pyqt6
fi
.venv/bin/python -c "import qgis.core, rasterio, torch, segmentation_models_pytorch; print('[setup] ok: torch', torch.__version__, '| rasterio', rasterio.__version__, '| CUDA', torch.cuda.is_available())"
