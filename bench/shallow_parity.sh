#!/usr/bin/env bash
# The fast path's parity with float32 on shallow MNIST: 3 seeds x {fp32, fast}, PCC, 1000 steps, one run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in 0 1 2; do
  for fast in false true; do
    python bench/shallow_mnist.py run --objective pcc --seed $seed --fast $fast --max-steps 1000 --probe-every 1000 \
      --tag parity_fast${fast}_seed${seed} "$@"
  done
done
python bench/shallow_mnist.py parity "$@"
