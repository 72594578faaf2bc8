"""The chess zoo models (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; the recipe is in
:mod:`deeprobe_bench.tasks.chess.train`.
"""

from deeprobe_bench.subject import ZooModel

CHESS_MINI = ZooModel(
    name="chess-mini",
    description="Chess-GPT-style character model trained on random legal games, with standard/TopK/p-anneal SAEs",
    package="deeprobe_bench.tasks.chess",
    trainer="deeprobe_bench.tasks.chess.train:train",
)

CHESS_MINI_RANDOM = ZooModel(
    name="chess-mini-random",
    description="chess-mini's architecture at random init (seeded), with a standard SAE: the paper's baseline",
    package="deeprobe_bench.tasks.chess",
    trainer="deeprobe_bench.tasks.chess.train:train_random",
)
