"""Stale-loss minibatch neuroevolution as a finite temperature (beta_eff ~ sqrt(2/pi)/s).

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
"""

from __future__ import annotations

import math

from negd.validation import NegdError, check_positive

__all__ = ["stale_beta_eff", "stale_drift", "measured_beta_eff"]


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
