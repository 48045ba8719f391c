#!/usr/bin/env bash
# Check the plugin on QGIS 3.44 LTR (Debian sid: qgis / python3-qgis 3.44, Qt 5, Python 3.14) in a
# Debian root made with debootstrap: the plugin tests headless, then the real QGIS desktop under Xvfb
# installs the plugin from its zip, runs the Arizona example from the dock (scripts/qgis_screenshot.py)
# and saves docs/qgis_344_screenshot.png. The test log and the other window grabs go to out/qgis_344/.
#
# Usage (root: debootstrap, chroot and mounts need it):  scripts/qgis_lts_check.sh
#   M3_QGIS_ROOT    where the Debian root lives (default /var/tmp/m3-qgis-sid); kept and reused
#   M3_QGIS_SUITE   Debian suite (default sid)
#   M3_QGIS_MIRROR  Debian mirror (default: the one this machine's apt uses)
#   M3_QGIS_TEST_TIMEOUT  seconds the plugin tests may take (default 5400)
#   M3_QGIS_TESTS=0       skip the plugin tests;  M3_QGIS_INSTALLER=0  skip Install then Run with torch hidden
#   M3_QGIS_PREPARE_ONLY=1  build the root (debootstrap, apt, pip) and stop before the checks
#   M3_QGIS_FROM    what is checked: "worktree" (default: tracked and new files as they are now) or
#                   "HEAD" (the last commit: a consistent snapshot while files are being edited)
# Safe to re-run: the root, its apt packages and its Python venv are reused (the venv is rebuilt when
# requirements.txt changes); the repository's working tree is copied in afresh on every run.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${M3_QGIS_ROOT:-/var/tmp/m3-qgis-sid}
SUITE=${M3_QGIS_SUITE:-sid}
APT_PACKAGES=(qgis python3-qgis qgis-providers python3-rasterio python3-scipy python3-matplotlib
  python3-venv python3-pip gdal-bin python3-gdal xvfb xauth imagemagick ca-certificates
  fonts-open-sans)  # QGIS 3.44 downloads Open Sans at start when missing ("font installation failed" offline)
VENV=/opt/m3-venv             # inside the root
# Pins of requirements.txt that have no wheel for Python 3.14: the first release that has one.
PIN_OVERRIDES=("pykrige==1.7.2 pykrige==1.7.3" "scikit-learn==1.5.2 scikit-learn==1.7.2")

if [ "$(id -u)" -ne 0 ]; then
  echo "qgis_lts_check: run as root (debootstrap, chroot and mount need it): sudo $0" >&2
  exit 2
fi
log() { echo "[qgis_lts_check $(date +%H:%M:%S)] $*"; }

host_mirror() {  # the Debian mirror this machine's apt uses
  local m
  m=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')
  [ -n "$m" ] || m=$(grep -hsE '^deb .*/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | head -1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${M3_QGIS_MIRROR:-$(host_mirror)}

exec 9>"$ROOT.lock"
flock -n 9 || { echo "qgis_lts_check: another run holds $ROOT.lock" >&2; exit 2; }

# 1. The Debian root (debootstrap removes $ROOT/debootstrap when it has finished).
if [ -d "$ROOT/debootstrap" ]; then
  echo "qgis_lts_check: $ROOT is an unfinished debootstrap; check nothing is mounted under it" \
    "(findmnt -R $ROOT), remove it and re-run" >&2
  exit 2
fi
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
  log "debootstrap $SUITE from $MIRROR into $ROOT"
  t0=$SECONDS
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR"
  log "debootstrap took $((SECONDS - t0)) s"
fi

# 2. Mounts, undone on exit whatever happens.
MOUNTED=()
cleanup() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" || true
  done
}
trap cleanup EXIT
mnt() {  # mnt TARGET mount-args...: mount unless a previous run left it mounted
  local target=$ROOT$1; shift
  mkdir -p "$target"
  mountpoint -q "$target" || mount "$@" "$target"
  MOUNTED+=("$target")
}
mnt /proc -t proc proc
mnt /sys -t sysfs sysfs
mnt /dev --bind /dev
mnt /dev/pts --bind /dev/pts
mnt /dev/shm -t tmpfs -o mode=1777 shm
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"  # no services started by apt
chmod +x "$ROOT/usr/sbin/policy-rc.d"
# The archive these machines reach is a frozen copy whose Release files are past their Valid-Until.
echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99m3-frozen-archive"
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# 3. Debian's QGIS and the rest (once; again when the package list changes).
stamp=$ROOT/var/lib/m3-apt-packages
if [ "$(cat "$stamp" 2>/dev/null)" != "${APT_PACKAGES[*]}" ]; then
  log "apt-get install ${APT_PACKAGES[*]}"
  t0=$SECONDS
  in_root apt-get update -qq
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
  in_root apt-get clean
  echo "${APT_PACKAGES[*]}" > "$stamp"
  log "apt-get took $((SECONDS - t0)) s"
fi

# 4. pip packages in a venv over Debian's Python (it sees QGIS, GDAL, rasterio, numpy, scipy).
#    numpy is held at Debian's own numpy (QGIS, GDAL and rasterio are built against it).
numpy_version=$(in_root /usr/bin/python3 -c 'import numpy; print(numpy.__version__)')
mkdir -p "$ROOT/m3"
req=$ROOT/m3/requirements.txt
grep -vE '^numpy([<>=!~ ]|$)' "$REPO/requirements.txt" > "$req"
for o in "${PIN_OVERRIDES[@]}"; do
  read -r from to <<< "$o"
  if grep -qxF "$from" "$req"; then
    sed -i "s/^${from}\$/${to}/" "$req"
    log "requirement $from -> $to (the first with a Python 3.14 wheel)"
  fi
done
echo "numpy==$numpy_version" > "$ROOT/m3/constraints.txt"
want=$(cat "$req" "$ROOT/m3/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ROOT$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  [ -x "$ROOT$VENV/bin/python" ] || in_root /usr/bin/python3 -m venv --system-site-packages "$VENV"
  log "pip install -r requirements.txt (numpy==$numpy_version kept) into $VENV"
  t0=$SECONDS
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/m3/host-ca.crt"  # this machine's CAs, its proxy's included
  in_root env PIP_CERT=/m3/host-ca.crt "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
    -r /m3/requirements.txt -c /m3/constraints.txt
  # triton clashes with Mesa's LLVM inside the real QGIS app under Xvfb (signal 11); M3 does not use it.
  in_root "$VENV/bin/pip" uninstall -y -q triton 2>/dev/null || true
  echo "$want" > "$ROOT$VENV/.requirements.sha256"
  log "pip took $((SECONDS - t0)) s; venv $(du -sh "$ROOT$VENV" | cut -f1)"
fi

if [ "${M3_QGIS_PREPARE_ONLY:-0}" = 1 ]; then
  log "root ready at $ROOT (M3_QGIS_PREPARE_ONLY=1: no checks run)"
  exit 0
fi

# 5. The repository (working tree or HEAD, not ignored files), copied afresh, then the checks.
rm -rf "$ROOT/m3/repo" "$ROOT/m3/out"
mkdir -p "$ROOT/m3/repo" "$ROOT/m3/out"
if [ "${M3_QGIS_FROM:-worktree}" = HEAD ]; then
  git -C "$REPO" archive HEAD | tar -C "$ROOT/m3/repo" -xf -
  log "checking the last commit, $(git -C "$REPO" log -1 --format='%h %ci')"
else
  (cd "$REPO" && git ls-files -co --exclude-standard -z \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$ROOT/m3/repo" -xf -
  log "checking the working tree (last commit $(git -C "$REPO" log -1 --format='%h %ci'))"
fi
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/m3/host-ca.crt"  # pip of the dock's Install, behind this machine's proxy
rc=0
in_root env PIP_CERT=/m3/host-ca.crt M3_VENV="$VENV" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" M3_QGIS_TEST_TIMEOUT="${M3_QGIS_TEST_TIMEOUT:-5400}" \
  M3_QGIS_TESTS="${M3_QGIS_TESTS:-1}" M3_QGIS_INSTALLER="${M3_QGIS_INSTALLER:-1}" \
  bash /m3/repo/scripts/qgis_lts_inside.sh /m3/out || rc=$?

# 6. Results back into the repository.
mkdir -p "$REPO/out/qgis_344"
cp -rf "$ROOT"/m3/out/. "$REPO/out/qgis_344/" 2>/dev/null || true
shot=$ROOT/m3/out/qgis_344_screenshot.png
if [ -s "$shot" ]; then
  cp -f "$shot" "$REPO/docs/qgis_344_screenshot.png.part"
  mv -f "$REPO/docs/qgis_344_screenshot.png.part" "$REPO/docs/qgis_344_screenshot.png"
fi
echo "---- QGIS LTR check ($SUITE root $ROOT)"
cat "$ROOT/m3/out/summary.txt" 2>/dev/null || echo "no summary: the checks did not run (see above)"
echo "test log:    $REPO/out/qgis_344/tests.log"
if [ -s "$shot" ]; then echo "screenshot:  $REPO/docs/qgis_344_screenshot.png"; else echo "screenshot:  none"; fi
exit "$rc"
