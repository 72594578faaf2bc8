"""The ``synthetic`` task: planted features of a SynthSAEBench world (sae_lens.synthetic). Definitions: README.md."""

from deeprobe_bench.tasks.synthetic.task import SyntheticTask

__all__ = ["SyntheticTask"]
