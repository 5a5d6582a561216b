#!/usr/bin/env bash
# The shallow MNIST protocol (21000 steps of CPC, PCC and D-RFC, probe at step 0 and every 1000) on a GPU, in one
# call of the device tool: at most 10 minutes, with nothing to fetch on the GPU machine.
#
#   MNIST_RAW=path/to/MNIST/raw bash bench/gpu_protocol.sh prepare   # the wheels the GPU image lacks into .whl/, MNIST into data/
#   bash bench/gpu_protocol.sh run       # there, as the device tool's command, carrying .whl and data
#   then here: cp <the returned folder>/gpu_protocol_*.json bench/results/shallow_runs/ &&
#              python bench/shallow_mnist.py protocol --prefix gpu_protocol_ --report shallow_mnist_gpu
#
# The GPU image has torch and pytorch-lightning but not jsonargparse (nor wandb, which a CSVLogger run does not need).
# Each run gets a wall-time budget of MINUTES (default 2, the goal per run), so three runs and the start fit in the
# call; a run that is slower stops at its budget and its JSON says at which step. The probe is pdrl's L-BFGS on the
# GPU (saga's CPU fits would take longer than the training). Knobs: OBJECTIVES, STEPS, PROBE_EVERY, MINUTES, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    # one version of each, the ones this checkout's tests ran with
    local packages=(jsonargparse docstring_parser typeshed_client)
    rm -rf .whl && mkdir -p .whl data/MNIST/raw
    for name in "${packages[@]}"; do
        version=$(python -c "import importlib.metadata as m; print(m.version('$name'))")
        python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$name==$version"
    done
    cp "${MNIST_RAW:?set MNIST_RAW to the folder holding the MNIST .gz files}"/*.gz data/MNIST/raw/
    ls -la .whl data/MNIST/raw
}

run() {
    local out=${OUT:-bench/results/shallow_runs}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD WANDB_MODE=disabled PYTHONUNBUFFERED=1
    mkdir -p "$out"
    exec > >(tee "$out/gpu_protocol_log.txt") 2>&1  # the whole log comes back, not only the call's last lines
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu_protocol_nvidia_smi.txt" || true
    for objective in ${OBJECTIVES:-cpc pcc drfc}; do
        python3 bench/shallow_mnist.py run --objective "$objective" --max-steps "${STEPS:-21000}" \
            --probe-every "${PROBE_EVERY:-1000}" --minutes "${MINUTES:-2}" --threads "${THREADS:-16}" \
            --solver lbfgs --tag "gpu_protocol_$objective" --root data --out "$out" --workdir /tmp/gpu_protocol
    done
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_protocol.sh prepare|run (see the comment at its top)" >&2; exit 2 ;;
esac
