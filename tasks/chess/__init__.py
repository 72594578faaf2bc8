"""The ``chess`` task (chess board state). Definitions and sources: README.md beside this file."""

from deeprobe_bench.tasks.chess.task import ChessConfig, ChessTask

__all__ = ["ChessConfig", "ChessTask"]
