"""Loss noise as a temperature: the stale (beta_eff ~ sqrt(2/pi)/s) and fresh noise policies.

In the ``"stale"`` mode of :class:`negd.rules.MinibatchNeuroevolution` at beta = inf a proposal is
accepted iff U_B'(x + sigma xi) <= U_B(x), with B' the step's batch and B the batch on which x was
accepted. For a locally linear loss and batch noise that is Gaussian and independent of the mutation,
dU = sigma |g| eta + s nu with eta, nu ~ N(0, 1) and s the standard deviation of U_B'(x) - U_B(x)
(the difference of two batch losses at the same point). With a = sigma |g|/s:

* acceptance 1/2 (the comparison is symmetric), mean displacement along u = g/|g|:
  -sigma E[eta; a eta + nu <= 0] = -sigma a/sqrt(2 pi (1 + a^2))  (:func:`stale_drift`);
* for a << 1 this is -(sigma^2 |g|/2) sqrt(2/pi)/s, the Metropolis drift -(beta sigma^2/2) g at
  beta_eff = sqrt(2/pi)/s (:func:`stale_beta_eff`); for a >> 1 it tends to the beta = inf drift
  -sigma/sqrt(2 pi).

What the Gaussian model leaves out (measured in docs/variants.md): the stored loss is kept while
proposals are rejected, so successive comparisons share its noise, and accepted losses are
selected low (a winner's curse), which lowers acceptance over a run.

Fresh noise (the ``"fresh"`` mode: parent and proposal re-scored on independent draws of the same
step, :func:`fresh_drift`, :func:`fresh_beta_eff`, :func:`fresh_stationary_beta`). Let each loss
estimate carry Gaussian noise of s.d. ``s`` (per evaluation), independent of the mutation and
between the two draws. On a locally linear loss, with c = sigma |g|, the measured difference is
dU = c eta + sqrt(2) s nu (eta, nu ~ N(0, 1)): noise of variance 2 s^2. At beta = inf,
P(accept | eta) = Phi(-c eta/(sqrt(2) s)) and, by Stein's lemma E[eta f(eta)] = E[f'(eta)],
the mean displacement along u = g/|g| is

    <dx>.u = sigma E[eta Phi(-a eta)] = -sigma a/sqrt(2 pi (1 + a^2)),   a = c/(sqrt(2) s),

which for a << 1 is -(sigma^2 |g|/2) / (s sqrt(pi)): the Metropolis drift -(beta sigma^2/2) g at

    beta_eff = 1/(s sqrt(pi))                                      (drift-matched).

(This is the stale formula sqrt(2/pi)/s' with s' = sqrt(2) s the s.d. of the *difference*; the two
policies differ over a run, where only fresh keeps drawing new noise.) At finite beta the Metropolis
factor averages in closed form over the Gaussian noise: with m = dU's mean part and
v = sqrt(2) s, E_nu[min(1, exp(-beta (m + v nu)))] = Phi(-m/v) + exp(-beta m + beta^2 v^2/2)
Phi(m/v - beta v), and averaging over eta as well gives, with T = sqrt(c^2 + 2 s^2),

    P(accept) = 1/2 + erfcx(beta T/sqrt 2)/2,
    <dx> = -(beta sigma^2/2) erfcx(beta T/sqrt 2) g,

the noise-free linear-loss results (:mod:`negd.theory.one_step`, z = beta c) with z^2 replaced by
beta^2 (c^2 + 2 s^2): the noise adds to the mutation's spread of dU in quadrature. Hence
beta_eff = beta erfcx(beta s) (-> beta as s -> 0, -> 1/(s sqrt(pi)) as beta -> inf).

Stationary law. The acceptance Phi(-dU/(sqrt(2) s)) is Barker-like (a smooth function of dU equal
to 1/2 at dU = 0), not Metropolis, and it satisfies detailed balance for no Gibbs law exactly:
Phi(-x)/Phi(x) is not exp(-k x). For small sigma the chain becomes the Langevin diffusion with
drift sigma^2 A'(0) grad U and diffusion coefficient sigma^2 A(0)/2 (A(m): acceptance at mean dU m),
whose stationary law is exp(-beta_stat U) with beta_stat = -2 A'(0)/A(0):

    beta_stat = 2 beta erfcx(beta s)/(1 + erfcx(beta s))  ->  2/(s sqrt(pi)) at beta = inf.

So at beta = inf the stationary inverse temperature is **twice** the drift-matched beta_eff: the
acceptance is 1/2 where Metropolis' is 1, halving the diffusion at the same drift (as Barker's rule
at beta_B = 2/(s sqrt(pi)) would, whose acceptance has the same value and slope at dU = 0). Beyond
small sigma the law is only approximately exp(-beta_stat U).
"""

from __future__ import annotations

import math

import torch

from negd.theory.one_step import linear_acceptance, linear_drift_factor
from negd.validation import NegdError, check_beta, check_nonnegative, check_positive

__all__ = ["stale_beta_eff", "stale_drift", "measured_beta_eff", "fresh_beta_eff", "fresh_drift",
           "fresh_acceptance", "fresh_stationary_beta"]


def stale_beta_eff(s: float) -> float:
    """sqrt(2/pi)/s: the inverse temperature of batch noise of spread ``s`` (for s >> sigma |g|)."""
    return math.sqrt(2 / math.pi) / check_positive("s", s)


def stale_drift(a: float) -> float:
    """E[eta; a eta + nu <= 0] magnitude a/sqrt(2 pi (1 + a^2)): drift along -g/|g| in units of sigma."""
    if not math.isfinite(a) or a < 0:
        raise NegdError(f"a: must be a finite number >= 0 (a = sigma |g|/s), got {a!r}")
    return a / math.sqrt(2 * math.pi * (1 + a * a))


def measured_beta_eff(drift_along_g: float, sigma: float, grad_norm: float) -> float:
    """beta with Metropolis drift (beta sigma^2/2) |g| (small z) equal to a measured drift along -g."""
    return 2 * drift_along_g / (check_positive("sigma", sigma) ** 2 * check_positive("grad_norm", grad_norm))


def _check_c(c: float) -> float:
    if not isinstance(c, int | float) or not math.isfinite(c) or c < 0:
        raise NegdError(f"c: must be a finite number >= 0 (c = sigma |g|), got {c!r}")
    return float(c)


def _erfcx(x: float) -> float:
    """erfcx(x) = exp(x^2) erfc(x), in float64 without overflow."""
    return float(torch.special.erfcx(torch.tensor(x, dtype=torch.float64)))


def fresh_beta_eff(s: float, beta: float = math.inf) -> float:
    """Drift-matched inverse temperature of fresh noise of s.d. ``s`` per evaluation (module doc):
    beta erfcx(beta s), 1/(s sqrt(pi)) at beta = inf (inf for s = 0 there)."""
    s, beta = check_nonnegative("s", s), check_beta(beta)
    if math.isinf(beta):
        return math.inf if s == 0 else 1 / (s * math.sqrt(math.pi))
    return beta * _erfcx(beta * s)


def fresh_stationary_beta(s: float, beta: float = math.inf) -> float:
    """Inverse temperature of the small-sigma stationary law exp(-beta_stat U) under fresh noise:
    2 beta erfcx(beta s)/(1 + erfcx(beta s)), 2/(s sqrt(pi)) at beta = inf (module doc)."""
    s, beta = check_nonnegative("s", s), check_beta(beta)
    if math.isinf(beta):
        return math.inf if s == 0 else 2 / (s * math.sqrt(math.pi))
    f = _erfcx(beta * s)
    return 2 * beta * f / (1 + f)


def fresh_drift(c: float, s: float, beta: float = math.inf) -> float:
    """Magnitude of the one-step drift along -g/|g| in units of sigma on a linear loss, c = sigma |g|:
    a/sqrt(2 pi (1 + a^2)) with a = c/(sqrt(2) s) at beta = inf, else (beta c/2) erfcx(beta T/sqrt 2),
    T = sqrt(c^2 + 2 s^2) (module doc). s = 0 gives the noise-free drift."""
    c, s, beta = _check_c(c), check_nonnegative("s", s), check_beta(beta)
    t = math.sqrt(c * c + 2 * s * s)
    if math.isinf(beta):
        return 0.0 if t == 0 else c / (math.sqrt(2 * math.pi) * t)
    return beta * c / 2 * float(linear_drift_factor(beta * t))


def fresh_acceptance(c: float, s: float, beta: float = math.inf) -> float:
    """P(accept) of one fresh step on a linear loss: 1/2 + erfcx(beta T/sqrt 2)/2 (1/2 at beta = inf)."""
    c, s, beta = _check_c(c), check_nonnegative("s", s), check_beta(beta)
    if math.isinf(beta):
        return 0.5 if c > 0 or s > 0 else 1.0
    return float(linear_acceptance(beta * math.sqrt(c * c + 2 * s * s)))
