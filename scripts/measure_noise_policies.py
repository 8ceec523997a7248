"""Noise policies of MinibatchNeuroevolution (paired, fresh, stale) against negd.theory.minibatch.

1. One step on a linear loss U = g.x plus Gaussian noise of known s per evaluation, a pure function
   of (seed, realization, step, draw): drift along -g/|g| (units of sigma) and acceptance of each
   mode at beta = inf and beta = 1 against the closed forms (paired: the noise cancels; fresh and a
   single stale step: noise of variance 2 s^2, negd.theory.minibatch.fresh_drift).
2. Fresh mode in a harmonic well U = x^2/2 (one dimension) with the same noise: stationary variance
   against 1/beta_stat (negd.theory.minibatch.fresh_stationary_beta) and 1/beta_eff.
3. The three modes over a run on a real minibatch loss: noisy linear regression (10 features, 1000
   points, noise 0.5, batches of B; scripts/measure_minibatch.py's problem), from |w0 - w*| = 1:
   acceptance over the run and the full-data excess loss at the end (for fresh also the RMS spread
   s of the batch loss on the final ensemble).
4. Fresh mode on that regression with the batch noise's dependence on w taken into account. Here
   s(w) = kappa U(w) (U = mean r^2 over the data, r Gaussian residuals: Var(r^2) = 2 U^2, so
   kappa = sqrt(2 (P - B)/(B (P - 1)))), the local inverse temperature is beta_stat(s(w)) =
   2/(sqrt(pi) kappa U), so the small-sigma stationary law is exp(-lambda ln U) = U^-lambda with
   lambda = 2/(sqrt(pi) kappa), and the excess E = U - U_min (a quadratic form in n = 10 dimensions)
   has E/U_min ~ BetaPrime(n/2, lambda - n/2). Quartiles of E on the ensemble after the run against
   that law, and against the same law with the drift's beta_eff (lambda/2) in place of beta_stat.
   (scipy is needed for this part.)

    PYTHONPATH=src python scripts/measure_noise_policies.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
from measure_minibatch import regression as minibatch_regression  # scripts/ is on sys.path

import negd
from negd import rng
from negd.losses.minibatch import MinibatchLoss
from negd.rules import MinibatchNeuroevolution
from negd.theory.minibatch import (
    fresh_acceptance,
    fresh_beta_eff,
    fresh_drift,
    fresh_stationary_beta,
    stale_drift,
)

_STREAMS = (100, 101)  # the toy loss's two noise draws (unused by negd)


class NoisyLoss:
    """U(params) + s n(seed, realization, step, draw) (as tests/test_noise_policies.py)."""

    def __init__(self, u, s: float) -> None:
        self.u, self.s = u, s

    def _draw(self, state, stream: int):
        def loss_fn(params: torch.Tensor) -> torch.Tensor:
            noise = rng.normal(state.seed, state.realization, state.step, 1, stream=stream)[:, 0]
            return self.u(params) + self.s * noise.double()
        return loss_fn

    def at(self, state):
        return self._draw(state, _STREAMS[0])

    def second_draw(self, state):
        return self._draw(state, _STREAMS[1])

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return self.u(params)


def one_step(mode: str, beta: float, c: float, s: float, r: int, sigma: float = 0.1, seed: int = 3) -> dict:
    g = torch.tensor([0.6, -0.8, 0.0, 0.0], dtype=torch.float64) * (c / sigma)
    loss = NoisyLoss(lambda p: p.double() @ g, s)
    rule = MinibatchNeuroevolution(sigma, beta=beta, mode=mode)
    state = rule.init(torch.zeros(4, dtype=torch.float64), loss, seed=seed, realizations=r)
    if mode == "stale":
        state = state.replace(step=1)  # the stored loss is on step 0's draw
    moved = rule.step(state, loss)
    d = -(moved.params @ (g / g.norm())) / sigma
    if mode == "paired":
        predicted = fresh_drift(c, 0.0, beta)
    elif mode == "stale" and math.isinf(beta):
        predicted = stale_drift(c / (math.sqrt(2) * s))
    else:
        predicted = fresh_drift(c, s, beta)
    se = d.std().item() / math.sqrt(r)
    return {"mode": mode, "beta": beta, "c": c, "s": s, "realizations": r, "drift": d.mean().item(),
            "se": se, "predicted": predicted, "z": (d.mean().item() - predicted) / se,
            "acceptance": moved.accepted.double().mean().item(),
            "predicted_acceptance": fresh_acceptance(c, 0.0 if mode == "paired" else s, beta)}


def harmonic(beta: float, s: float = 1.0, sigma: float = 0.2, r: int = 4000, seed: int = 11) -> dict:
    loss = NoisyLoss(lambda p: 0.5 * (p.double() ** 2).sum(dim=1), s)
    rule = MinibatchNeuroevolution(sigma, beta=beta, mode="fresh")
    beta_stat = fresh_stationary_beta(s, beta)
    steps = math.ceil(4 / (sigma**2 * fresh_acceptance(0.0, s, beta) / 2 * beta_stat))
    state = rule.init(torch.zeros(1, dtype=torch.float64), loss, seed=seed, realizations=r)
    for _ in range(steps):
        state = rule.step(state, loss)
    x2 = state.params[:, 0].double() ** 2
    return {"beta": beta, "s": s, "sigma": sigma, "steps": steps, "realizations": r,
            "variance": x2.mean().item(), "se": x2.std().item() / math.sqrt(r),
            "1/beta_stat": 1 / beta_stat, "1/beta_eff": 1 / fresh_beta_eff(s, beta)}


def regression(batch: int, n: int = 10, points: int = 1000) -> tuple[MinibatchLoss, torch.Tensor, float]:
    """scripts/measure_minibatch.py's noisy linear regression, its start w0 and min U (least squares)."""
    loss, w0 = minibatch_regression(batch, n, points)
    w_hat = torch.linalg.lstsq(loss.inputs, loss.targets[:, 0]).solution
    return loss, w0, float(loss(w_hat[None])[0])


def run_modes(batch: int, sigma: float, steps: int, r: int) -> dict:
    loss, w0, u_min = regression(batch)
    out = {"batch": batch, "sigma": sigma, "steps": steps, "realizations": r, "u_min": u_min}
    for mode in ("paired", "fresh", "stale"):
        rule = MinibatchNeuroevolution(sigma, mode=mode)
        state = rule.init(w0, loss, seed=5, realizations=r)
        accept = []
        for _ in range(steps):
            state = rule.step(state, loss)
            accept.append(float(state.accepted.double().mean()))
        excess = loss(state.params) - u_min
        row = {"acceptance_first_10": float(np.mean(accept[:10])),
               "acceptance_last_100": float(np.mean(accept[-100:])),
               "excess_loss": excess.mean().item(), "excess_se": excess.std().item() / math.sqrt(r)}
        if mode == "fresh":  # s: spread of the batch loss over 64 batches at each final w (part 4
            # predicts this run's law with s's dependence on w; a constant s does not describe it)
            draws = torch.stack([loss.on_batches(99, torch.arange(r), t)(state.params) for t in range(64)])
            row["s_final"] = draws.std(dim=0).pow(2).mean().sqrt().item()
        out[mode] = row
    return out


def fresh_regression(batch: int, sigma: float, steps: int, r: int, points: int = 1000, n: int = 10) -> dict:
    from scipy import stats

    loss, w0, u_min = regression(batch, n, points)
    rule = MinibatchNeuroevolution(sigma, mode="fresh")
    state = rule.init(w0, loss, seed=6, realizations=r)
    kappa = math.sqrt(2 * (points - batch) / (batch * (points - 1)))
    lam = 2 / (math.sqrt(math.pi) * kappa)
    qs = (0.25, 0.5, 0.75)
    boot = torch.Generator().manual_seed(0)
    out = {"batch": batch, "sigma": sigma, "steps": steps, "realizations": r, "kappa": kappa,
           "lambda": lam, "quantiles": qs}
    for label, shape in (("predicted_beta_stat", lam - n / 2), ("predicted_beta_eff", lam / 2 - n / 2)):
        out[label] = [u_min * float(stats.betaprime(n / 2, shape).ppf(q)) if shape > 0 else math.inf
                      for q in qs]
    checkpoints = {steps // 2, steps}
    for step in range(1, steps + 1):
        state = rule.step(state, loss)
        if step in checkpoints:
            excess = loss(state.params) - u_min
            q = torch.tensor(qs, dtype=torch.float64)
            idx = torch.randint(0, r, (200, r), generator=boot)
            se = torch.quantile(excess[idx], q, dim=1).std(dim=1)  # bootstrap SE of each quantile
            out[f"step_{step}"] = {"quantiles": torch.quantile(excess, q).tolist(), "se": se.tolist()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--run-steps", type=int, default=1500)
    parser.add_argument("--skip-modes", action="store_true", help="skip part 3 (the modes' runs)")
    args = parser.parse_args()
    started = time.process_time()
    out = {"negd": negd.__version__, "torch": torch.__version__, "machine": platform.machine(),
           "python": platform.python_version(), "one_step": [], "harmonic": []}
    for beta in (math.inf, 1.0):
        for mode in ("paired", "fresh", "stale"):
            row = one_step(mode, beta, 1.0, 1.0, 40_000 if math.isinf(beta) else 160_000)
            out["one_step"].append(row)
            print(json.dumps(row))
    small = one_step("fresh", math.inf, 0.2, 1.0, 200_000)
    small["beta_eff_measured"] = 2 * small["drift"] / 0.2 * 1.0  # 2 drift/(sigma|g|) in units of 1/s
    small["beta_eff_se"] = 2 * small["se"] / 0.2
    small["beta_eff_predicted"] = fresh_beta_eff(1.0) / math.sqrt(1 + 0.02)
    out["beta_eff"] = small
    print(json.dumps(small))
    for beta in (math.inf, 1.0):
        row = harmonic(beta)
        out["harmonic"].append(row)
        print(json.dumps(row))
    if not args.skip_modes:
        out["regression"] = run_modes(batch=50, sigma=0.05, steps=args.run_steps, r=500)
        print(json.dumps(out["regression"]))
    out["fresh_regression"] = [fresh_regression(200, 0.02, args.run_steps, 1000),
                               fresh_regression(50, 0.05, args.run_steps, 1000)]
    for row in out["fresh_regression"]:
        print(json.dumps(row))
    out["cpu_seconds"] = time.process_time() - started
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
