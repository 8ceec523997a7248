"""Loss evaluations that aMC and plain neuroevolution need to reach GD's loss at t = 3 (quick shallow).

Set-up of ``negd reproduce shallow`` at quick scale (1-30-1 tanh MLP without output bias, sin 2 pi t on
1000 points, paper init sigma0 = 1e-2, beta = inf): the GD twin is normalized gradient descent with
alpha = 1e-4, so t = 3 is 3e4 GD steps; NE uses the preset's sigma = sqrt(2 pi) lambda alpha (lambda =
1/2). aMC starts from the same sigma (and from 10 sigma). Each NE/aMC step is one loss evaluation.
A realization "reaches" the target at the first checkpoint (every ``--every`` steps) where its loss is
<= GD's; the script prints the median over realizations and the ratio aMC/NE.

    PYTHONPATH=src python scripts/measure_amc.py [--realizations 8] [--max-steps 150000]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from negd import MLPLoss, MLPSpec, get_task, paper_init
from negd.analysis.delta import delta_from_samples
from negd.engine import advance
from negd.rules import AdaptiveMC, AdaptiveMCTwin, Neuroevolution, NormalizedGradientDescent


def steps_to_reach(rule, loss_fn, x0, target: float, realizations: int, max_steps: int, every: int,
                   seed: int = 0) -> tuple[torch.Tensor, float]:
    """First checkpoint step at which each realization's loss is <= target (inf if never); final loss."""
    state = rule.init(x0, loss_fn, seed=seed, realizations=realizations)
    reached = torch.full((realizations,), math.inf)
    while state.step < max_steps and bool(torch.isinf(reached).any()):
        state = advance(rule, state, loss_fn, every)
        hit = (state.loss.double() <= target) & torch.isinf(reached)
        reached[hit] = float(state.step)
    return reached, float(state.loss.double().mean())


def compare_with_twin(loss_fn, x0, sigma: float, epsilon: float, realizations: int,
                      checkpoints: list[int]) -> list[dict]:
    """aMC ensemble mean vs the mean-field twin (negd.rules.AdaptiveMCTwin): Delta_c/param_change."""
    amc, twin = AdaptiveMC(sigma, epsilon=epsilon), AdaptiveMCTwin(sigma, epsilon=epsilon)
    a = amc.init(x0, loss_fn, seed=1, realizations=realizations)
    b = twin.init(x0, loss_fn, realizations=1)
    rows = []
    for n in checkpoints:
        a = advance(amc, a, loss_fn, n - a.step)
        b = advance(twin, b, loss_fn, n - b.step)
        x = b.params[0].double()
        stats = delta_from_samples(x.numpy(), a.params.double().numpy())
        change = float(((x - x0.double()) ** 2).mean())
        shrunk = int((a.extras["amc_sigma"] < sigma).sum())
        rows.append({"steps": n, "amc_loss": float(a.loss.double().mean()),
                     "amc_loss_se": float(a.loss.double().std() / math.sqrt(realizations)),
                     "twin_loss": float(b.loss[0]), "ratio": float(stats.corrected) / change,
                     "ratio_se": float(stats.corrected_se) / change, "realizations_shrunk": shrunk})
        print(f"  aMC vs twin, {n} steps: loss {rows[-1]['amc_loss']:.5g} +- {rows[-1]['amc_loss_se']:.2g} "
              f"vs {rows[-1]['twin_loss']:.5g}; Delta_c/param_change {rows[-1]['ratio']:.4f} +- "
              f"{rows[-1]['ratio_se']:.4f}; sigma shrunk in {shrunk}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realizations", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=150_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--twin-realizations", type=int, default=100)
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = MLPSpec(depth=1, width=30, output_bias=False)
    task = get_task("sin2pi")
    loss_fn = MLPLoss(spec, task.inputs, task.targets, backend="auto")
    x0 = paper_init(spec.n_params, 1e-2, seed=0)
    alpha, lam = 1e-4, 0.5
    sigma = math.sqrt(2 * math.pi) * lam * alpha

    gd = NormalizedGradientDescent(alpha=alpha)
    gd_state = advance(gd, gd.init(x0, loss_fn, realizations=1), loss_fn, 30_000)  # t = 3
    target = float(gd_state.loss[0])
    print(f"GD (normalized, alpha = {alpha}) loss at t = 3: {target:.6g}; NE sigma = {sigma:.4g}")

    results = {"target_loss": target, "sigma": sigma, "realizations": args.realizations, "rows": []}
    rules = [("neuroevolution", Neuroevolution(sigma)),
             ("amc", AdaptiveMC(sigma, epsilon=args.epsilon)),
             ("amc (10 sigma)", AdaptiveMC(10 * sigma, epsilon=args.epsilon))]
    for name, rule in rules:
        start = time.perf_counter()
        reached, final = steps_to_reach(rule, loss_fn, x0, target, args.realizations, args.max_steps,
                                        args.every)
        median = float(reached.median())
        results["rows"].append({"rule": name, "median_evaluations": median,
                                "reached": int(torch.isfinite(reached).sum()), "final_loss": final,
                                "per_realization": reached.tolist()})
        print(f"{name:16s} median evaluations {median:9.0f}  reached {int(torch.isfinite(reached).sum())}"
              f"/{args.realizations}  final mean loss {final:.4g}  ({time.perf_counter() - start:.0f} s)")
    ne = results["rows"][0]["median_evaluations"]
    for row in results["rows"][1:]:
        row["ratio_to_ne"] = row["median_evaluations"] / ne
        print(f"{row['rule']}: {row['ratio_to_ne']:.3f} x the evaluations of neuroevolution")
    print("aMC ensemble against its mean-field twin (same sigma):")
    results["twin"] = compare_with_twin(loss_fn, x0, sigma, args.epsilon, args.twin_realizations,
                                        [250, 500, 1000, 2000, 3000])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
