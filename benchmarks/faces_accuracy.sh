#!/usr/bin/env bash
# The face path against the whole-photo model on synthetic KoIn (docs/FACES.md, RESULTS.md):
# the default synthetic KoIn (10 identities, seed 0) prepared with --faces, the default model
# (Lite0, 3 epochs) trained once on whole photos and once on normal-faces, both evaluated with
# --faces. Prints both models' metrics; takes about 10-25 minutes on 2 CPU cores.
#
#     bash benchmarks/faces_accuracy.sh [WORK_DIR] [extra train.py flags...]
set -euo pipefail
WORK="${1:-${TMPDIR:-/tmp}/koin-faces-accuracy}"
shift || true
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
[ -d "$WORK/raw" ] || "$PY" -m koin_hf.cli synth "$WORK/raw"
[ -d "$WORK/data" ] || "$PY" -m koin_hf.cli prepare "$WORK/raw" "$WORK/data" --faces
for kind in whole faces; do
    if [ ! -f "$WORK/$kind/all_results.json" ]; then
        config=normal; evals=(normal hard group)
        if [ "$kind" = faces ]; then config=normal-faces; evals=(normal-faces hard-faces); fi
        "$PY" train.py --dataset_name "$WORK/data" --dataset_config_name "$config" \
            --eval_config_names "${evals[@]}" --output_dir "$WORK/$kind" "$@"
    fi
    "$PY" -m koin_hf.cli evaluate "$WORK/$kind" --dataset "$WORK/data" --faces --no_plots \
        --output_dir "$WORK/eval-$kind"
done
"$PY" - "$WORK" <<'PYEOF'
import json, sys
work = sys.argv[1]
for kind in ("whole", "faces"):
    m = json.load(open(f"{work}/eval-{kind}/metrics.json"))
    g = m["faces"]["group-faces"]
    print(f"{kind:>5}-trained model: whole photos top-1 normal {m['configs']['normal']['top1_accuracy']:.3f}"
          f" hard {m['configs']['hard']['top1_accuracy']:.3f} group {m['configs']['group']['top1_accuracy']:.3f}"
          f" | faces top-1 normal {m['faces']['normal-faces']['top1_accuracy']:.3f}"
          f" hard {m['faces']['hard-faces']['top1_accuracy']:.3f}"
          f" group best face {g['best_face_top1']:.3f} (top-3 {g['best_face_top3']:.3f})"
          f" among faces {g['any_face_top1']:.3f} labelled face {g['labelled_face_top1']}")
PYEOF
