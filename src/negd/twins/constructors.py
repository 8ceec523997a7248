"""The gradient dynamics that theory says a neuroevolution configuration equals.

Whitelam et al. 2021, small-sigma limits, time measured in neuroevolution steps:

* finite beta: x <- x - (beta sigma^2/2) grad U + sigma xi   (Langevin, Eq. for finite beta);
* beta = inf:  x <- x - (sigma/sqrt(2 pi)) grad U/|grad U| + (sigma/sqrt 2) xi
  (normalized gradient descent plus noise of variance sigma^2/2 per coordinate).

With per-parameter sigma_i the rates become beta sigma_i^2/2 (finite beta) and
sigma_i^2/(sqrt(2 pi) |sigma g|) (beta = inf). ``noise=False`` returns the deterministic
drift alone, which is what the ensemble mean of neuroevolution follows.

:func:`matched_twin` gives the twin that stays right between the limits, for 0.1 < z < 10
(:class:`negd.rules.MomentMatchedLangevin`: NE's exact linear-loss drift and spread at each z).

:func:`population_twin` gives the beta = inf twin of population selection
(:class:`negd.rules.Population`): normalized gradient descent with alpha = sigma E[M_K] (comma) or
sigma E[max(0, M_K)] (elitist) and noise sigma sqrt(acceptance) (:mod:`negd.theory.population`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from negd.theory.one_step import twin_rates
from negd.theory.population import population_twin_rates
from negd.twins.gradient import GradientDescent, Langevin, NormalizedGradientDescent
from negd.twins.matched import MomentMatchedLangevin
from negd.twins.minibatch import MinibatchGradient
from negd.validation import NegdError

if TYPE_CHECKING:  # the twins sit below the rules: a constructor reads a rule's fields, never imports it
    from negd.rules import MinibatchNeuroevolution, Neuroevolution, Population

__all__ = ["gradient_twin", "matched_twin", "population_twin", "minibatch_twin"]


def gradient_twin(rule: Neuroevolution, *, noise: bool = True
                  ) -> GradientDescent | Langevin | NormalizedGradientDescent:
    """The gradient rule equivalent to ``rule`` for small sigma (see module docstring)."""
    alpha, s = twin_rates(rule.sigma, rule.beta)
    if math.isinf(rule.beta):
        if isinstance(rule.sigma, torch.Tensor):
            return NormalizedGradientDescent(alpha=1 / math.sqrt(2 * math.pi),
                                             noise=s if noise else 0.0, weights=rule.sigma)
        return NormalizedGradientDescent(alpha=alpha, noise=s if noise else 0.0)
    if noise:
        return Langevin(alpha=alpha, noise=s)
    return GradientDescent(alpha=alpha)


def matched_twin(rule: Neuroevolution, *, time_step: float = 1.0) -> MomentMatchedLangevin:
    """The moment-matched Langevin twin of ``rule`` (scalar sigma): exact drift and spread for a locally
    linear loss at every z = beta sigma |grad U|; ``time_step`` NE steps per twin step."""
    return MomentMatchedLangevin(sigma=rule.sigma, beta=rule.beta, time_step=time_step)


def population_twin(rule: Population, *, noise: bool = True) -> NormalizedGradientDescent:
    """The beta = inf twin of a population rule (scalar sigma): normalized gradient descent with
    alpha = sigma E[.] and noise sigma sqrt(acceptance), the spread across g of one step."""
    if not math.isinf(rule.beta):
        raise NegdError(f"beta: the population twin is the beta = inf one, got beta = {rule.beta}; at "
                        f"finite beta use negd.theory.population.population_moments(k, selection, c, z)")
    if isinstance(rule.sigma, torch.Tensor):
        raise NegdError("sigma: the population twin needs one scalar sigma")
    alpha, s = population_twin_rates(rule.sigma, rule.k, rule.selection)
    return NormalizedGradientDescent(alpha=alpha, noise=s if noise else 0.0)


def minibatch_twin(rule: MinibatchNeuroevolution, *, noise: bool = False) -> MinibatchGradient:
    """The SGD twin on the same batches: normalized SGD (alpha = sigma/sqrt(2 pi)) at beta = inf,
    Langevin SGD (alpha = beta sigma^2/2) at finite beta, as :func:`gradient_twin`."""
    return MinibatchGradient(gradient_twin(rule, noise=noise))
