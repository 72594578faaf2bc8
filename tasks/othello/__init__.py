"""The ``othello`` task: Othello board state (Karvonen et al. 2024). Definitions and sources: README.md."""

from deeprobe_bench.tasks.othello.task import OthelloTask

__all__ = ["OthelloTask"]
