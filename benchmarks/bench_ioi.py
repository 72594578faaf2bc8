"""IOI speed figures, side by side in one run (ratios are the point; seconds depend on the machine).

1. The main job, ``deeprobe-bench run --task ioi --method mcts``, cold (empty activation cache) then
   warm (same cache, ``--force``): wall time of each as a whole command, and the ratio.
2. Objective calls per second of the IOI objective (what MCTS spends its budget on), starting the
   forward pass at the hook from cached activations (``start_at_layer``) vs running the whole model
   with a hook, on the same random latent sets; the two must give the same numbers.

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


def objective_rate(model: str, calls: int) -> tuple[float, float, float]:
    import torch

    from deeprobe_bench.api import parse_config
    from deeprobe_bench.baselines.sae import latent_features
    from deeprobe_bench.subject import load_subject
    from deeprobe_bench.tasks.ioi import IOITask

    subject = load_subject(model)
    data = IOITask().prepare(subject, seed=0)
    sae = subject.sae_for(data.hook_name)
    gen = torch.Generator().manual_seed(0)
    sets = [torch.randperm(sae.cfg.d_sae, generator=gen)[: 1 + i % 12] for i in range(calls)]
    rates, values = {}, {}
    for reuse in (True, False):
        task = IOITask(parse_config(IOITask.Config, {"reuse_below_hook": str(reuse)}))
        t0 = time.perf_counter()
        values[reuse] = [task.objective(data, latent_features(sae, data.hook_name, s)) for s in sets]
        rates[reuse] = calls / (time.perf_counter() - t0)
    diff = max(abs(a - b) for a, b in zip(values[True], values[False], strict=True))
    return rates[True], rates[False], diff


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
    reuse, full, diff = objective_rate(args.model, args.calls)
    print(f"IOI objective calls per second ({args.calls} random latent sets of 1..12 latents):")
    print(f"  start_at_layer (reuse below hook) {reuse:.1f}/s | full forward with hook {full:.1f}/s | "
          f"ratio {reuse / full:.2f}x | max |difference| of the objective {diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
