"""IOI speed figures, side by side in one run (ratios are the point; seconds depend on the machine).

1. The main job, ``deeprobe-bench run --task ioi --method mcts``, cold (empty activation cache) then
   warm (same cache, ``--force``): wall time of each as a whole command, and the ratio.
2. Objective calls per second of the IOI objective (what MCTS spends its budget on), on the same random
   latent sets: from the hook on the positions from S2 on only (``Split.suffix_run``: the default), from
   the hook on every position (``start_at_layer``), and the whole model with a hook; all must give the
   same numbers.

Usage: ``python benchmarks/bench_ioi.py [--calls 200] [--model ioi-mini]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(cache: str, results: str, model: str, force: bool) -> tuple[float, float]:
    """Wall time of the whole command, and the task's prepare stage (activations) from the result."""
    env = {**os.environ, "DEEPROBE_CACHE": cache}
    cmd = [sys.executable, "-m", "deeprobe_bench.cli", "--quiet", "run", "--task", "ioi", "--method", "mcts",
           "--model", model, "--results-dir", results] + (["--force"] if force else [])  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    (path,) = Path(results).rglob("seed0.json")
    return wall, json.loads(path.read_text())["details"]["timing"]["prepare_s"]


def objective_rate(model: str, calls: int) -> tuple[dict[str, float], float]:
    """Objective calls per second per path, and the largest difference of the objective between paths."""
    import torch

    from deeprobe_bench.api import parse_config
    from deeprobe_bench.baselines.sae import latent_features
    from deeprobe_bench.subject import load_subject
    from deeprobe_bench.tasks.ioi import IOITask
    from deeprobe_bench.tasks.ioi.metrics import Split

    subject = load_subject(model)
    data = IOITask().prepare(subject, seed=0)
    sae = subject.sae_for(data.hook_name)
    gen = torch.Generator().manual_seed(0)
    sets = [torch.randperm(sae.cfg.d_sae, generator=gen)[: 1 + i % 12] for i in range(calls)]
    rates, values = {}, {}
    suffix_run = Split.suffix_run
    for path, reuse in (("suffix from S2", True), ("from the hook", True), ("whole model", False)):
        Split.suffix_run = suffix_run if path == "suffix from S2" else (lambda self, model, hook: None)
        task = IOITask(parse_config(IOITask.Config, {"reuse_below_hook": str(reuse)}))
        task.objective(data, latent_features(sae, data.hook_name, sets[0]))  # builds the suffix run once
        t0 = time.perf_counter()
        values[path] = [task.objective(data, latent_features(sae, data.hook_name, s)) for s in sets]
        rates[path] = calls / (time.perf_counter() - t0)
    Split.suffix_run = suffix_run
    ref = values["whole model"]
    diff = max(abs(a - b) for v in values.values() for a, b in zip(v, ref, strict=True))
    return rates, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--model", default="ioi-mini")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as results:
        cold, cold_prep = timed_run(cache, results, args.model, force=False)
        warm, warm_prep = timed_run(cache, results, args.model, force=True)
    print(f"main job (run --task ioi --method mcts --model {args.model}):")
    print(f"  whole command incl. imports: cold cache {cold:.2f} s | warm cache {warm:.2f} s | "
          f"cold / warm = {cold / warm:.2f}x")
    print(f"  task prepare (activations + baselines): cold {cold_prep:.2f} s | warm {warm_prep:.2f} s | "
          f"cold / warm = {cold_prep / warm_prep:.2f}x")
    os.environ["DEEPROBE_CACHE"] = "off"
    rates, diff = objective_rate(args.model, args.calls)
    whole = rates["whole model"]
    print(f"IOI objective calls per second ({args.calls} random latent sets of 1..12 latents):")
    print("  " + " | ".join(f"{k} {v:.1f}/s ({v / whole:.2f}x)" for k, v in rates.items())
          + f" | max |difference| of the objective {diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
