#!/usr/bin/env bash
# The fully supervised segmenter without the artery prior, trained long on one GPU: can the emboli of the thin
# branches be found from the image at all? On one H200 with 16 cores it took about 10 minutes with 6 evaluation
# processes: phantoms 1.5 min, training 4.4 min (the cache 1 min, then about 140 patches/s), evaluation over
# 3.5 min (the largest phantoms take the longest; more processes share them out better).
#
#   bash training/segmenter/no_prior_upper_bound.sh [OUT]     # OUT: logs and reports (default: no-prior)
#
# 1. phantoms: N_TRAIN (default 72) of TRAIN_SEED (default 404) to train on, N_EVAL (40) of EVAL_SEED (default
#    777: the README's evaluation phantoms) to score;
# 2. their "territory": the box around both lungs grown by 5 mm (training.segmenter.lung_box), so the network
#    may mark anything in the chest and its territory channel carries nothing;
# 3. the segmenter trained from scratch on the true emboli masks (training.segmenter.train --labels gt), on a
#    SPACING mm grid (default 1.0) with 96^3 patches, EPOCHS x 1024 patches (default 16) in mixed precision;
# 4. scored on the evaluation phantoms in EVAL_PROCS processes (default 8) by training.segmenter.evaluate
#    (components from 30 mm^3, operating points for a FROC, emboli found by level), merged into OUT/summary.json.
#
# Needs the project's dependencies importable and a CUDA build of torch. Environment: PYTHON (default python3),
# TRAIN_SEED, EVAL_SEED, N_TRAIN, N_EVAL, SPACING, EPOCHS, PATCHES (per epoch), PATCH (side), BATCH, DEVICE,
# NUM_WORKERS, CACHE_WORKERS, TRAIN_TIMEOUT_S (default 360), WORK (default: a temporary folder).
set -uo pipefail
OUT=${1:-no-prior}
PY=${PYTHON:-python3}
TRAIN_SEED=${TRAIN_SEED:-404}
EVAL_SEED=${EVAL_SEED:-777}
SPACING=${SPACING:-1.0}
EPOCHS=${EPOCHS:-16}
N_TRAIN=${N_TRAIN:-72}
PATCHES=${PATCHES:-1024}
PATCH=${PATCH:-96}
TRAIN_TIMEOUT_S=${TRAIN_TIMEOUT_S:-360}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; work=$WORK; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%T)] $*"; }

stamp "phantoms: --seed $TRAIN_SEED ($N_TRAIN) and --seed $EVAL_SEED (${N_EVAL:-40})"
"$PY" -m PELabelUpLib.cli.main synth --out "$work/train" --n "$N_TRAIN" --seed "$TRAIN_SEED" --no-progress \
    > "$OUT/synth-train.txt" 2>&1 || { tail -5 "$OUT/synth-train.txt"; exit 1; }
"$PY" -m PELabelUpLib.cli.main synth --out "$work/eval" --n "${N_EVAL:-40}" --seed "$EVAL_SEED" --no-progress \
    > "$OUT/synth-eval.txt" 2>&1 || { tail -5 "$OUT/synth-eval.txt"; exit 1; }
stamp "lung boxes"
for part in train eval; do
    "$PY" -m training.segmenter.lung_box --cohort "$work/$part" --out "$work/box-$part" \
        --workers "${CACHE_WORKERS:-16}" >> "$OUT/box.txt" 2>&1 || { tail -5 "$OUT/box.txt"; exit 1; }
done

stamp "training (spacing $SPACING mm, $EPOCHS x $PATCHES patches of $PATCH^3)"
timeout "$TRAIN_TIMEOUT_S" "$PY" -m training.segmenter.train --cohort "$work/train" --labels gt \
    --territory "pred:$work/box-train" --out "$work/model" --spacing "$SPACING" "$SPACING" "$SPACING" \
    --patch $PATCH $PATCH $PATCH --batch-size "${BATCH:-8}" --epochs "$EPOCHS" --patches-per-epoch "$PATCHES" --lr 2e-3 --val-cases "${VAL_CASES:-4}" \
    --label-fraction 0.5 --device "$DEVICE" --num-workers "${NUM_WORKERS:-12}" --cache-workers "${CACHE_WORKERS:-16}" \
    --progress lines --version 0.0.1-no-prior > "$OUT/train.txt" 2>&1
status=$?
grep -E "epoch|samples|patches/s" "$OUT/train.txt" | tail -4
if [ $status -ne 0 ] || [ ! -f "$work/model/metadata.json" ]; then
    stamp "training FAILED (exit $status); see $OUT/train.txt"; tail -20 "$OUT/train.txt"; exit 1
fi
cp "$work/model/metadata.json" "$OUT/model-metadata.json"
cp "$work/model.run/epochs.csv" "$OUT/" 2>/dev/null

EVAL_PROCS=${EVAL_PROCS:-8}
stamp "evaluation on --seed $EVAL_SEED in $EVAL_PROCS processes"
"$PY" - "$work/eval" "$EVAL_PROCS" <<'EOF'
import csv, sys
from pathlib import Path
root, parts = Path(sys.argv[1]), int(sys.argv[2])
rows = list(csv.DictReader((root / "cohort.csv").open()))
for i in range(parts):
    part = root.parent / f"eval-part{i}"
    part.mkdir(exist_ok=True)
    with (part / "cohort.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for row in rows[i::parts]:
            w.writerow(row | {"path": str((root / row["path"]).resolve())})
EOF
pids=()
for i in $(seq 0 $((EVAL_PROCS - 1))); do
    "$PY" -m training.segmenter.evaluate --model "$work/model" --cohort "$work/eval-part$i" \
        --territory "pred:$work/box-eval" --device "$DEVICE" --min-volume-mm3 30 \
        --operating-points 0.3 0.5 0.7 0.9 --json "$OUT/eval-part$i.json" > "$OUT/eval-part$i.txt" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { stamp "an evaluation FAILED"; tail -5 "$OUT"/eval-part*.txt; exit 1; }; done
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
sys.path[:0] = [".", "PELabelUp"]
from PELabelUpLib.evaluate.levels import sum_levels
from training.segmenter.evaluate import detection_summary
out = Path(sys.argv[1])
cases = [c for p in sorted(out.glob("eval-part*.json")) for c in json.loads(p.read_text())["per_case"]]
dices = [c["dice"] for c in cases if c["positive"]]
summary = {"cases": len(cases), "dice_mean": sum(dices) / len(dices), **detection_summary(cases),
           "found_by_level": sum_levels(c.get("found_by_level", {}) for c in cases),
           "operating_points": [{"threshold": ops[0]["threshold"]} | detection_summary(ops)
                                for ops in zip(*[c["operating_points"] for c in cases])]}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
EOF
stamp "done; logs in $OUT"
