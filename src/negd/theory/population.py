"""Closed forms for population selection, the (1,K) and (1+K) evolution strategies.

One step of :class:`negd.rules.Population` draws K mutants x + sigma xi_k, xi_k ~ N(0, I), and moves
to the best one (comma selection: always; elitist: by the Metropolis test of the best child against the
parent). For a locally linear loss U(x + d) = U(x) + g.d the child losses are
dU_k = sigma |g| eta_k with eta_k = u.xi_k ~ N(0, 1), u = g/|g|, so the best child has
eta = -M_K, M_K the largest of K standard normals (density f_K(m) = K phi(m) Phi(m)^(K-1);
Beyer, *The Theory of Evolution Strategies*, progress coefficients c_{1,K} = E[M_K]:
c_{1,2} = 0.5642, c_{1,4} = 1.0294, c_{1,10} = 1.5388). One step then moves, along u, by
-sigma M_K times the acceptance of that child:

* comma:             <dx> = -sigma E[M_K] u,          <(u.dx)^2> = sigma^2 E[M_K^2];
* elitist, beta=inf: <dx> = -sigma E[max(0, M_K)] u,  <(u.dx)^2> = sigma^2 E[max(0, M_K)^2].

For a linear loss, across u the chosen child's components are independent of the selection (which only
looks at eta), so each has second moment sigma^2 times the acceptance: 1 (comma) and 1 - 2^-K (elitist,
P(M_K > 0)). With curvature the selection also looks at xi.H.xi and prefers children small across u
where H is positive: the across-u moment falls below the acceptance (N = 10, K = 4, c = 0.6, comma:
0.88 instead of 1; N = 1000, K = 16, c = 1: 0.9965), see Scope below.

**Curvature** (Gaussian form of :mod:`negd.theory`): dU_k = sigma |g| (eta_k + c), c = sigma tr H/(2|g|).
Elitist at beta = inf accepts iff M_K > c, so its drift is -sigma E[M_K; M_K > c] u (K = 1: phi(c),
the paper's rule); comma moves anyway and the loss changes by sigma |g| (c - E[M_K]) on average: it
rises once c > E[M_K]. At finite beta (elitist) the best child is accepted with probability
min(1, exp(-z (c - M_K))), z = beta sigma |g|.

**Twin** (beta = inf, :func:`population_twin`): normalized gradient descent with
alpha = sigma E[.] (E[M_K] or E[max(0, M_K)]) and noise sigma sqrt(acceptance) per coordinate, the
matched spread across g (the N - 1 directions that dominate for large N).

**Cost**: a step costs K loss evaluations, so the drift per evaluation is E[.]/K; K single-mutant
elitist steps (the paper's rule) move sigma phi(c) per evaluation (:func:`drift_per_evaluation`).

All expectations are over M_K by Gauss-Legendre quadrature on [-12, 12 + sqrt(2 ln K)], split at c
where the integrand has a kink (error < 1e-12 for K <= 10^6).

**Scope.** The Gaussian form treats the curvature part (sigma^2/2) xi.H.xi of every child as the same
constant sigma |g| c. Its spread between children, sigma |g| c_spread with
c_spread = sigma sqrt(tr(H^2)/2)/|g| = c sqrt(2/n_eff) (n_eff = tr(H)^2/tr(H^2) <= N), is what selection
also acts on: where it is not small (few parameters, or anisotropic curvature with few effective
dimensions) the best child is partly chosen for its curvature, and the drift along g falls (N = 10,
K = 4, comma: 0.78 measured against E[M_4] = 1.03). :func:`population_moments` warns
(:class:`GaussianScopeWarning`) when it is told N < N_GAUSSIAN_MIN with c != 0, or c_spread >
SPREAD_MAX; :func:`population_moments_mc` then gives the exact moments for a quadratic loss
U(x + d) = U(x) + g.d + d.H.d/2 by Monte Carlo over the children (with their standard errors).
Only for a linear loss (H = 0) is the across-g second moment exactly the acceptance at any N.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from negd.validation import NegdError, check_int

__all__ = ["SELECTIONS", "PopulationMoments", "max_normal_expectation", "expected_max_normal",
           "population_moments", "drift_per_evaluation", "population_twin_rates", "check_selection",
           "N_GAUSSIAN_MIN", "SPREAD_MAX", "GaussianScopeWarning", "gaussian_scope", "MonteCarloMoments",
           "population_moments_mc"]

SELECTIONS = ("comma", "elitist")
_NODES = 256  # Gauss-Legendre nodes per segment
N_GAUSSIAN_MIN = 100  # below this many parameters a curved loss's children differ in curvature (Scope)
SPREAD_MAX = 0.1  # c_spread above which the Gaussian form's constant curvature term is not accurate


class GaussianScopeWarning(UserWarning):
    """A Gaussian form of dU (negd.theory, negd.theory.population) is used outside its assumptions: few
    parameters or anisotropic curvature (module docstring, Scope)."""


def gaussian_scope(n_params: int | None = None, c: float = 0.0, c_spread: float | None = None) -> str | None:
    """Why the Gaussian form does not apply (None where it does): small N with curvature, or a large
    c_spread = sigma sqrt(tr(H^2)/2)/|g| (few effective dimensions, anisotropic curvature)."""
    reasons = []
    if n_params is not None and n_params < N_GAUSSIAN_MIN and c != 0:
        spread = abs(c) * math.sqrt(2 / n_params)
        reasons.append(f"N = {n_params} < {N_GAUSSIAN_MIN} parameters with c = {c:.3g}: the children's "
                       f"curvature terms spread by at least c sqrt(2/N) = {spread:.3g}")
    if c_spread is not None and c_spread > SPREAD_MAX:
        reasons.append(f"c_spread = {c_spread:.3g} > {SPREAD_MAX} (few effective dimensions or anisotropic "
                       "curvature)")
    return "; ".join(reasons) or None


def check_selection(selection: str) -> str:
    if selection not in SELECTIONS:
        raise NegdError(f"selection: must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    return selection


@lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(_NODES)


def _log_density(m: np.ndarray, k: int) -> np.ndarray:
    """log f_K(m) = log K + log phi(m) + (K-1) log Phi(m), stable in both tails."""
    log_cdf = torch.special.log_ndtr(torch.from_numpy(m)).numpy()  # numpy has no log Phi
    return math.log(k) - 0.5 * m * m - 0.5 * math.log(2 * math.pi) + (k - 1) * log_cdf


def max_normal_expectation(k: int, weight, split: float = 0.0) -> float:
    """E[weight(M_K)] for M_K the largest of ``k`` standard normals; ``weight`` maps arrays to arrays.

    ``split``: a point where ``weight`` has a kink or jump (integration is split there).
    """
    k = check_int("k", k)
    lo, hi = -12.0, 12.0 + math.sqrt(2 * math.log(k))
    cuts = [lo] + ([split] if lo < split < hi else []) + [hi]
    x, w = _legendre()
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:]):
        m = 0.5 * (b - a) * x + 0.5 * (b + a)
        total += 0.5 * (b - a) * float(np.sum(w * np.exp(_log_density(m, k)) * weight(m)))
    return total


def expected_max_normal(k: int) -> float:
    """c_{1,K} = E[M_K] (0 for K = 1, 0.5642 for K = 2, 1.5388 for K = 10)."""
    return max_normal_expectation(k, lambda m: m)


@dataclass(frozen=True)
class PopulationMoments:
    """One step on a locally linear (curvature c) loss, in units of sigma; see the module docstring.

    acceptance: probability that the step moves (also the across-g second moment over sigma^2);
    drift: mean of -u.dx/sigma (E[M_K] for comma, E[M_K; M_K > c] elitist at beta = inf);
    second_moment: mean of (u.dx/sigma)^2; loss_change: mean of dU/(sigma |g|) (with the c term).
    """

    acceptance: float
    drift: float
    second_moment: float
    loss_change: float

    @property
    def along_variance(self) -> float:
        return self.second_moment - self.drift**2


def population_moments(k: int, selection: str, c: float = 0.0, z: float = math.inf, *,
                       n_params: int | None = None, c_spread: float | None = None) -> PopulationMoments:
    """Moments of one (1,K) (``"comma"``) or (1+K) (``"elitist"``) step; ``z = beta sigma |g|``.

    ``z`` matters only for elitist selection (comma never tests); ``c`` = sigma tr H/(2 |g|). Given
    ``n_params`` or ``c_spread``, warns (:class:`GaussianScopeWarning`) where the Gaussian form is
    outside its scope (module docstring; :func:`population_moments_mc` is exact for a quadratic loss).
    """
    scope = gaussian_scope(n_params, float(c), c_spread)
    if scope is not None:
        warnings.warn(f"population_moments: Gaussian form outside its scope: {scope}; "
                      "negd.theory.population.population_moments_mc gives the exact moments",
                      GaussianScopeWarning, stacklevel=2)
    k = check_int("k", k)
    check_selection(selection)
    c = float(c)
    if not math.isfinite(c):
        raise NegdError(f"c: must be a finite number (c = sigma tr H/(2 |g|)), got {c!r}")
    z = float(z)
    if math.isnan(z) or z < 0:
        raise NegdError(f"z: must be >= 0 (z = beta sigma |g|; inf means beta = inf), got {z!r}")
    if selection == "comma":
        def accept(m: np.ndarray) -> np.ndarray:
            return np.ones_like(m)
    elif math.isinf(z):
        def accept(m: np.ndarray) -> np.ndarray:
            return (m > c).astype(float)
    else:
        def accept(m: np.ndarray) -> np.ndarray:  # min(1, exp(-z dU/(sigma |g|))), dU = c - m
            return np.exp(np.minimum(0.0, -z * (c - m)))

    def moment(f) -> float:
        return max_normal_expectation(k, lambda m: f(m) * accept(m), split=c)

    return PopulationMoments(acceptance=moment(lambda m: np.ones_like(m)), drift=moment(lambda m: m),
                             second_moment=moment(lambda m: m * m),
                             loss_change=moment(lambda m: c - m))


def drift_per_evaluation(k: int, selection: str, c: float = 0.0) -> float:
    """Drift per loss evaluation (beta = inf), in units of sigma: E[.]/K.

    Compare with phi(c) (= ``drift_per_evaluation(1, "elitist", c)``), what K single-mutant steps of
    the paper's rule give per evaluation: a population pays off only where this ratio exceeds 1.
    """
    return population_moments(k, selection, c).drift / check_int("k", k)


def population_twin_rates(sigma: float, k: int, selection: str) -> tuple[float, float]:
    """(alpha, s) of the normalized-gradient twin at beta = inf: sigma E[.] and sigma sqrt(acceptance)."""
    moments = population_moments(k, selection)
    return sigma * moments.drift, sigma * math.sqrt(moments.acceptance)


@dataclass(frozen=True)
class MonteCarloMoments:
    """:class:`PopulationMoments` estimated by Monte Carlo, each with its standard error, and the second
    moment across g per coordinate, E[|P xi|^2 accepted]/(N - 1) (P projects off g)."""

    moments: PopulationMoments
    se: PopulationMoments
    across_second_moment: float
    across_second_moment_se: float
    samples: int


def population_moments_mc(k: int, selection: str, grad, hessian, sigma: float, beta: float = math.inf, *,
                          samples: int = 200_000, seed: int = 0) -> MonteCarloMoments:
    """Exact moments of one step on the quadratic loss U(x + d) - U(x) = g.d + d.H.d/2, by sampling
    ``samples`` sets of K children x + sigma xi_k (best child: lowest dU, ties to the lowest k; comma
    always moves, elitist accepts with min(1, exp(-beta dU)), beta = inf: iff dU <= 0).

    ``grad`` [N]; ``hessian`` [N] (a diagonal) or [N, N]. In the units of :class:`PopulationMoments`:
    drift = E[-u.xi acc], second_moment = E[(u.xi)^2 acc], loss_change = E[dU acc]/(sigma |g|)."""
    k = check_int("k", k)
    check_selection(selection)
    samples = check_int("samples", samples, 2)
    g = np.asarray(grad, dtype=np.float64)
    h = np.asarray(hessian, dtype=np.float64)
    n = g.size
    if g.ndim != 1 or h.shape not in ((n,), (n, n)) or not (np.isfinite(g).all() and np.isfinite(h).all()):
        raise NegdError(f"grad, hessian: need finite grad [N] and hessian [N] or [N, N], got {g.shape}, "
                        f"{h.shape}")
    g_norm = float(np.linalg.norm(g))
    if not (g_norm > 0 and math.isfinite(sigma) and sigma > 0):
        raise NegdError(f"grad, sigma: need |g| > 0 and sigma > 0, got |g| = {g_norm}, sigma = {sigma!r}")
    u = g / g_norm
    rng = np.random.default_rng(seed)
    sums = np.zeros((5, 2))  # acceptance, drift, second, loss change, across: sum and sum of squares
    done, chunk = 0, max(1, 2_000_000 // (k * n))
    while done < samples:
        m = min(chunk, samples - done)
        xi = rng.standard_normal((m, k, n))
        quad = np.einsum("mkn,n,mkn->mk", xi, h, xi) if h.ndim == 1 else \
            np.einsum("mkn,nj,mkj->mk", xi, h, xi)
        du = sigma * (xi @ g) + 0.5 * sigma**2 * quad
        best = np.argmin(du, axis=1)
        xb, dub = xi[np.arange(m), best], du[np.arange(m), best]
        if selection == "comma":
            acc = np.ones(m)
        elif math.isinf(beta):
            acc = (dub <= 0).astype(float)
        else:
            acc = np.exp(np.minimum(0.0, -beta * dub))
        along = xb @ u
        across = (np.sum(xb * xb, axis=1) - along**2) / max(n - 1, 1)
        values = (acc, -along * acc, along**2 * acc, dub * acc / (sigma * g_norm), across * acc)
        for i, v in enumerate(values):
            sums[i] += (v.sum(), (v * v).sum())
        done += m
    mean = sums[:, 0] / samples
    se = np.sqrt(np.maximum(sums[:, 1] / samples - mean**2, 0.0) / (samples - 1))
    return MonteCarloMoments(PopulationMoments(*map(float, mean[:4])),
                             PopulationMoments(*map(float, se[:4])), float(mean[4]), float(se[4]), samples)
