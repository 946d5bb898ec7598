#!/usr/bin/env bash
# The declared lower bounds work: install every dependency of pyproject.toml at the lowest
# version it allows (`>=X` becomes `==X`) into a fresh venv, then run the fast tests and one
# end-to-end training run against them.
#
#   .ci/check_lower_bounds.sh                 # fast tests + a tiny training run
#   PYTEST_ARGS="tests/training" .ci/check_lower_bounds.sh
#
# torch and torchvision are taken from the calling environment (their oldest builds are not on
# every machine's package index: this project's is capped); every other dependency is pinned.
# Upper bounds (`<X`) are where koin-hf relies on a library's internals; raise one only after
# this script and `.ci/run` pass against the new release.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/koin-lower-bounds.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
UNPINNED="${UNPINNED:-torch torchvision}"

PINS="$("$PYTHON" - "$REPO/pyproject.toml" "$UNPINNED" <<'PY'
import re
import sys
import tomllib

project = tomllib.loads(open(sys.argv[1], encoding="utf-8").read())["project"]
unpinned = set(sys.argv[2].split())
for requirement in project["dependencies"]:
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
    lowest = re.search(r">=\s*([^,;\s]+)", requirement)
    if name in unpinned or lowest is None:
        continue
    print(f"{name}=={lowest.group(1)}")
PY
)"
echo "== the lowest versions pyproject.toml allows"
echo "$PINS"

"$PYTHON" -m venv --system-site-packages "$WORK/venv"
VPY="$WORK/venv/bin/python"
# shellcheck disable=SC2086
# The optional extras the tests use, at any version (matplotlib may come from the caller).
"$VPY" -m pip install --quiet $PINS "pytest>=8" "tensorboard>=2.14"
# Editable: the tests read the checkout (tests/test_architecture.py, configs/, train.py).
"$VPY" -m pip install --quiet --no-deps -e "$REPO"
"$VPY" -m pip list 2>/dev/null | grep -iE "^(transformers|datasets|accelerate|evaluate|huggingface.hub|peft|timm|numpy|pillow|torch) " || true

echo "== tests against the lower bounds"
cd "$REPO"
export HF_HUB_OFFLINE=1 KOIN_HF_CACHE="${KOIN_HF_CACHE:-$WORK/cache}"
if [ -n "${PYTEST_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    "$VPY" -m pytest -q -p no:cacheprovider $PYTEST_ARGS
else
    "$VPY" -m pytest -q -p no:cacheprovider -m "not slow"
    "$VPY" -m pytest -q -p no:cacheprovider \
        "tests/training/test_surface.py::test_default_run_is_quiet_and_leaves_a_clean_model_folder"
fi
echo "lower bounds check passed"
