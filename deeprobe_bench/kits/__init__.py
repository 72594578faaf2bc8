"""Kits: what a family of tasks shares, so that each task of the family supplies only what is its own.

- :mod:`deeprobe_bench.kits.boardgame`: the board-game tasks (``othello``, ``chess``): splits of games,
  the search objective, evaluation by board reconstruction and coverage
  (:mod:`deeprobe_bench.metrics.board`), judge examples. A game supplies its BSPs, games, encoding and labels.

The zoo kit for training the models of every task is :mod:`deeprobe_bench.zoo`.
"""
