#!/usr/bin/env bash
# The published grid: every cell behind leaderboards/{othello,chess,ioi,persona}.md, seeds 0, 1, 2, with
# the reference rows (oracle, null) and the local judge (judge_score). Idempotent: finished cells are
# skipped, so a killed run resumes where it stopped.
#
#   bash leaderboards/grid.sh [RESULTS_DIR [TASK ...]]   # default leaderboards/results, every task
#   deeprobe-bench leaderboard build --results-dir leaderboards/results --out leaderboards
#
# Publish only from a clean checkout of one commit (every result records its commit and whether the
# tree was dirty; the table header lists them). Models are the shipped zoo models: DEEPROBE_ZOO points at
# an empty folder so that a model of the same name in the user's zoo is not used instead.
# The grid itself is leaderboards/grid.toml; this script runs it with `deeprobe-bench sweep` on WORKERS
# local processes (default 2, this project's reference machine's cores; each dataset's cells stay in one
# process, so each model is loaded and each dataset prepared once per process). Through SWEEP_ARGS add
# `--executor ray --address auto` to run it on a Ray cluster instead.
set -euo pipefail
R="${1:-leaderboards/results}"
shift || true
TASKS="${*:-othello chess ioi persona}"
export DEEPROBE_ZOO="${DEEPROBE_ZOO_FOR_GRID:-$(mktemp -d)}"
# shellcheck disable=SC2086
deeprobe-bench -q sweep "$(dirname "$0")/grid.toml" --results-dir "$R" --tasks "${TASKS// /,}" --workers "${WORKERS:-2}" ${SWEEP_ARGS:-}
