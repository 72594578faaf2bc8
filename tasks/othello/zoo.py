"""The Othello zoo models (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; the recipe is in
:mod:`deeprobe_bench.tasks.othello.train`.
"""

from deeprobe_bench.subject import ZooModel

OTHELLO_MINI = ZooModel(
    name="othello-mini",
    description="Othello-GPT-style HookedTransformer trained on random legal games, with standard/TopK/p-anneal SAEs",
    package="deeprobe_bench.tasks.othello",
    trainer="deeprobe_bench.tasks.othello.train:train",
)

OTHELLO_MINI_RANDOM = ZooModel(
    name="othello-mini-random",
    description="othello-mini's architecture at random init (seeded), with a standard SAE: the paper's baseline",
    package="deeprobe_bench.tasks.othello",
    trainer="deeprobe_bench.tasks.othello.train:train_random",
)
