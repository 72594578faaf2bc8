"""``prompt``: steering by prompting, the baseline that beat every representation method in AxBench.

AxBench (Wu et al. 2025, arXiv 2501.17148) always includes a prompting baseline: instead of adding a
vector, the concept is asked for in the prompt (harmonic-mean steering score 0.894 against 0.239 for
DiffMean). Here the instruction of each concept is the one the task offers in
``ctx.steering_prompts`` (``{concept: instruction}``; the persona task's ``You are agreeable.``).

The FeatureSet is of kind ``prompts`` (``Method.kind``, ``FeatureSet.kind``): it carries the instructions in
``meta["steering_prompts"]`` (``deeprobe_bench.metrics.steering.PROMPTS_KEY``) and one zero direction per
concept (it has no direction). Tasks that accept that kind (``Task.accepts``) prepend the instruction; the
runner refuses this method on every other task before any work, and the method refuses a task that offers
no instructions (a ``UserError``).
"""

from __future__ import annotations

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, UserError


class Prompt(Method):
    """Steering by prompting (AxBench's prompting baseline, Wu et al. 2025): the concept's instruction from
    the task (``ctx.steering_prompts``) instead of a vector.

    Returns a FeatureSet of kind ``prompts`` (instructions in ``meta``, one zero direction per concept);
    only tasks that accept that kind score it.
    """

    name = "prompt"
    description = "prompting with the concept's instruction (AxBench's prompting baseline); no direction"
    supervision = "none"
    kind = "prompts"
    needs = ("steering_prompts",)

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.metrics.steering import PROMPTS_KEY

        prompts = ctx.steering_prompts
        if not prompts:
            raise UserError(f"method {self.name} needs a task that offers steering instructions "
                            "(ctx.steering_prompts); this task offers none")  # fmt: skip
        names = list(prompts)
        d = ctx.train_acts.shape[-1]
        zeros = torch.zeros(len(names), d)
        return FeatureSet(
            ctx.hook_name,
            directions=zeros,
            encoder=lambda a: torch.zeros(*a.shape[:-1], len(names)),
            labels=names,
            meta={PROMPTS_KEY: dict(prompts)},
            kind="prompts",
        )
