#!/usr/bin/env bash
# The GPU benchmark in one command, for a fresh GPU machine with this repository checked out:
#
#   bash scripts/bench_gpu.sh                     # about 7 minutes: writes benchmarks/throughput-gpu.md/.json
#   bash scripts/bench_gpu.sh --tiny --device cpu # a tiny BERT on the CPU: checks the harness (a minute)
#   PYTHON=python3 bash scripts/bench_gpu.sh --configs plain,finetune  # default: .venv's, else python3
#   bash scripts/bench_gpu.sh --fetch-wheels      # here, with PyPI: wheels for an offline GPU machine
#
# Arguments go to scripts/bench_gpu.py (its --help lists them). Nothing is installed that is
# already importable, so the machine can be offline once the packages are there. What is missing
# comes, in this order, from wheels in .whl/ (installed offline into $BENCH_SITE, for a machine
# without an index: benchmarks/README.md lists the packages), else from the package index:
# torch, then this project (`pip install -e .`). finetune itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi  # `make setup`'s
SITE=${BENCH_SITE:-/tmp/bench-gpu-site}
# What the benchmark's `finetune train` and Trainer scripts import (module names, not package names).
NEEDED="torch transformers accelerate datasets pydantic yaml sklearn scipy peft psutil"
# What a GPU image with torch, transformers, accelerate, peft and scikit-learn lacks of that (and
# their needs), at the versions installed where --fetch-wheels runs.
WHEELS="datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection"

missing() {
    "$PY" - "$@" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

if [ "${1:-}" = "--fetch-wheels" ]; then
    pins=$("$PY" -c 'import sys; from importlib.metadata import version; print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' $WHEELS)
    echo "bench_gpu: downloading $pins for CPython ${WHEEL_PYTHON:-3.12}, x86-64 Linux, into .whl/"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $pins
    echo "bench_gpu: keep .whl/ out of commits (e.g. /.whl/ in .git/info/exclude) and take it to the GPU machine"
    exit 0
fi
if ls .whl/*.whl >/dev/null 2>&1 && [ -n "$(missing $NEEDED)" ]; then
    echo "bench_gpu: installing the wheels in .whl/ into $SITE (offline)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -n "$(missing torch)" ]; then
    echo "bench_gpu: torch is missing; installing it from the package index"
    "$PY" -m pip install -q torch
fi
if [ -n "$(missing $NEEDED)" ]; then
    echo "bench_gpu: missing $(missing $NEEDED); installing this project from the package index"
    "$PY" -m pip install -q -e . || {
        echo "bench_gpu: could not install; this machine needs PyPI access or the wheels in .whl/" \
            "(benchmarks/README.md, 'GPU table')" >&2
        exit 1
    }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" scripts/bench_gpu.py "$@"
