#!/bin/bash
# The bundled design v0.6 (bundled_blocks preset: cell blocks, 1-mile cells, calibrated as shipped) on the
# discovery test: trained with 3 seeds on the stack without the four test surveys, its infill maps alone
# and x aux-map, beside the rivals (blurred records, neighbour density, aux-only gradient boosting, run by
# discover itself on the same cells). 2-core CPU: the three trainings run side by side (about 50 minutes).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
P="env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python train_cli.py"
D=out/disc; O=out/v06disc; mkdir -p $D $O
[ -f $D/disc1.tif ] || $P discovery-stack --out $D/disc1.tif
for s in 0 1 2; do
  [ -f $O/s$s.safetensors ] || /usr/bin/time -v $P train --stack $D/disc1.tif --preset bundled_blocks --seed $s \
    --out $O/s$s.safetensors > $O/train_s$s.log 2>&1 &
done
[ -f $D/stack4.tif ] || $P build-stack --resolution 6437.376 --out $D/stack4.tif
[ -f $D/disc4.tif ] || $P discovery-stack --stack $D/stack4.tif --out $D/disc4.tif
[ -f $D/auxmap4.tif ] || $P aux-map --stack $D/disc4.tif --out $D/auxmap4.tif
wait
for s in 0 1 2; do
  [ -f $O/s${s}_infill.tif ] || $P predict --stack $D/disc1.tif --models $O/s$s.safetensors --draws 10 --seed $s \
    --device cpu --out $O/s${s}_infill.tif --no-quicklook
done
/usr/bin/time -v $P discover --stack $D/disc1.tif --out $O/test --maps \
  "M3 v0.6: infill=$O/s0_infill.tif,$O/s1_infill.tif,$O/s2_infill.tif" \
  "M3 v0.6: infill × aux-map (4-mile)=$O/s0_infill.tif+$D/auxmap4.tif,$O/s1_infill.tif+$D/auxmap4.tif,$O/s2_infill.tif+$D/auxmap4.tif" \
  "aux-map on the 4-mile stack=$D/auxmap4.tif"
