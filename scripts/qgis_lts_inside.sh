#!/usr/bin/env bash
# Run inside the Debian root that scripts/qgis_lts_check.sh prepares (a copy of the repository around
# this script, the pip packages in the venv $M3_VENV): the plugin tests headless, then the
# real QGIS desktop under Xvfb with the plugin installed from its zip into a fresh profile, driven
# through the Arizona example by scripts/qgis_screenshot.py; then, unless M3_QGIS_INSTALLER=0, the dock's
# Install for real with torch hidden from QGIS (no venv on its path) followed by the same Arizona run
# (scripts/installer_check.sh: pip downloads torch for QGIS's own Python from the package index).
# Usage: scripts/qgis_lts_inside.sh OUT_DIR
#   writes tests.log, qgis.log (the desktop's output), qgis_errors.log, the window grabs, installer/,
#   summary.txt
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: qgis_lts_inside.sh OUT_DIR}
VENV=${M3_VENV:-/opt/m3-venv}
PY=$VENV/bin/python
mkdir -p "$OUT"
export LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1

versions=$("$PY" - <<'EOF'
import platform
from osgeo import gdal
from qgis.core import Qgis
from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR
import numpy, torch
print(f"QGIS:        {Qgis.version()}")
print(f"Qt:          {QT_VERSION_STR} (PyQt {PYQT_VERSION_STR})")
print(f"Python:      {platform.python_version()}")
print(f"GDAL:        {gdal.__version__} | numpy {numpy.__version__} | torch {torch.__version__}")
EOF
) || versions="versions: could not import QGIS / torch in $PY"
echo "$versions"

# 1. The plugin tests, headless (M3_QGIS_TESTS=0 skips them: a quick desktop-only check).
tests=(tests/test_plugin_*.py tests/test_processing.py)
[ -f tests/test_qt6_forms.py ] && tests+=(tests/test_qt6_forms.py)
echo "pytest ${tests[*]}"
t0=$SECONDS
export M3_QGIS_ERROR_LOG="$OUT/qgis_errors.log"  # see scripts/qgis_lts_log.py
rm -f "$M3_QGIS_ERROR_LOG"
# SIGINT at the time limit: pytest stops and still prints its failures and counts so far.
if [ "${M3_QGIS_TESTS:-1}" = 1 ]; then
  QT_QPA_PLATFORM=offscreen PYTHONPATH=scripts timeout -s INT -k 120 "${M3_QGIS_TEST_TIMEOUT:-5400}" \
    "$PY" -m pytest -q -p no:cacheprovider -p qgis_lts_log "${tests[@]}" > "$OUT/tests.log" 2>&1
  test_rc=$?
else
  echo "not run (M3_QGIS_TESTS=0)" > "$OUT/tests.log"
  test_rc=0 test_line="not run (M3_QGIS_TESTS=0)"
fi
[ -n "${test_line:-}" ] || test_line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$OUT/tests.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
[ "$test_rc" -eq 124 ] && test_line="${test_line:-nothing} when stopped at the time limit (M3_QGIS_TEST_TIMEOUT)"
echo "tests: ${test_line:-no pytest summary (exit $test_rc)} [$((SECONDS - t0)) s]"

# 2. The real desktop: plugin from its zip into a fresh profile, the Arizona example, a screenshot.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shot_rc=1 qgis_rc=""
if "$PY" scripts/build_plugin_zip.py --out "$work/m3_plugin.zip" > "$OUT/qgis.log" 2>&1; then
  plugins="$work/profiles/profiles/default/python/plugins"
  mkdir -p "$plugins" "$work/profiles/profiles/default/QGIS"
  (cd "$plugins" && "$PY" -m zipfile -e "$work/m3_plugin.zip" .)
  printf '[PythonPlugins]\nm3_plugin=true\n' > "$work/profiles/profiles/default/QGIS/QGIS3.ini"
  t0=$SECONDS
  # QGIS embeds Debian's Python; it finds torch & co. in the venv's site-packages.
  M3_SCREENSHOT_OUT="$OUT/qgis_344_screenshot.png" M3_SCREENSHOT_MODEL="" \
  M3_CACHE="${M3_CACHE:-$HOME/.cache/m3}" PYQGIS_STARTUP="$PWD/scripts/qgis_lts_log.py" \
  PYTHONPATH="$("$PY" -c 'import site; print(site.getsitepackages()[0])')" \
    timeout 900 xvfb-run -a -s "-screen 0 1280x800x24" \
    qgis --nologo --noversioncheck --profiles-path "$work/profiles" --code scripts/qgis_screenshot.py \
    >> "$OUT/qgis.log" 2>&1
  qgis_rc=$?
  # qgis_screenshot.py ends with "saved ..." once every grab is written; QGIS's exit status after that
  # (a crash while closing) is reported apart.
  grep -q '^qgis_screenshot: saved ' "$OUT/qgis.log" && [ -s "$OUT/qgis_344_screenshot.png" ] && shot_rc=0
  echo "desktop: QGIS exit $qgis_rc [$((SECONDS - t0)) s]; $(grep 'qgis_screenshot:' "$OUT/qgis.log" | tail -1)"
fi

# 3. Install then Run, as a geologist whose QGIS has no torch: QGIS's own Python alone.
inst_line="not run (M3_QGIS_INSTALLER=0)"
if [ "${M3_QGIS_INSTALLER:-1}" = 1 ]; then
  t0=$SECONDS
  M3_CACHE="${M3_CACHE:-$HOME/.cache/m3}" bash scripts/installer_check.sh "$OUT/installer" > "$OUT/installer.log" 2>&1
  inst_rc=$?
  size=$(du -sh "$OUT/installer/profiles/profiles/default/python/m3_dependencies" 2>/dev/null | cut -f1)
  inst_line="exit $inst_rc [$((SECONDS - t0)) s, folder ${size:-none}]; $(grep 'installer_check: install and run done' "$OUT/installer.log" \
    || grep 'installer_check:' "$OUT/installer.log" | tail -1)"
  rm -rf "$OUT/installer/profiles"  # the installed packages (GBs); the logs and grabs stay
  echo "install+run: $inst_line"
fi

{
  echo "$versions"
  echo "install+run: $inst_line"
  echo "tests:       ${test_line:-no pytest summary} (pytest exit $test_rc; ${#tests[@]} files)"
  if [ "$shot_rc" -eq 0 ]; then echo "desktop run: ok, every grab saved (QGIS exit status ${qgis_rc:-?}$(
    grep -o 'QGIS died on signal [0-9]*' "$OUT/qgis.log" | sed 's/^/: /' | head -1))"
  else echo "desktop run: FAILED (QGIS exit ${qgis_rc:-not started}): $(grep 'qgis_screenshot:' "$OUT/qgis.log" | tail -1)"; fi
  if [ -s "$M3_QGIS_ERROR_LOG" ]; then
    echo "errors:      $(grep -c '^\[' "$M3_QGIS_ERROR_LOG") logged in qgis_errors.log; the first:"
    head -25 "$M3_QGIS_ERROR_LOG"
  fi
} > "$OUT/summary.txt"
[ "$test_rc" -eq 0 ] && [ "$shot_rc" -eq 0 ] && [ "${inst_rc:-0}" -eq 0 ]
