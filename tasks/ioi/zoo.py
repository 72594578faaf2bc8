"""The IOI zoo model ``ioi-mini`` (declared in the entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; their entries are data in
``deeprobe_bench/zoo/catalogue.json``.
"""

from deeprobe_bench.zoo import catalogue

IOI_MINI = catalogue.model("ioi-mini")
