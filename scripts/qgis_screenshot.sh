#!/usr/bin/env bash
# Start the real QGIS desktop on a virtual screen with the plugin installed from its zip, run an
# infill on the example data from the dock, and save a screenshot (docs/qgis_screenshot.png).
# Usage: scripts/qgis_screenshot.sh [MODEL.safetensors]   (default: the bundled model)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pkgs=()
for p in qgis xvfb xauth; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python scripts/build_plugin_zip.py --out "$work/m3_plugin.zip"
plugins="$work/profiles/profiles/default/python/plugins"
mkdir -p "$plugins" "$work/profiles/profiles/default/QGIS"
(cd "$plugins" && python3 -m zipfile -e "$work/m3_plugin.zip" .)
printf '[PythonPlugins]\nm3_plugin=true\n' > "$work/profiles/profiles/default/QGIS/QGIS3.ini"
export M3_SCREENSHOT_OUT="$PWD/docs/qgis_screenshot.png"
export M3_SCREENSHOT_MODEL="${1:-}"
export M3_CACHE="${M3_CACHE:-$HOME/.cache/m3}"
# QGIS runs the system Python; it finds torch & co. in the venv's site-packages.
export PYTHONPATH="$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')"
timeout 1800 xvfb-run -a -s "-screen 0 1280x800x24" \
  qgis --nologo --noversioncheck --profiles-path "$work/profiles" --code scripts/qgis_screenshot.py
test -s "$M3_SCREENSHOT_OUT" && echo "screenshot: $M3_SCREENSHOT_OUT"
