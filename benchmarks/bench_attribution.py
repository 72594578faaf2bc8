"""Attribution patching vs exact activation patching over all latents of the shipped ioi-mini SAE.

The point of attribution patching is that it scores every latent from 2 forward + 1 backward passes per
batch, where exact patching needs one forward pass per latent. This runs both (and IG, and exact patching
of only the latents that differ between the runs) side by side in one process, on the same prompts (the
IOI task's objective prompts, IOI vs ABC), and prints wall times, passes and the ratios, plus the
agreement of the rankings (Spearman of |effect| and top-10 / top-50 recall over the latents that differ).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_attribution.py [--model ioi-mini] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ioi-mini")
    ap.add_argument("--repeats", type=int, default=3, help="attribution runs to take the fastest of")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from deeprobe_bench.baselines._patching import latent_attribution, latent_patching
    from deeprobe_bench.metrics.ranking import agreement
    from deeprobe_bench.subject import load_subject
    from deeprobe_bench.tasks.ioi import IOITask

    subject = load_subject(args.model)
    data = IOITask().prepare(subject, seed=0)
    hook, b = data.hook_name, data.behaviour
    sae = subject.sae_for(hook)
    model = subject.model

    def best_of(fn):
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            runs.append((time.perf_counter() - t0, out))
        return min(runs, key=lambda r: r[0])

    t_atp, atp = best_of(lambda: latent_attribution(model, sae, hook, b))
    t_ig, ig = best_of(lambda: latent_attribution(model, sae, hook, b, steps=10))
    t0 = time.perf_counter()
    ex_all = latent_patching(model, sae, hook, b, skip_inactive=False)
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex_act = latent_patching(model, sae, hook, b, skip_inactive=True)
    t_act = time.perf_counter() - t0
    diff = float((ex_all.effects - ex_act.effects).abs().max())
    sample = torch.nonzero(ex_all.active).flatten()

    d_sae = sae.cfg.d_sae
    print(f"{args.model}: SAE at {hook}, {d_sae} latents (+ error term); {len(b)} prompts (IOI vs ABC), "
          f"batches of {b.batch_size}; {len(sample)} latents differ between the runs at the task positions")
    rows = [
        ("attribution patching (atp)", t_atp, atp.cost),
        ("integrated gradients (ig, 10 steps)", t_ig, ig.cost),
        (f"exact patching, all {d_sae} latents", t_all, ex_all.cost),
        (f"exact patching, the {len(sample)} that differ", t_act, ex_act.cost),
    ]
    for name, t, cost in rows:
        print(f"  {name:<40} {t:8.3f} s   {cost.forward_passes:5d} forward, {cost.backward_passes:3d} backward passes")
    print(f"  exact (all latents) / atp = {t_all / t_atp:.1f}x   exact (all) / ig = {t_all / t_ig:.1f}x   "
          f"exact (differing only) / atp = {t_act / t_atp:.1f}x")
    print(f"  max |exact(all) - exact(differing only)| = {diff:.2e}")
    for name, est in (("atp", atp), ("ig", ig)):
        a = agreement(est.effects[sample], ex_all.effects[sample])
        print(f"  agreement {name} vs exact over the {len(sample)} differing latents: Spearman |effect| "
              f"{a['spearman']:.4f}, top-10 recall {a['recall@10']:.2f}, top-50 recall {a['recall@50']:.2f}")


if __name__ == "__main__":
    main()
