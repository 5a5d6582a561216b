#!/usr/bin/env bash
# The fast path's parity with float32 on shallow MNIST: 3 seeds x {fp32, fast}, PCC, 2000 steps, probe every 1000,
# one run at a time. The runs' JSON files go to bench/results/shallow_runs/ (committed); extra arguments (e.g.
# --threads 1) go to every run. PARITY_TAG (default parity) starts the runs' tags: another machine's runs get their own
# (e.g. PARITY_TAG=parity_amx), and the report has a table per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in 0 1 2; do
  for fast in false true; do
    python bench/shallow_mnist.py run --objective pcc --seed $seed --fast $fast --max-steps 2000 --probe-every 1000 \
      --tag "${PARITY_TAG:-parity}_fast${fast}_seed${seed}" "$@"
  done
done
python bench/shallow_mnist.py parity "$@"
