"""The persona zoo model ``persona-mini`` (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; the recipe is in
:mod:`deeprobe_bench.tasks.persona.train`.
"""

from deeprobe_bench.subject import ZooModel

PERSONA_MINI = ZooModel(
    name="persona-mini",
    description="word-level HookedTransformer answering persona-evals questions by a stated or implied persona, with a TopK SAE",
    package="deeprobe_bench.tasks.persona",
    trainer="deeprobe_bench.tasks.persona.train:train",
)
