#!/usr/bin/env bash
# The cells behind leaderboards/synthetic.md: the synth-4k world, seeds 0, 1, 2, the reference rows
# (oracle, null), the trained SAEs and the three random-SAE sanity baselines (Korznikov et al. 2026), probes,
# diffmean and random directions. Idempotent: finished cells are skipped.
#
#   bash leaderboards/synthetic.sh [RESULTS_DIR [SEEDS]]     # default leaderboards/results, 0,1,2
#   deeprobe-bench leaderboard build --results-dir RESULTS_DIR --out OUT    # then keep OUT/synthetic.*
set -euo pipefail
R="${1:-leaderboards/results}"
SEEDS="${2:-0,1,2}"
export DEEPROBE_ZOO="${DEEPROBE_ZOO_FOR_GRID:-$(mktemp -d)}"  # the shipped world, not a user's rebuilt one
run() { deeprobe-bench -q run --task synthetic --model synth-4k --seeds "$SEEDS" --results-dir "$R" "$@"; }

run --method oracle,null,random,probe,diffmean
for arch in topk standard frozen-decoder soft-frozen-decoder frozen-encoder; do
  run --method sae -M arch="$arch"
done
