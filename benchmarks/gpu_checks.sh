#!/usr/bin/env bash
# GPU checks in one run (a few minutes on one GPU): the analysis benchmark on CUDA, cold and warm, in the
# default mixed precision and in float32; the long-lived worker (pelabelup serve) against fresh analyze
# processes; then a short artery-model training under torchrun (nccl, one process per GPU) on a small
# synthetic cohort, which must end with a model folder.
#
#   bash benchmarks/gpu_checks.sh [OUT]      # OUT: where logs go (default: gpu-checks)
#
# Needs the project's dependencies importable (e.g. `make venv`, or PYTHONPATH=PELabelUp:. with them
# installed) and a CUDA build of torch. Environment: PYTHON (default python3), SEEDS (default "7 8 9"),
# GPUS (torchrun processes, default 1).
set -uo pipefail
OUT=${1:-gpu-checks}
PY=${PYTHON:-python3}
SEEDS=${SEEDS:-7 8 9}
GPUS=${GPUS:-1}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)" \
    | tee -a "$OUT/gpu.txt" || exit 1

echo "== analysis benchmark (512 x 512 x 300, --repeat 2: cold, then warm)"
for seed in $SEEDS; do
    "$PY" benchmarks/bench_analyze.py --device cuda --seed "$seed" --no-tracemalloc --repeat 2 2>/dev/null \
        | tee "$OUT/bench-auto-$seed.txt" | grep -E "^(run|wall|total)"
done
"$PY" benchmarks/bench_analyze.py --device cuda --seed "${SEEDS%% *}" --no-tracemalloc --repeat 2 \
    --precision float32 2>/dev/null | tee "$OUT/bench-float32.txt" | grep -E "^(run|wall|total)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== the long-lived worker (pelabelup serve) against fresh analyze processes, one synthetic study"
"$PY" -m PELabelUpLib.cli.main synth --out "$work/one" --n 1 --seed 3 --no-progress > "$OUT/synth-one.txt" 2>&1 \
    || { cat "$OUT/synth-one.txt"; exit 1; }
"$PY" benchmarks/bench_serve.py "$(ls "$work"/one/*/ct.nii.gz | head -1)" --n 2 --device cuda 2>/dev/null \
    | tee "$OUT/bench-serve.txt" || { echo "worker benchmark FAILED"; exit 1; }

echo "== artery training under torchrun (nccl, $GPUS process(es))"
"$PY" -m PELabelUpLib.cli.main synth --out "$work/cohort" --n 6 --seed 5 --size-xy 128 128 --no-progress \
    > "$OUT/synth.txt" 2>&1 || { cat "$OUT/synth.txt"; exit 1; }
"$PY" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" -m training.artery.train \
    --cohort "$work/cohort" --out "$work/artery" --epochs 2 --patches-per-epoch 64 --batch-size 4 \
    --patch 64 64 64 --val-cases 1 --device cuda --num-workers 4 --progress lines > "$OUT/train.txt" 2>&1
status=$?
tail -3 "$OUT/train.txt"
if [ $status -ne 0 ] || [ ! -f "$work/artery/metadata.json" ]; then
    echo "torchrun training FAILED (exit $status); see $OUT/train.txt"; exit 1
fi
"$PY" -c "import json, sys; t = json.load(open(sys.argv[1]))['training']; \
print('model folder written: device', t['device'], '| world size', t['world_size'], '| precision', t['precision'], \
'| patches/s', t['samples_per_s'])" "$work/artery/metadata.json" | tee -a "$OUT/train.txt"
echo "gpu checks passed; logs in $OUT"
