"""The chess zoo models (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; their entries are data in
``deeprobe_bench/zoo/catalogue.json``.
"""

from deeprobe_bench.zoo import catalogue

CHESS_MINI = catalogue.model("chess-mini")

CHESS_MINI_RANDOM = catalogue.model("chess-mini-random")
