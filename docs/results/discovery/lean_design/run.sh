#!/bin/bash
# The lean design (v0.5 candidate, bundled_lean preset, 1-mile cells, 30 aux bands) on the discovery test:
# trained on the stack without the four test surveys (3 seeds), its infill maps alone and x aux-map, beside the rivals.
# Before: train_cli.py discovery-stack --out out/disc/disc1.tif ; build-stack --resolution 6437.376 --out out/disc/stack4.tif ;
#   discovery-stack --stack out/disc/stack4.tif --out out/disc/disc4.tif ; aux-map --stack out/disc/disc4.tif --out out/disc/auxmap4.tif
#   for s in 0 1 2: train --stack out/disc/disc1.tif --preset bundled_lean --seed $s --no-calibrate --out out/v05disc/s$s.safetensors
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
core=${1:-0}
P="env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c $core .venv/bin/python train_cli.py"
for s in 0 1 2; do
  $P predict --stack out/disc/disc1.tif --models out/v05disc/s$s.safetensors --draws 10 --seed $s --device cpu \
    --out out/v05disc/s${s}_infill.tif --no-quicklook
done
/usr/bin/time -v $P discover --stack out/disc/disc1.tif --out out/v05disc/test --maps \
  "M3 v0.5: infill=out/v05disc/s0_infill.tif,out/v05disc/s1_infill.tif,out/v05disc/s2_infill.tif" \
  "M3 v0.5: infill × aux-map (4-mile)=out/v05disc/s0_infill.tif+out/disc/auxmap4.tif,out/v05disc/s1_infill.tif+out/disc/auxmap4.tif,out/v05disc/s2_infill.tif+out/disc/auxmap4.tif" \
  "aux-map on the 4-mile stack=out/disc/auxmap4.tif"
