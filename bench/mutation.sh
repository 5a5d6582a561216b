#!/usr/bin/env bash
# Mutation check of the losses, the linear probe and the data modules with mutmut. A bench script, not part of CI.
#
#   pip install -e '.[mutation]'                       # mutmut 3 (pulls no torch)
#   bench/mutation.sh                                  # pdrl/losses, the probe (callback and solvers), pdrl/data
#   bench/mutation.sh pdrl/losses/variational.py       # only these files
#   MUTATION_SECONDS=900 bench/mutation.sh ...          # stop after this many seconds (default: no limit)
#
# It runs in a temporary copy of the working tree (tracked and untracked, not ignored, files), so the checkout is
# never mutated, with a [mutmut] section written into the copy's setup.cfg. mutmut runs, for each mutant, the tests
# below that reach the mutated function (one pytest process, forked per mutant, one torch thread); the probe's
# 2-process gloo test is left out, so the DDP sharding of the probe (gather_shards) is not covered. The last lines
# print killed / survived / not checked per file, and the score killed / (killed + survived) over checked mutants.
# Set MUTATION_KEEP=1 to keep the copy (mutmut browse / show / apply work there).
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=("$repo"/pdrl/losses/*.py "$repo"/pdrl/callbacks/linear_probe.py "$repo"/pdrl/probe_solvers.py "$repo"/pdrl/data/*.py)
    files=("${files[@]#"$repo"/}")
fi
tests=(tests/test_losses.py tests/test_losses_numerics.py tests/test_readouts_exact.py tests/test_location_losses.py
       tests/test_layouts.py tests/test_linear_probe.py tests/test_mutations.py tests/test_variational_values.py
       tests/test_readout_negatives.py tests/test_linear_probe_hooks.py
       tests/test_loss_registry.py tests/test_score_matrix.py
       tests/test_location_losses_contracts.py tests/test_ratio_fitting_values.py tests/test_layouts_ranks.py
       tests/test_image_folder.py tests/test_image_folder_classes.py tests/test_images.py tests/test_data_files.py
       tests/test_word_vectors.py tests/test_whole_images.py tests/test_augment.py tests/test_gaussians.py
       tests/test_unpadded_sampler.py)

work=$(mktemp -d "${TMPDIR:-/tmp}/pdrl-mutation.XXXXXX")
if [ "${MUTATION_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work" 2>/dev/null || true)
{
    echo "[mutmut]"
    echo "source_paths = pdrl"
    echo "only_mutate ="
    printf '    %s\n' "${files[@]}"
    echo "pytest_add_cli_args_test_selection ="
    printf '    %s\n' "${tests[@]}"
    echo "pytest_add_cli_args ="
    echo "    -p"
    echo "    no:cacheprovider"
    echo "    -p"
    echo "    no:xdist"  # mutmut runs the tests in its own forked processes, one mutant at a time
    echo "    -k"
    # the 2-process DDP probe test (spawns processes, 20+ s, outside a forked mutant)
    echo "    not gloo_ranks"
    echo "use_git_change_detection = false"
} >> "$work/setup.cfg"
echo "mutating ${files[*]} in $work; tests: ${tests[*]}"

cd "$work"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=disabled PYTHONPATH=
limit=()
if [ -n "${MUTATION_SECONDS:-}" ]; then limit=(timeout --signal=INT "$MUTATION_SECONDS"); fi
started=$(date +%s)
"${limit[@]}" mutmut run --max-children 1 > mutmut-run.log 2>&1 || echo "mutmut run stopped (status $?), after $(( $(date +%s) - started )) s"
tail -c 2000 mutmut-run.log | tr '\r' '\n' | tail -5
mutmut results --all true > mutmut-results.txt 2>&1 || true
python - "${files[@]}" <<'PY'
import collections, re, sys
counts = collections.defaultdict(collections.Counter)
for line in open("mutmut-results.txt"):
    match = re.match(r"\s*(\S+?)\.(x\S*)__mutmut_\d+: (.+)$", line.strip())
    if match:
        module = match.group(1)
        counts[module][match.group(3).strip()] += 1
total = collections.Counter()
print(f"{'module':45} {'killed':>7} {'survived':>9} {'other':>7}  score")
for module in sorted(counts):
    c = counts[module]
    total.update(c)
    other = sum(v for k, v in c.items() if k not in ("killed", "survived"))
    checked = c["killed"] + c["survived"]
    score = f"{c['killed'] / checked:.1%}" if checked else "-"
    print(f"{module:45} {c['killed']:7} {c['survived']:9} {other:7}  {score}  {dict(c)}")
checked = total["killed"] + total["survived"]
print(f"all: {dict(total)}; score {total['killed']}/{checked} = {total['killed'] / max(checked, 1):.1%} of checked mutants")
PY
echo "survivors: grep survived $work/mutmut-results.txt; mutmut show <name> in $work (set MUTATION_KEEP=1 to keep it)"
