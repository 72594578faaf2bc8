"""The ``ioi`` task (indirect object identification). Definitions and sources: README.md beside this file."""

from deeprobe_bench.tasks.ioi.task import IOIConfig, IOITask

__all__ = ["IOIConfig", "IOITask"]
