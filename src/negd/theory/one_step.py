"""Closed-form predictions of the neuroevolution <-> gradient descent correspondence.

Whitelam, Selin, Park & Tamblyn, "Correspondence between neuroevolution and gradient
descent", Nat. Commun. 12, 6317 (2021). One neuroevolution step proposes x' = x + sigma xi,
xi ~ N(0, I), and accepts it with probability min(1, exp(-beta dU)).

**Twin mapping** (small sigma, :func:`twin_rates`): finite beta gives Langevin gradient descent
with learning rate alpha = beta sigma^2/2 and noise s = sigma; beta = inf gives normalized
gradient descent with alpha = sigma/sqrt(2 pi) and noise s = sigma/sqrt(2).

**Locally linear loss** U(x + d) = U(x) + g.d, exact for any sigma. Then dU = sigma |g| eta with
eta = g.xi/|g| ~ N(0, 1), and everything depends on z = beta sigma |g| (derived in docs/theory.md;
erfcx(u) = exp(u^2) erfc(u)):

* acceptance         A(z)  = E[min(1, exp(-z eta))] = 1/2 + erfcx(z/sqrt 2)/2;
* mean displacement  <dx>  = -(beta sigma^2/2) erfcx(z/sqrt 2) g;
* z -> 0: A -> 1, <dx> -> -(beta sigma^2/2) g (the Langevin twin);
  z -> inf: A -> 1/2, <dx> -> -(sigma/sqrt(2 pi)) g/|g| (the normalized twin).

**Curvature correction.** With Hessian H, dU = sigma g.xi + (sigma^2/2) xi.H.xi. For many
effective dimensions xi.H.xi concentrates on tr H, so dU ~ N(sigma^2 tr H/2, sigma^2 |g|^2), i.e.
dU = sigma |g| (eta + c) with c = sigma tr H/(2 |g|). Writing F(z, c) = exp(-c^2/2) erfcx((z-c)/sqrt 2):

* beta = inf:    A = Phi(-c),              <dx> = -sigma phi(c) g/|g|;
* finite beta:   A = Phi(-c) + F(z, c)/2,  <dx> = -(beta sigma^2/2) F(z, c) g;

with phi, Phi the standard normal pdf and cdf (c = 0 gives back the linear forms).

**Per-parameter sigma** (sigma_i): replace g by w = sigma o g (elementwise) in z and c
(z = beta |w|, c = tr(S H S)/(2 |w|), S = diag(sigma)) and the displacement is
S times the isotropic one along w/|w|.

"Drift factors" compare the mean displacement with a twin's drift: ``*_drift_factor`` with the
Langevin twin -(beta sigma^2/2) g, ``*_normalized_drift_factor`` with the normalized twin
-(sigma/sqrt(2 pi)) g/|g|. Scalar functions take floats or tensors and return the same kind.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from negd.validation import NegdError, check_beta, check_sigma

__all__ = ["twin_rates", "normal_pdf", "normal_cdf", "z_parameter", "c_parameter",
           "linear_acceptance", "linear_drift_factor", "linear_normalized_drift_factor",
           "linear_second_moment", "linear_mean_displacement", "linear_displacement_covariance",
           "curvature_acceptance", "curvature_drift_factor", "curvature_normalized_drift_factor",
           "curvature_mean_displacement", "twin_drift_factor"]

Scalar = float | Tensor
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def twin_rates(sigma: float | Tensor, beta: float) -> tuple[float | Tensor, float | Tensor]:
    """(alpha, s): learning rate and noise scale of the twin, per neuroevolution step.

    finite beta: alpha = beta sigma^2/2, s = sigma; beta = inf: alpha = sigma/sqrt(2 pi),
    s = sigma/sqrt(2).
    """
    sigma = check_sigma(sigma)
    beta = check_beta(beta)
    if math.isinf(beta):
        return sigma / math.sqrt(2 * math.pi), sigma / math.sqrt(2)
    return beta * sigma**2 / 2, sigma


# ---------------------------------------------------------------------------------------------
# Scalar helpers: float in -> float out, tensor in -> tensor out (float64 inside).

def _as64(x: Scalar) -> Tensor:
    return x.to(torch.float64) if isinstance(x, Tensor) else torch.tensor(float(x), dtype=torch.float64)


def _back(result: Tensor, like: Scalar) -> Scalar:
    return result if isinstance(like, Tensor) else float(result)


def _check_z(z: Scalar) -> Tensor:
    t = _as64(z)
    if bool(torch.isnan(t).any()) or bool((t < 0).any()):
        raise NegdError(f"z: must be >= 0 (z = beta sigma |g|; inf means beta = inf), got {z!r}")
    return t


def _check_c(c: Scalar) -> Tensor:
    t = _as64(c)
    if not bool(torch.isfinite(t).all()):
        raise NegdError(f"c: must be a finite number (c = sigma tr H/(2 |g|)), got {c!r}")
    return t


def normal_pdf(x: Scalar) -> Scalar:
    """phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    t = _as64(x)
    return _back(torch.exp(-t * t / 2) * _INV_SQRT_2PI, x)


def normal_cdf(x: Scalar) -> Scalar:
    """Phi(x) = erfc(-x/sqrt 2)/2 (accurate in both tails)."""
    t = _as64(x)
    return _back(torch.special.erfc(-t / _SQRT2) / 2, x)


def z_parameter(grad_norm: Scalar, sigma: Scalar, beta: float) -> Scalar:
    """z = beta sigma |g|: the size of beta dU for a linear loss (inf for beta = inf, g != 0)."""
    beta = check_beta(beta)
    g, s = _as64(grad_norm), _as64(sigma)
    z = torch.where(g > 0, beta * s * g, torch.zeros_like(g * s)) if math.isinf(beta) else beta * s * g
    return _back(z, grad_norm)


def c_parameter(grad_norm: Scalar, trace_hessian: Scalar, sigma: Scalar) -> Scalar:
    """c = sigma tr H/(2 |g|): mean curvature part of dU in units of its linear spread sigma |g|."""
    g, h, s = _as64(grad_norm), _as64(trace_hessian), _as64(sigma)
    return _back(s * h / (2 * g), grad_norm)


def _tail_factor(z: Tensor, c: Tensor) -> Tensor:
    """F(z, c) = exp(-c^2/2) erfcx((z - c)/sqrt 2) without overflow.

    For z < c erfcx of a negative argument overflows; there F = exp(z (z/2 - c)) erfc((z-c)/sqrt 2)
    (same value, exponent <= 0). F(inf, c) = 0.
    """
    u = (z - c) / _SQRT2
    upper = torch.exp(-c * c / 2) * torch.special.erfcx(u.clamp_min(0))
    lower = torch.exp(z * (z / 2 - c)) * torch.special.erfc(u.clamp_max(0))
    return torch.where(u >= 0, upper, lower)


def _half_z_tail(z: Tensor, c: Tensor) -> Tensor:
    """z F(z, c)/2: the mean of -eta over accepted moves; its z -> inf limit phi(c) is used at inf."""
    finite = torch.isfinite(z)
    zf = torch.where(finite, z, torch.zeros_like(z))
    return torch.where(finite, zf * _tail_factor(zf, c) / 2, torch.exp(-c * c / 2) * _INV_SQRT_2PI)


# ---------------------------------------------------------------------------------------------
# Locally linear loss (exact for any z).

def linear_acceptance(z: Scalar) -> Scalar:
    """A(z) = 1/2 + erfcx(z/sqrt 2)/2: 1 at z = 0, 1/2 at z = inf (beta = inf)."""
    t = _check_z(z)
    return _back(0.5 + torch.special.erfcx(t / _SQRT2) / 2, z)


def linear_drift_factor(z: Scalar) -> Scalar:
    """erfcx(z/sqrt 2) = <dx> / (-(beta sigma^2/2) g): 1 at z = 0, ~ sqrt(2/pi)/z for z >> 1."""
    t = _check_z(z)
    return _back(torch.special.erfcx(t / _SQRT2), z)


def linear_normalized_drift_factor(z: Scalar) -> Scalar:
    """sqrt(pi/2) z erfcx(z/sqrt 2) = <dx> / (-(sigma/sqrt(2 pi)) g/|g|): 0 at z = 0, 1 at z = inf."""
    t = _check_z(z)
    return _back(_half_z_tail(t, torch.zeros_like(t)) / _INV_SQRT_2PI, z)


def linear_second_moment(z: Scalar) -> Scalar:
    """M2(z) = E[eta^2 min(1, exp(-z eta))] = 1/2 + (1 + z^2) erfcx(z/sqrt 2)/2 - z/sqrt(2 pi).

    The second moment of the displacement along g in units of sigma^2 (1 at z = 0, 1/2 at inf);
    across g it is A(z) sigma^2.
    """
    t = _check_z(z)
    finite = torch.isfinite(t)
    tf = torch.where(finite, t, torch.zeros_like(t))
    m2 = 0.5 + (1 + tf * tf) * torch.special.erfcx(tf / _SQRT2) / 2 - tf * _INV_SQRT_2PI
    return _back(torch.where(finite, m2, torch.full_like(t, 0.5)), z)


def _mutation_weighted(g: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(sigma_vector or scalar tensor, w = sigma o g, |w| [..., 1]) for g [N] or [R, N]."""
    if not isinstance(g, Tensor) or g.dim() not in (1, 2) or not g.is_floating_point():
        raise NegdError("g: must be a floating-point tensor of shape [N] or [R, N]")
    sigma = check_sigma(sigma, g.shape[-1])
    s = torch.as_tensor(sigma, dtype=torch.float64, device=g.device)
    w = s * g.to(torch.float64)
    return s, w, torch.linalg.vector_norm(w, dim=-1, keepdim=True)


def _unit(w: Tensor, norm: Tensor) -> Tensor:
    # A zero gradient has no direction: zero drift rather than 0/0.
    return torch.where(norm > 0, w / norm.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w))


def linear_mean_displacement(g: Tensor, sigma: float | Tensor, beta: float) -> Tensor:
    """<dx> of one step on U = g.x: -(beta sigma^2/2) erfcx(z/sqrt 2) g, or -(sigma/sqrt(2 pi)) g/|g|.

    ``g`` [N] or [R, N]; per-parameter sigma [N] allowed. Returns float64 of g's shape.
    """
    return curvature_mean_displacement(g, torch.zeros(g.shape[:-1]) if isinstance(g, Tensor) else g,
                                       sigma, beta)


def linear_displacement_covariance(g: Tensor, sigma: float | Tensor, beta: float = math.inf) -> Tensor:
    """Covariance of one step's displacement on U = g.x: [N, N] (or [R, N, N]).

    Cov = S [A (I - u u^T) + (M2 - m^2) u u^T] S with u = w/|w|, m = z F/2. At beta = inf this is
    sigma^2 (I/2 - g g^T/(2 pi |g|^2)): variance sigma^2/2 per coordinate for N large.
    """
    beta = check_beta(beta)
    s, w, norm = _mutation_weighted(g, sigma)
    z = (beta * norm[..., 0]) if not math.isinf(beta) else torch.full_like(norm[..., 0], math.inf)
    u = _unit(w, norm)
    acc = linear_acceptance(z)
    m = _half_z_tail(z, torch.zeros_like(z))
    along = linear_second_moment(z) - m * m - acc
    eye = torch.eye(g.shape[-1], dtype=torch.float64, device=g.device)
    cov = acc[..., None, None] * eye + along[..., None, None] * u[..., :, None] * u[..., None, :]
    scale = s if s.dim() == 1 else s.expand(g.shape[-1])
    return cov * scale[:, None] * scale[None, :]


# ---------------------------------------------------------------------------------------------
# Curvature correction (Gaussian dU ~ N(sigma^2 tr H/2, sigma^2 |g|^2)).

def curvature_acceptance(c: Scalar, z: Scalar = math.inf) -> Scalar:
    """A = Phi(-c) + exp(-c^2/2) erfcx((z - c)/sqrt 2)/2; z = inf (beta = inf) gives Phi(-c)."""
    ct, zt = _check_c(c), _check_z(z)
    like = c if isinstance(c, Tensor) else z
    return _back(torch.special.erfc(ct / _SQRT2) / 2 + _tail_factor(zt, ct) / 2, like)


def curvature_drift_factor(c: Scalar, z: Scalar) -> Scalar:
    """F(z, c) = exp(-c^2/2) erfcx((z - c)/sqrt 2) = <dx> / (-(beta sigma^2/2) g) (finite beta)."""
    ct, zt = _check_c(c), _check_z(z)
    like = c if isinstance(c, Tensor) else z
    return _back(_tail_factor(zt, ct), like)


def curvature_normalized_drift_factor(c: Scalar, z: Scalar = math.inf) -> Scalar:
    """sqrt(pi/2) z F(z, c) = <dx> / (-(sigma/sqrt(2 pi)) g/|g|); exp(-c^2/2) at z = inf."""
    ct, zt = _check_c(c), _check_z(z)
    like = c if isinstance(c, Tensor) else z
    return _back(_half_z_tail(zt, ct) / _INV_SQRT_2PI, like)


def twin_drift_factor(c: Scalar, z: Scalar, beta: float) -> Scalar:
    """<dx> over the drift of the twin of this beta (:func:`twin_rates`): 1 where the twin is exact.

    Finite beta: :func:`curvature_drift_factor`; beta = inf: exp(-c^2/2).
    """
    if math.isinf(check_beta(beta)):
        return curvature_normalized_drift_factor(c, math.inf)
    return curvature_drift_factor(c, z)


def curvature_mean_displacement(g: Tensor, trace_hessian: Scalar, sigma: float | Tensor,
                                beta: float) -> Tensor:
    """<dx> with curvature: -(beta sigma^2/2) F(z, c) g, or -sigma phi(c) g/|g| at beta = inf.

    ``g`` [N] or [R, N]; ``trace_hessian`` a number or [R]: tr H, or tr(S H S) with
    S = diag(sigma) for per-parameter sigma (the trace that enters c; see the module docstring).
    """
    beta = check_beta(beta)
    s, w, norm = _mutation_weighted(g, sigma)
    n = norm[..., 0]
    trace = _as64(trace_hessian).to(n.device)
    if s.dim() == 1:  # per-parameter sigma: the sigma^2 of c is already inside tr(S H S)
        c = torch.where(n > 0, trace / (2 * n), torch.zeros_like(n))
    else:
        c = torch.where(n > 0, s * s * trace / (2 * n), torch.zeros_like(n))
    z = torch.full_like(n, math.inf) if math.isinf(beta) else beta * n
    # Along u = w/|w| the mean of eta over accepted moves is -z F/2 (phi(c) at z = inf).
    return -(s * _unit(w, norm)) * _half_z_tail(z, c)[..., None]
