#!/usr/bin/env bash
# The discovery test's aux-only rows with the sampled fit (about 20 minutes on one core) (core/inference/aux_boosting.py), to set beside
# the rows made with the full fit (docs/results/discovery/chosen_on_validation/test/discovery.md).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
mkdir -p out/aux_sampled
P=".venv/bin/python train_cli.py"; export OMP_NUM_THREADS=1
$P build-stack --resolution 6437.376 --out out/aux_sampled/stack4.tif
$P discovery-stack --stack out/aux_sampled/stack4.tif --out out/aux_sampled/disc4.tif
$P discovery-stack --out out/aux_sampled/disc1.tif
/usr/bin/time -v $P aux-map --stack out/aux_sampled/disc4.tif --out out/aux_sampled/auxmap4.tif
/usr/bin/time -v $P discover --stack out/aux_sampled/disc1.tif --out out/aux_sampled/test --maps "aux-map on the 4-mile stack=out/aux_sampled/auxmap4.tif"
