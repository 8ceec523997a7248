"""Closed forms of the correspondence (Whitelam et al., Nat. Commun. 12, 6317 (2021)), at the ground:
functions of (sigma, beta, gradient, curvature) that evaluate no loss.

* :mod:`negd.theory.one_step`: one mutation step's acceptance, drift and spread (z, c), and the
  twins' rates (re-exported here: ``negd.theory.twin_rates`` ...);
* :mod:`negd.theory.population`: population selection (comma / elitist, K offspring);
* :mod:`negd.theory.hessian`: the curvature term of the drift;
* :mod:`negd.theory.minibatch`: loss noise as a temperature (the stale and fresh noise policies).
"""

from negd.theory.one_step import (
    c_parameter,
    curvature_acceptance,
    curvature_drift_factor,
    curvature_mean_displacement,
    curvature_normalized_drift_factor,
    linear_acceptance,
    linear_displacement_covariance,
    linear_drift_factor,
    linear_mean_displacement,
    linear_normalized_drift_factor,
    linear_second_moment,
    normal_cdf,
    normal_pdf,
    twin_drift_factor,
    twin_rates,
    z_parameter,
)

__all__ = ["twin_rates", "normal_pdf", "normal_cdf", "z_parameter", "c_parameter",
           "linear_acceptance", "linear_drift_factor", "linear_normalized_drift_factor",
           "linear_second_moment", "linear_mean_displacement", "linear_displacement_covariance",
           "curvature_acceptance", "curvature_drift_factor", "curvature_normalized_drift_factor",
           "curvature_mean_displacement", "twin_drift_factor"]
