"""The IOI zoo model ``ioi-mini`` (declared in the entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; the recipe is in
:mod:`deeprobe_bench.tasks.ioi.train`.
"""

from deeprobe_bench.subject import ZooModel

IOI_MINI = ZooModel(
    name="ioi-mini",
    description="word-level HookedTransformer trained on IOI + filler text, with a TopK SAE (sae_lens)",
    package="deeprobe_bench.tasks.ioi",
    trainer="deeprobe_bench.tasks.ioi.train:train",
)
