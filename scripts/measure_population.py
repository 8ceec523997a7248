"""One-step drift of population selection against negd.theory.population, and drift per evaluation.

Isotropic quadratic U = |x|^2/2 in N = 1000 (tr H = N), the start placed so that c = sigma N/(2|g|)
takes the listed values (c = 0: the linear loss g.x). For each K, selection and c: the measured mean
displacement along -g/|g| in units of sigma (+- SE) against E[M_K] (comma) or E[M_K; M_K > c]
(elitist), and the drift per loss evaluation relative to the paper's rule (K = 1 elitist).

    PYTHONPATH=src python scripts/measure_population.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from negd.rules import Population
from negd.theory.population import population_moments


def one_step_drift(k: int, selection: str, c: float, n: int, sigma: float, seed: int) -> tuple[float, float]:
    r = min(20_000, 32_000_000 // (k * n))
    u = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = u / u.norm()
    if c == 0:
        loss, x0 = (lambda p: p @ u), torch.zeros(n, dtype=torch.float64)
    else:
        loss, x0 = (lambda p: 0.5 * (p * p).sum(1)), u * sigma * n / (2 * c)
    rule = Population(sigma, k=k, selection=selection)
    state = rule.init(x0, loss, seed=seed, realizations=r)
    along = -((rule.step(state, loss).params - state.params) @ u) / sigma
    return along.mean().item(), along.std().item() / math.sqrt(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("selection  K   c    measured +- SE        theory   (m-t)/SE  per-eval/paper's")
    for selection in ("elitist", "comma"):
        for c in (0.0, 0.5, 1.0, 2.0):
            paper = population_moments(1, "elitist", c).drift
            for k in (1, 2, 4, 16):
                measured, se = one_step_drift(k, selection, c, 1000, 0.01, seed=17 + k)
                theory = population_moments(k, selection, c).drift
                per_eval = theory / k / paper
                rows.append({"selection": selection, "k": k, "c": c, "measured": measured, "se": se,
                             "theory": theory, "per_evaluation_vs_paper": per_eval})
                print(f"{selection:8s} {k:3d} {c:4.1f}  {measured:8.4f} +- {se:.4f}   {theory:8.4f}  "
                      f"{(measured - theory) / se:+6.2f}   {per_eval:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
