#!/usr/bin/env bash
# A non-editable install works: build the wheel, install it alone into a fresh venv, and from a
# folder outside the repository run `koin prepare`, `load_dataset` and a tiny training run (a
# preset by name, `koin train`, `python -m koin_hf.training`) with that venv's Python.
# The editable checkout hides missing package data (the builder, the card templates), so this
# is the only check that sees what `pip install koin-hf` users get.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/koin-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== copying the source tree (the checkout stays free of build/ and *.egg-info)"
mkdir -p "$WORK/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked and untracked-but-not-ignored files: what a fresh clone plus new work holds
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$WORK/src"
else
    (cd "$REPO" && tar --exclude=.git --exclude=build --exclude='*.egg-info' -cf - .) \
        | tar -xf - -C "$WORK/src"
fi

echo "== building the wheel"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/koin_hf-*.whl)"
"$PYTHON" - "$WHEEL" <<'EOF'
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
required = [
    "koin_hf/dataset_script/koin.py",
    "koin_hf/model_cards/dataset_card.md.j2",
    "koin_hf/model_cards/model_card.md.j2",
    "koin_hf/synthetic/__init__.py",
    "koin_hf/evaluation/top_k_accuracy/top_k_accuracy.py",
    "koin_hf/configs/paper/vit.yaml",
    "koin_hf/configs/paper/50shot.yaml",
    "koin_hf/configs/accelerate/cpu_2proc.yaml",
    "koin_hf/training/__main__.py",
    *(f"koin_hf/{stage}/__init__.py" for stage in ("data", "models", "training", "evaluation", "hub", "deploy")),
]
missing = [name for name in required if name not in names]
assert not missing, f"wheel lacks {missing}"
print(f"wheel carries the builder, templates, presets and metric module ({len(names)} files)")
EOF

echo "== installing it into a venv (torch & co from the calling environment, no downloads)"
"$PYTHON" -m venv --system-site-packages "$WORK/venv"
VPY="$WORK/venv/bin/python"
# When the caller is itself a venv (CI's), --system-site-packages reaches only the base
# interpreter; a .pth line makes the caller's packages visible too. Directories named in a .pth
# file do not run their own .pth files, so the caller's editable koin_hf stays invisible.
"$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib']); print(sysconfig.get_paths()['platlib'])" \
    > "$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_calling_env.pth"
"$VPY" -m pip install --quiet --no-deps --force-reinstall --no-index "$WHEEL"

echo "== koin prepare + load_dataset from outside the repository"
mkdir -p "$WORK/run"
cd "$WORK/run"
export HF_HUB_OFFLINE=1 HF_DATASETS_CACHE="$WORK/hf-cache"
"$VPY" - <<'EOF'
import csv
from pathlib import Path

from PIL import Image

# A tiny raw KoIn tree, written here so the check needs nothing from the repository.
ids, names = ["0000", "0001"], ["Kim Minji", "이지은"]
counts = {"normal_cases/train": 6, "normal_cases/test": 1, "hard_cases/test": 2, "Group_cases/test": 1}
for split, count in counts.items():
    for index, class_id in enumerate(ids):
        for i in range(count):
            path = Path("raw", "Dataset", split, class_id, f"img_{i}.jpg")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + i, 32), (200 * index, 60, 30 * i)).save(path)
with open("raw/Dataset/classes.csv", "w", newline="", encoding="utf-8") as handle:
    csv.writer(handle).writerows([["id", "name"], *zip(ids, names)])
EOF
"$WORK/venv/bin/koin" prepare raw koin
"$VPY" - "$WORK/venv" "$REPO" <<'EOF'
import sys
from importlib import resources
from pathlib import Path

import datasets

import koin_hf
import koin_hf.dataset_script.koin as builder

venv, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
for module in (koin_hf, builder):
    where = Path(module.__file__).resolve()
    assert where.is_relative_to(venv), f"{module.__name__} imported from {where}, not the venv"
    assert not where.is_relative_to(repo), f"{module.__name__} imported from the checkout"
templates = resources.files("koin_hf.model_cards")
assert templates.joinpath("dataset_card.md.j2").is_file(), "dataset card template missing"

hard = datasets.load_dataset("koin", "hard")  # the cwd-relative name users type
assert hard["test"].num_rows == 4, hard
assert hard["test"].features["label"].names == ["Kim Minji", "이지은"]
assert hard["test"][0]["image"].mode == "RGB"
normal = datasets.load_dataset("koin", "normal")
assert {s: d.num_rows for s, d in normal.items()} == {"train": 12, "test": 2}
assert "KoIn" in Path("koin/README.md").read_text(encoding="utf-8")
print(f"wheel check passed: koin_hf from {Path(koin_hf.__file__).parent}")
EOF

echo "== training a tiny model from the wheel (presets by name, koin train, python -m)"
"$VPY" - <<'EOF'
from koin_hf.training.arguments import parse_arguments

model_args, data_args, _ = parse_arguments(["paper/vit", "paper/50shot", "--bf16", "false"])
assert model_args.model_name_or_path == "vit" and data_args.shots_per_class == 50
print("presets paper/vit + paper/50shot resolve from the wheel")
EOF
"$VPY" -m koin_hf.training --help | grep -q -- "--learning_rate"
"$WORK/venv/bin/koin" train -- --help | grep -q "paper/50shot"
TINY=(--dataset_name koin --model_name_or_path vit-tiny --max_steps 2 --per_device_train_batch_size 4
      --per_device_eval_batch_size 8 --dataloader_num_workers 0)
"$WORK/venv/bin/koin" train "${TINY[@]}" --output_dir tiny-koin > koin-train.log 2>&1 \
    || { cat koin-train.log; exit 1; }
"$VPY" -m koin_hf.training "${TINY[@]}" --output_dir tiny-module > module-train.log 2>&1 \
    || { cat module-train.log; exit 1; }
"$VPY" - <<'EOF'
from pathlib import Path

from transformers import pipeline

for out in ("tiny-koin", "tiny-module"):
    for name in ("model.safetensors", "config.json", "README.md", "koin_training.json", "all_results.json"):
        assert Path(out, name).is_file(), f"{out} lacks {name}"
    assert not Path(out, "checkpoints").exists(), f"{out} kept its checkpoints"
    labels = pipeline("image-classification", model=out, device="cpu").model.config.id2label
    assert sorted(labels.values()) == ["Kim Minji", "이지은"], labels
print("wheel check passed: trained tiny models with `koin train` and `python -m koin_hf.training`")
EOF
