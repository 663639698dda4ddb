#!/usr/bin/env bash
# Creates or refreshes the virtual environment at .venv/ (called by `make env`).
# Idempotent: a stamp holds the hash of the requirement files and of this script,
# so a second run with nothing changed returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.mmfd-env-stamp"
HASH=$(cat requirements/*.txt tools/setup_env.sh setup.py | sha256sum | cut -d' ' -f1)

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
    echo "[make env] $VENV is up to date (stamp $HASH)."
    exit 0
fi

start=$(date +%s)
say() { echo "[make env] $(( $(date +%s) - start ))s: $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Every install is constrained by the runtime pins, so a dependency never drags in
# another numpy/opencv than the one the stack was measured with.
CONSTRAINTS=(-c requirements/runtime.txt)

say "installing torch and mmcv's build tools (requirements/build.txt)"
"${PIP[@]}" install -q "${CONSTRAINTS[@]}" -r requirements/build.txt numpy

if "$VENV/bin/python" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '2.1.0')" 2>/dev/null; then
    say "mmcv 2.1.0 with compiled ops already installed"
else
    say "building mmcv 2.1.0 WITH compiled ops from source (MMCV_WITH_OPS=1)."
    say "the first build takes ~20 minutes on 2 cores; pip caches the wheel for later builds."
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "${PIP[@]}" install "${CONSTRAINTS[@]}" --no-build-isolation -r requirements/mmcv.txt
fi

say "installing the OpenMMLab stack, open_clip, test, lint and docs tools"
"${PIP[@]}" install -q "${CONSTRAINTS[@]}" -r requirements/runtime.txt -r requirements/tests.txt \
    -r requirements/lint.txt -r requirements/docs.txt

say "installing mmfd (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

say "checking the environment"
"$VENV/bin/python" -m mmfd.utils.env_check

echo "$HASH" > "$STAMP"
say "done"
