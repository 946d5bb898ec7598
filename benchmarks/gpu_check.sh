#!/usr/bin/env bash
# GPU check: koin-hf's training on NVIDIA GPUs, in five parts, each reported on its own.
#
#   1. single GPU:  accelerate launch --num_processes 1 train.py, bf16 ViT-B/16 (steps/s)
#   2. all GPUs:    accelerate launch --multi_gpu --num_processes <GPUs> train.py (DDP; skipped
#                   with a message on one GPU)
#   3+4. data path: images/s of the real training data path (prepared parquet, koin-hf's decode
#                   and augmentation in DataLoader workers) vs pre-made tensors in memory, same
#                   Trainer, same model
#   5. compile:     the in-memory run again with --torch_compile true (compile on / off)
#
# The model is a random-init ViT-B/16 built from its config (nothing is downloaded), trained
# on a prepared synthetic KoIn generated on the spot. A part that fails is reported (FAILED, with
# its log) and the others still run; a summary with the ratios comes last. Exit status: 0 when
# every part ran, 1 otherwise.
#
#   benchmarks/gpu_check.sh              # on a machine with NVIDIA GPUs, from the repository root
#   benchmarks/gpu_check.sh --dry-run    # or DRY_RUN=1: the same steps on the CPU, tiny sizes
#
# Settings (environment): PYTHON (default: python), WORK_DIR (default: a new temporary folder;
# logs and results stay there), STEPS (train.py steps, default 300), BATCH (per GPU, default
# 128), WORKERS (DataLoader workers per process, default: the cores per GPU, at most 8),
# WARMUP (untimed steps of parts 3-5, default 20), COMPILE_BACKEND (default inductor).
# A dry run uses a 2-layer ViT at 32 px, 6 steps, fp32, --use_cpu true, 2 CPU processes (gloo)
# for the DDP part and torch.compile's "eager" backend (the compile path without code
# generation, which would take minutes on a CPU).
set -uo pipefail

if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--dry-run]" >&2
    exit 2
fi
DRY_RUN=${DRY_RUN:-0}
PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK_DIR:-$(mktemp -d -t koin-gpu-check-XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
HELPER="$REPO/benchmarks/gpu_check.py"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=warning TQDM_MININTERVAL=10
cd "$REPO" || exit 2

if command -v nvidia-smi >/dev/null 2>&1; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
else
    GPUS=0
fi
CORES=$(nproc)

if [[ "$DRY_RUN" == 1 ]]; then
    STEPS=${STEPS:-6}
    BATCH=${BATCH:-4}
    WORKERS=${WORKERS:-2}
    WARMUP=${WARMUP:-2}
    COMPILE_BACKEND=${COMPILE_BACKEND:-eager}
    INPUTS=(--tiny)
    DEVICE_ARGS=(--use_cpu true)
    LAUNCH_PRECISION=no
    DDP_PROCESSES=2
    # accelerate refuses --multi_gpu with --cpu; this config is its documented 2-CPU-process DDP.
    DDP_LAUNCH=(--config_file configs/accelerate/cpu_2proc.yaml --num_processes 2)
else
    STEPS=${STEPS:-300}
    BATCH=${BATCH:-128}
    PER_GPU=$((CORES / (GPUS > 0 ? GPUS : 1)))
    WORKERS=${WORKERS:-$((PER_GPU < 8 ? PER_GPU : 8))}
    WARMUP=${WARMUP:-20}
    COMPILE_BACKEND=${COMPILE_BACKEND:-inductor}
    INPUTS=()
    DEVICE_ARGS=(--bf16 true)
    LAUNCH_PRECISION=bf16
    DDP_PROCESSES=$GPUS
    DDP_LAUNCH=(--multi_gpu --num_processes "$GPUS")
fi

if [[ "$DRY_RUN" == 1 ]]; then
    MACHINE="DRY RUN on the CPU"
else
    MACHINE="$GPUS GPU(s)"
fi
echo "== gpu_check: $MACHINE, $CORES CPU cores, work dir $WORK =="
if [[ "$GPUS" -gt 0 ]]; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c "
import accelerate, torch, transformers
print(f'torch {torch.__version__} (CUDA {torch.version.cuda}, available: '
      f'{torch.cuda.is_available()}), transformers {transformers.__version__}, '
      f'accelerate {accelerate.__version__}')"
echo "settings: STEPS=$STEPS BATCH=$BATCH (per process) WORKERS=$WORKERS WARMUP=$WARMUP" \
    "COMPILE_BACKEND=$COMPILE_BACKEND"
if [[ "$DRY_RUN" != 1 && "$GPUS" -eq 0 ]]; then
    echo "no NVIDIA GPU found (nvidia-smi -L lists none): the GPU parts will fail;" \
        "use --dry-run to check the script on a CPU"
fi

RESULTS="$WORK/results"
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.json "$RESULTS"/*.failed

# part NAME COMMAND...: run one part, its output shown and kept in WORK/NAME.log; a failure is
# recorded for the summary and does not stop the script.
part() {
    local name=$1
    shift
    echo
    echo "== $name =="
    echo "+ $*"
    "$@" 2>&1 | tee "$WORK/$name.log"
    local status=${PIPESTATUS[0]}
    if [[ "$status" -ne 0 ]]; then
        echo "exit status $status; log: $WORK/$name.log" >"$RESULTS/$name.failed"
        echo "== $name FAILED (exit status $status; log: $WORK/$name.log) =="
    fi
    return 0
}

# skip NAME WHY: a part that does not apply here.
skip() {
    echo
    echo "== $1 == skipped: $2"
}

TRAIN_ARGS=(
    --model_name_or_path "$WORK/model"
    --dataset_name "$WORK/data"
    --eval_config_names normal
    --per_device_train_batch_size "$BATCH"
    --per_device_eval_batch_size "$BATCH"
    --dataloader_num_workers "$WORKERS"
    "${DEVICE_ARGS[@]}"
)
LAUNCH=(
    "$PYTHON" -m accelerate.commands.launch
    --num_machines 1 --mixed_precision "$LAUNCH_PRECISION" --dynamo_backend no
)
# train.py as a user runs it, for STEPS steps; no checkpoints or per-epoch evaluation.
TRAIN_RUN=(
    train.py "${TRAIN_ARGS[@]}"
    --max_steps "$STEPS"
    --eval_strategy no
    --save_strategy no
    --load_best_model_at_end false
    --logging_steps 50
    --report_to none
)

part inputs "$PYTHON" "$HELPER" inputs "$WORK" "${INPUTS[@]}"

launch_part() {
    local name=$1
    shift
    rm -rf "${WORK:?}/$name"
    "${LAUNCH[@]}" "$@" "${TRAIN_RUN[@]}" --output_dir "$WORK/$name" &&
        "$PYTHON" "$HELPER" launch-result "$name" "$WORK/$name" "$WORK"
}

if [[ "$DRY_RUN" == 1 ]]; then
    SINGLE=(--num_processes 1)
else
    # One visible GPU: with several, a one-process Trainer would wrap the model in DataParallel.
    SINGLE=(--num_processes 1 --gpu_ids 0)
fi
part launch-single launch_part launch-single "${SINGLE[@]}"
if [[ "$DDP_PROCESSES" -ge 2 ]]; then
    part launch-ddp launch_part launch-ddp "${DDP_LAUNCH[@]}"
else
    skip launch-ddp "only $GPUS GPU on this machine; DDP needs at least 2"
fi

# One GPU for the in-process parts too (several would mean DataParallel).
if [[ "$DRY_RUN" != 1 ]]; then
    THROUGHPUT=(env CUDA_VISIBLE_DEVICES=0 "$PYTHON" "$HELPER" throughput)
else
    THROUGHPUT=("$PYTHON" "$HELPER" throughput)
fi
SPEED_ARGS=("${TRAIN_ARGS[@]}" --max_steps "$STEPS" --logging_steps 1000000)
part data-path-real "${THROUGHPUT[@]}" data-path-real "$WORK" --data real \
    --warmup "$WARMUP" -- "${SPEED_ARGS[@]}"
part data-path-tensors "${THROUGHPUT[@]}" data-path-tensors "$WORK" --data tensors \
    --warmup "$WARMUP" -- "${SPEED_ARGS[@]}"
part compile-on "${THROUGHPUT[@]}" compile-on "$WORK" --data tensors \
    --warmup "$WARMUP" -- "${SPEED_ARGS[@]}" --torch_compile true --torch_compile_backend "$COMPILE_BACKEND"

"$PYTHON" "$HELPER" summary "$WORK"
