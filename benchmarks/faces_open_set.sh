#!/usr/bin/env bash
# Open set on face crops vs whole photos (docs/FACES.md, RESULTS.md section 9): the default
# synthetic KoIn plus 10 people outside the classes (`koin synth --unknown_classes 10`),
# prepared with --faces; the default model (Lite0, 3 epochs) trained once on whole photos and
# once on normal-faces; each calibrated, scored known vs unknown and enrolled from 5 photos by
# benchmarks/bench_open_set.py. About 15-25 minutes on 2 CPU cores.
#
#     bash benchmarks/faces_open_set.sh [WORK_DIR] [extra train.py flags...]
set -euo pipefail
WORK="${1:-${TMPDIR:-/tmp}/koin-faces-open-set}"
shift || true
PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "$0")" && pwd)"
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
[ -d "$WORK/raw" ] || "$PY" -m koin_hf.cli synth "$WORK/raw" --unknown_classes 10 --quiet
[ -d "$WORK/data" ] || "$PY" -m koin_hf.cli prepare "$WORK/raw" "$WORK/data" --faces
for kind in whole faces; do
    if [ ! -f "$WORK/$kind/all_results.json" ]; then
        config=normal; evals=(normal hard group)
        if [ "$kind" = faces ]; then config=normal-faces; evals=(normal-faces hard-faces); fi
        "$PY" "$HERE/../train.py" --dataset_name "$WORK/data" --dataset_config_name "$config" \
            --eval_config_names "${evals[@]}" --output_dir "$WORK/$kind" "$@"
    fi
    echo "== $kind-trained model =="
    "$PY" "$HERE/bench_open_set.py" "$WORK/$kind" "$WORK/data" --work-dir "$WORK/bench-$kind"
done
