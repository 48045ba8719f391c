#!/usr/bin/env bash
# The GPU checks, run on the device machine from the repository root with .gpu carried
# (made here by `scripts/gpu_checks.py pack`; see its docstring). Logs and JSON go to $OUT.
#   bench infer (ours float32 and bf16 against the naive reference, whole grid), the 150-evaluation
#   CONUS map end to end (3 models x 50 draws, float32, then bf16), bench memory, bench train.
# A dry run on a CPU: M3_DEVICE=cpu M3_MODELS=1 M3_DRAWS=1 M3_MEMORY_CONFIGS=1x1 PYTHON=.venv/bin/python \
#   M3_SKIP_WHEELS=1 bash scripts/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-/tmp/m3_gpu_out}
PY=${PYTHON:-python3}
DEVICE=${M3_DEVICE:-cuda}
MODELS=${M3_MODELS:-3}
DRAWS=${M3_DRAWS:-50}
MEMORY_CONFIGS=${M3_MEMORY_CONFIGS:-1x1,1x8,3x8}
MODEL=resources/models/m3_unet_conus.safetensors
STACK=/tmp/m3_timing_stack.tif
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log() { echo "== $(date +%T) $*" | tee -a "$OUT/checks.log"; }

if [ -z "${M3_SKIP_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/m3_site \
    .gpu/wheels/*.whl || { log "wheels did not install"; exit 1; }
  export PYTHONPATH=/tmp/m3_site:$PWD
fi
{ nvidia-smi -L; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  >> "$OUT/checks.log" 2>&1

log "timing stack"
"$PY" scripts/gpu_checks.py unpack .gpu/timing_stack.npz "$STACK" 2>&1 | tee -a "$OUT/checks.log" || exit 1

log "bench infer"
timeout 200 "$PY" train_cli.py bench infer --model "$MODEL" --stack "$STACK" --device "$DEVICE" \
  --json "$OUT/bench_infer.json" 2>&1 | tee "$OUT/bench_infer.log"

models=$(for _ in $(seq "$MODELS"); do printf '%s ' "$MODEL"; done)
for precision in fp32 bf16; do
  flag=$([ "$precision" = bf16 ] && echo --bf16)
  log "CONUS map, $MODELS models x $DRAWS draws, $precision"
  rm -f /tmp/m3_conus_map.tif
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  timeout 150 "$PY" train_cli.py predict --stack "$STACK" --models $models --draws "$DRAWS" --device "$DEVICE" \
    --out /tmp/m3_conus_map.tif --no-quicklook $flag > "$OUT/conus_map_$precision.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  grep -v "it/s\]" "$OUT/conus_map_$precision.log" | tail -8 | tee -a "$OUT/checks.log"
  log "CONUS map $precision: exit $rc, $("$PY" -c "print(round($t1 - $t0, 1))") s end to end (process start, model loading and the written GeoTIFF included), $(du -m /tmp/m3_conus_map.tif 2>/dev/null | cut -f1) MB"
done

log "bench memory"
timeout 150 "$PY" train_cli.py bench memory --stack "$STACK" --device "$DEVICE" --configs "$MEMORY_CONFIGS" \
  --json "$OUT/bench_memory.json" 2>&1 | tee -a "$OUT/checks.log"

log "bench train"
timeout 90 "$PY" train_cli.py bench train --device "$DEVICE" --json "$OUT/bench_train.json" 2>&1 | tee -a "$OUT/checks.log"
log "done"
