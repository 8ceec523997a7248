"""Curvature-aware twin vs the normalized twin against one NE ensemble, quick shallow set-up, t = 3..4.

Quick shallow (1-30-1 tanh, sin 2 pi t on 1000 points, paper init sigma0 = 1e-2, beta = inf,
alpha = 1e-4, lambda = 1/2: sigma = sqrt(2 pi) lambda alpha, one GD step = 2 NE steps). The NE
ensemble of R realizations runs to t = 4; at t = 3, 3.5, 4 both twins (the paper's normalized GD and
negd.rules.CurvatureAwareTwin with tau = 1/lambda) are compared with it by Delta_c/param_change
(negd.analysis.delta.delta_from_samples, param_change = mean (x_twin(t) - x(0))^2) and the loss gap.

    PYTHONPATH=src python scripts/measure_curvature_twin.py [--realizations 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from negd import MLPLoss, MLPSpec, get_task, paper_init
from negd.analysis.delta import delta_from_ensembles, delta_from_samples
from negd.engine import advance
from negd.rules import CurvatureAwareTwin, Neuroevolution, NormalizedGradientDescent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realizations", type=int, default=100)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--times", type=float, nargs="+", default=[3.0, 3.5, 4.0])
    parser.add_argument("--refresh", type=int, default=50)
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--curvature", choices=["c_perp", "c"], default="c_perp")
    parser.add_argument("--noisy-twin", action="store_true",
                        help="also an ensemble of normalized twins with noise sigma/sqrt(2) per NE step")
    parser.add_argument("--noisy-realizations", type=int, default=16)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = MLPSpec(depth=1, width=30, output_bias=False)
    task = get_task("sin2pi")
    loss_fn = MLPLoss(spec, task.inputs, task.targets, backend="auto")
    x0 = paper_init(spec.n_params, 1e-2, seed=0)
    alpha, lam = 1e-4, args.lam
    sigma = math.sqrt(2 * math.pi) * lam * alpha
    ne = Neuroevolution(sigma)
    normalized = NormalizedGradientDescent(alpha=alpha)
    curved = CurvatureAwareTwin(sigma, time_step=1 / lam, n_probes=args.probes, refresh=args.refresh,
                                curvature=args.curvature)

    ne_state = ne.init(x0, loss_fn, seed=0, realizations=args.realizations)
    gd_state = normalized.init(x0, loss_fn, realizations=1)
    cv_state = curved.init(x0, loss_fn, seed=0, realizations=1)
    # Noise sigma/sqrt 2 per NE step is sigma/sqrt(2 lambda) per GD step (1/lambda NE steps).
    noisy = NormalizedGradientDescent(alpha=alpha, noise=sigma / math.sqrt(2 * lam))
    noisy_state = (noisy.init(x0, loss_fn, seed=7, realizations=args.noisy_realizations)
                   if args.noisy_twin else None)
    rows = []
    start = time.perf_counter()
    for t in args.times:
        gd_steps = round(t / alpha)
        ne_state = advance(ne, ne_state, loss_fn, round(gd_steps / lam) - ne_state.step)
        gd_state = advance(normalized, gd_state, loss_fn, gd_steps - gd_state.step)
        cv_state = advance(curved, cv_state, loss_fn, gd_steps - cv_state.step)
        samples = ne_state.params.double().numpy()
        if noisy_state is not None:
            noisy_state = advance(noisy, noisy_state, loss_fn, gd_steps - noisy_state.step)
        row = {"t": t, "ne_loss": float(ne_state.loss.double().mean()),
               "ne_loss_se": float(ne_state.loss.double().std() / math.sqrt(args.realizations)),
               "c": float(curved.c(cv_state)[0])}
        for name, twin in (("normalized", gd_state), ("curvature", cv_state)):
            x = twin.params[0].double()
            stats = delta_from_samples(x.numpy(), samples)
            change = float(((x - x0.double()) ** 2).mean())
            row[name] = {"loss": float(twin.loss[0]), "delta_c": float(stats.corrected),
                         "delta_c_se": float(stats.corrected_se), "param_change": change,
                         "ratio": float(stats.corrected) / change,
                         "ratio_se": float(stats.corrected_se) / change}
        if noisy_state is not None:
            xs = noisy_state.params.double()
            stats = delta_from_ensembles(xs.numpy(), samples)
            change = float(((xs.mean(0) - x0.double()) ** 2).mean())
            row["normalized+noise"] = {"loss": float(noisy_state.loss.double().mean()),
                                       "delta_c": float(stats.corrected),
                                       "delta_c_se": float(stats.corrected_se), "param_change": change,
                                       "ratio": float(stats.corrected) / change,
                                       "ratio_se": float(stats.corrected_se) / change}
        rows.append(row)
        print(f"t = {t}: NE loss {row['ne_loss']:.5g} +- {row['ne_loss_se']:.2g}, "
              f"{args.curvature} {row['c']:.3f}  ({time.perf_counter() - start:.0f} s)")
        for name in [k for k in ("normalized", "curvature", "normalized+noise") if k in row]:
            d = row[name]
            print(f"   {name:16s} loss {d['loss']:.5g}  Delta_c/param_change {d['ratio']:.4f} +- "
                  f"{d['ratio_se']:.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"curvature": args.curvature, "sigma": sigma, "lambda": lam,
                       "realizations": args.realizations, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
