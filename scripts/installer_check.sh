#!/usr/bin/env bash
# Try the M3 dock's Install for real: the QGIS desktop on a virtual screen, a fresh profile, the plugin from its
# zip, torch NOT importable by QGIS's Python; click Install (torch for CPU), confirm PyPI's build when the CPU
# index cannot be reached, wait, check the model loads, and report time and folder size.
# Usage: scripts/installer_check.sh [OUT_DIR]   (default /tmp/m3_installer_check; the profile stays there)
#   M3_INSTALL_VARIANT=cpu|cuda   M3_INSTALL_CONFIRM=1|0   (environment)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-/tmp/m3_installer_check}")
pkgs=()
for p in qgis xvfb xauth imagemagick; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
unset PYTHONPATH  # QGIS's Python alone, as a user's
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "torch is importable by /usr/bin/python3: this check needs a QGIS without it." >&2
  exit 2
fi
rm -rf "$out"
mkdir -p "$out"
/usr/bin/python3 scripts/build_plugin_zip.py --out "$out/m3_plugin.zip"
plugins="$out/profiles/profiles/default/python/plugins"
mkdir -p "$plugins" "$out/profiles/profiles/default/QGIS"
(cd "$plugins" && /usr/bin/python3 -m zipfile -e "$out/m3_plugin.zip" .)
printf '[PythonPlugins]\nm3_plugin=true\n' > "$out/profiles/profiles/default/QGIS/QGIS3.ini"
export M3_INSTALL_OUT="$out"
start=$(date +%s)
status=0
timeout 3600 xvfb-run -a -s "-screen 0 1280x800x24" \
  qgis --nologo --noversioncheck --profiles-path "$out/profiles" --code scripts/installer_check.py \
  > "$out/qgis_stdout.txt" 2>&1 || status=$?
grep "installer_check:" "$out/qgis_stdout.txt" || tail -20 "$out/qgis_stdout.txt"
folder="$out/profiles/profiles/default/python/m3_dependencies"
echo "QGIS ran $(( $(date +%s) - start )) s (exit status $status)"
[ -d "$folder" ] && du -sh "$folder"
ls "$out"/*.png 2>/dev/null || true
exit "$status"
