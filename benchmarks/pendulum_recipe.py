"""Pendulum-v1 recipe search for ``negd reproduce control`` (docs/results/control-pendulum-recipe.md).

Paired neuroevolution at beta = inf (``MinibatchNeuroevolution(sigma, mode="paired")``: parent and
proposal x + sigma xi play the same E episodes of the step, the proposal is kept iff its loss is not
higher) for several (sigma, init) settings at once: each setting's ``reps`` realizations are rows of
one batched rollout (rollouts cost ~constant per environment step up to ~1000 rows on one thread, so
a grid costs about as much as one setting), and parent and proposal share that rollout. Mutations
(rng.normal(seed, realization, step)) and episodes (seed, realization, step) are the rule's, realization
r of every setting sees the same ones (common random numbers across settings). The start of a setting
is one x ~ N(0, init^2) (paper_init(seed)) shared by its realizations, or zeros for init 0.

Every ``every`` steps: held-out return (30 episodes per realization, 100 at the end; HELDOUT_STEP,
never trained on) per setting, mean +- SE over realizations [worst, best], acceptance, CPU seconds of
the whole grid. ``--rule popK``: (1+K) elitist on the step's episodes instead (parent re-scored).

    PYTHONPATH=src python benchmarks/pendulum_recipe.py --width 8 --sigmas 0.5,1 --inits 0.5,1 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from negd import rng
from negd.envs import ControlLoss, heldout_returns
from negd.losses.models import MLPSpec, paper_init


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--sigmas", default="0.5,1.0")
    p.add_argument("--inits", default="0.5")
    p.add_argument("--reps", type=int, default=6, help="realizations per setting")
    p.add_argument("--episodes", type=int, default=16, help="E per loss")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rule", default="ne", help="ne (paired neuroevolution) or popK ((1+K) elitist)")
    a = p.parse_args()
    torch.set_num_threads(1)
    spec = MLPSpec(depth=1, width=a.width, in_features=3, out_features=1)
    n = spec.n_params
    configs = [(float(s), float(i)) for s in a.sigmas.split(",") for i in a.inits.split(",")]
    starts = [paper_init(n, i, seed=a.seed, dtype=torch.float64) if i > 0
              else torch.zeros(n, dtype=torch.float64) for _, i in configs]
    x = torch.cat([x0.expand(a.reps, n) for x0 in starts]).clone()
    sigma = torch.tensor([s for s, _ in configs for _ in range(a.reps)], dtype=torch.float64)[:, None]
    rid = torch.arange(a.reps).repeat(len(configs))
    rows = x.shape[0]
    loss = ControlLoss("Pendulum-v1", spec, episodes=a.episodes, seed=a.seed)
    k = 1 if a.rule == "ne" else int(a.rule[3:])
    accepted = torch.zeros(rows)
    cpu = time.process_time()
    for t in range(a.steps):
        if k == 1:
            proposal = x + sigma * rng.normal(a.seed, rid, t, n).to(torch.float64)
            both = loss.on_episodes(a.seed, torch.cat([rid, rid]), t)(torch.cat([x, proposal]))
            ok = both[rows:] <= both[:rows]
        else:
            xis = torch.stack([rng.normal(a.seed, rid * k + j, t, n).to(torch.float64) for j in range(k)], 1)
            children = x[:, None] + sigma[:, :, None] * xis
            ids = torch.cat([rid, rid.repeat_interleave(k)])
            losses = loss.on_episodes(a.seed, ids, t)(torch.cat([x, children.reshape(rows * k, n)]))
            best, j = losses[rows:].reshape(rows, k).min(1)
            ok = best <= losses[:rows]
            proposal = children[torch.arange(rows), j]
        x = torch.where(ok[:, None], proposal, x)
        accepted += ok
        if (t + 1) % a.every == 0 or t + 1 == a.steps:
            episodes = 100 if t + 1 == a.steps else 30
            ret = heldout_returns(loss, x, episodes, seed=a.seed).mean(dim=1).reshape(len(configs), a.reps)
            acc = (accepted / (t + 1)).reshape(len(configs), a.reps).mean(1)
            for c, (s, i) in enumerate(configs):
                r = ret[c]
                print(json.dumps({"rule": a.rule, "width": a.width, "sigma": s, "init": i, "E": a.episodes,
                                  "reps": a.reps, "step": t + 1, "heldout_episodes": episodes,
                                  "mean": round(float(r.mean()), 1),
                                  "se": round(float(r.std()) / math.sqrt(a.reps), 1),
                                  "worst": round(float(r.min()), 1), "best": round(float(r.max()), 1),
                                  "acceptance": round(float(acc[c]), 3), "grid_rows": rows,
                                  "grid_cpu_s": round(time.process_time() - cpu, 1)}), flush=True)


if __name__ == "__main__":
    main()
