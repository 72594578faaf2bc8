"""The persona zoo model ``persona-mini`` (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; their entries are data in
``deeprobe_bench/zoo/catalogue.json``.
"""

from deeprobe_bench.zoo import catalogue

PERSONA_MINI = catalogue.model("persona-mini")
