"""Acceptance and drift of neuroevolution to first order in sigma/(2|g|), with the full Hessian.

The Gaussian curvature forms of :mod:`negd.theory` replace xi.H.xi by its mean tr H, so that
dU = sigma |g| (eta + c). Keeping the whole quadratic form, with u = g/|g|, eta = u.xi,
P = I - u u^T and epsilon = sigma/(2|g|)::

    dU/(sigma |g|) = eta + epsilon Q,   Q = xi.H.xi,
    E[Q | eta]          = tr H - u.H.u + eta^2 u.H.u,
    E[P xi Q | eta]     = 2 eta P H u.

Expanding min(1, exp(-z (eta + epsilon Q))) to first order in epsilon (z = beta sigma |g|) and with
K_k(z) = E[eta^k exp(-z eta); eta > 0] (closed forms in :func:`k_moments`):

* acceptance  A = A_0 - epsilon z [(tr H - u.H.u) K_0 + u.H.u K_2];
* drift along u   <u.dx>/sigma = -z K_0 - epsilon z [(tr H - u.H.u) K_1 + u.H.u K_3];
* drift across u  <P dx> = -2 sigma epsilon z K_1 P H u = -(sigma^2 z/|g|) K_1 (I - u u^T) H u;

with A_0 = 1/2 + K_0 and -z K_0 the linear values. The Gaussian form (c = epsilon tr H) has
u.H.u K_0 where this has u.H.u K_2 (and K_1 where this has K_3 along u) and no drift across u:
those are the terms in u.H.u it misses. At beta = inf (z -> inf): A = 1/2 - phi(0) epsilon
(tr H - u.H.u) = 1/2 - phi(0) c_perp (the regime check's form), no first-order change of the drift
along u, and no drift across u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd.validation import NegdError, check_beta, check_positive

__all__ = ["k_moments", "FirstOrder", "first_order"]

_PHI0 = 1.0 / math.sqrt(2.0 * math.pi)
_SERIES_FROM = 30.0


def k_moments(z: float) -> tuple[float, float, float, float]:
    """(K_0, K_1, K_2, K_3)(z), K_k = E[eta^k e^(-z eta); eta > 0], for finite z >= 0.

    With J = erfcx(z/sqrt 2)/2 = K_0: K_1 = phi(0) - z J, K_2 = (1 + z^2) J - z phi(0),
    K_3 = (2 + z^2) phi(0) - (3 z + z^3) J (derivatives of J in z).
    """
    if not math.isfinite(z) or z < 0:
        raise NegdError(f"z: must be a finite number >= 0 here (z = beta sigma |g|), got {z!r}")
    if z > _SERIES_FROM:
        # The closed forms cancel catastrophically for large z; expand exp(-eta^2/2) instead:
        # K_k = phi(0) sum_m (-1/2)^m/m! (k + 2m)!/z^(k + 2m + 1) (asymptotic; 8 terms reach 1e-16 here).
        return tuple(_PHI0 * sum((-0.5) ** m / math.factorial(m) * math.factorial(k + 2 * m)
                                 / z ** (k + 2 * m + 1) for m in range(8)) for k in range(4))
    j = float(torch.special.erfcx(torch.tensor(z / math.sqrt(2), dtype=torch.float64))) / 2
    return (j, _PHI0 - z * j, (1 + z * z) * j - z * _PHI0, (2 + z * z) * _PHI0 - (3 * z + z**3) * j)


@dataclass(frozen=True)
class FirstOrder:
    """One step to first order in epsilon = sigma/(2|g|): acceptance, mean displacement [N] (float64),
    and its parts along u (a number, over sigma) and across u ([N])."""

    acceptance: float
    displacement: Tensor
    along: float
    across: Tensor


def first_order(g: Tensor, hessian: Tensor, sigma: float, beta: float = math.inf) -> FirstOrder:
    """Acceptance and <dx> for gradient ``g`` [N] and Hessian ``hessian`` [N, N] (module docstring)."""
    sigma = check_positive("sigma", sigma)
    beta = check_beta(beta)
    if not isinstance(g, Tensor) or g.dim() != 1:
        raise NegdError("g: must be a 1-D tensor [N]")
    if not isinstance(hessian, Tensor) or hessian.shape != (g.shape[0], g.shape[0]):
        raise NegdError(f"hessian: must have shape [{g.shape[0]}, {g.shape[0]}]")
    g64, h = g.to(torch.float64), hessian.to(torch.float64)
    norm = float(torch.linalg.vector_norm(g64))
    if norm == 0:
        raise NegdError("g: the expansion in sigma/(2|g|) needs a non-zero gradient")
    u = g64 / norm
    eps = sigma / (2 * norm)
    hu = h @ u
    uhu = float(u @ hu)
    rest = float(torch.trace(h)) - uhu  # tr(P H P)
    perp_hu = hu - uhu * u
    if math.isinf(beta):
        acceptance = 0.5 - _PHI0 * eps * rest
        along = -_PHI0
        across = torch.zeros_like(u)
    else:
        z = beta * sigma * norm
        k0, k1, k2, k3 = k_moments(z)
        acceptance = 0.5 + k0 - eps * z * (rest * k0 + uhu * k2)
        along = -z * k0 - eps * z * (rest * k1 + uhu * k3)
        across = -2 * sigma * eps * z * k1 * perp_hu
    return FirstOrder(acceptance=acceptance, displacement=sigma * along * u + across, along=along,
                      across=across)
