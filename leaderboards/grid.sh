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
set -euo pipefail
R="${1:-leaderboards/results}"
shift || true
TASKS="${*:-othello chess ioi persona}"
export DEEPROBE_ZOO="${DEEPROBE_ZOO_FOR_GRID:-$(mktemp -d)}"
run() {  # run --task T ...: only the tasks asked for
  [[ " $TASKS " == *" $2 "* ]] || return 0
  deeprobe-bench -q run --seeds 0,1,2 --results-dir "$R" --judge-base-url local "$@"
}

for model in othello-mini othello-mini-random; do
  run --task othello --model "$model" --method oracle,null,probe,neurons,random
  run --task othello --model "$model" --method sae -M arch=standard
done
run --task othello --model othello-mini --method sae,greedy,mcts
run --task othello --model othello-mini --method sae -M arch=panneal
run --task othello --model othello-mini --method rlaif -M n=10 -M steps=0 -M population=2
run --task othello --model othello-mini --method rlaif -M n=10 -M steps=2 -M population=2

for model in chess-mini chess-mini-random; do
  run --task chess --model "$model" --method oracle,null,probe,neurons,random
  run --task chess --model "$model" --method sae -M arch=standard
done
run --task chess --model chess-mini --method sae,greedy,mcts
run --task chess --model chess-mini --method sae -M arch=panneal
run --task chess --model chess-mini --method rlaif -M steps=0
run --task chess --model chess-mini --method rlaif

run --task ioi --method oracle,null,exact,attribution,greedy,mcts,sae,probe,random
run --task ioi --method mcts -M prior=attribution
run --task ioi --method mcts -M budget=100 -M prior=attribution
run --task ioi --method mcts -M budget=100
run --task ioi --method rlaif -M steps=0
run --task ioi --method rlaif
run --task ioi --method rlaif -M steps=0 -M w_causal=0.0
run --task ioi --method rlaif -M w_causal=0.0
run --task ioi --method rlaif -M steps=20 -M w_causal=0.0

run --task persona --method oracle,null,prompt,diffmean,contrastive,probe,sae,random
run --task persona --method mcts -M budget=100
run --task persona --method rlaif -M n=10 -M steps=0 -M population=2
run --task persona --method rlaif -M n=10 -M steps=2 -M population=2
