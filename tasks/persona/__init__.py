"""The ``persona`` task (persona steering). Definitions and sources: README.md beside this file."""

from deeprobe_bench.tasks.persona.task import PersonaConfig, PersonaTask

__all__ = ["PersonaConfig", "PersonaTask"]
