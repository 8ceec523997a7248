"""Regime check: does the simple neuroevolution <-> gradient descent correspondence apply here?

Whitelam et al., Nat. Commun. 12, 6317 (2021) derive the twins (:func:`negd.theory.twin_rates`)
for small mutations. Two dimensionless numbers measure "small" at parameters x (see
:mod:`negd.theory`):

* z = beta sigma |g|, the typical beta dU of the linear part: the Langevin twin (finite beta)
  needs z << 1 (its drift is off by erfcx(z/sqrt 2), 8% at z = 0.1); at beta = inf z = inf and
  the normalized twin is the right one;
* c = sigma tr H/(2 |g|), the mean curvature part of dU over its linear spread: every twin
  needs |c| << 1 (the drift is off by about exp(-c^2/2), acceptance Phi(-c) at beta = inf);
* c_spread = sigma sqrt(tr(H^2)/2)/|g|, the standard deviation of the curvature part
  (sigma^2/2) xi.H.xi over sigma |g|. It equals c sqrt(2/n_eff) and is what matters when
  H is indefinite (tr H can cancel while H is large, as in tanh networks): the check also
  needs c_spread <= c_max.

To first order in sigma the acceptance at beta = inf is exactly 1/2 - phi(0) c_perp with
c_perp = sigma (tr H - u.H.u)/(2 |g|), u = g/|g|: the curvature along g itself is part of the
move that decides acceptance and does not shift it. With many effective dimensions
c_perp = c; for MSE networks the top Hessian directions often contain g and c_perp << c
(tanh MLP 1x30 on sin 2 pi x, sigma = 0.01: acceptance 0.4905 +- 0.0035 measured,
Phi(-c_perp) = 0.4932, Phi(-c) = 0.4817). Predictions and the verdict therefore use c_perp in
the formulas of :mod:`negd.theory`; ``c`` is reported too.

|g| comes from autograd (:func:`negd.rules.value_and_grad`); u.H.u (u = g/|g|) from one exact
Hessian-vector product (double backward); the rest of tr H from Hutchinson's estimator
tr(P H P) = E[v.P H P v] with Rademacher probes v projected off u (P = I - u u^T), which also
gives tr(H^2) and so the number of effective dimensions tr(H)^2/tr(H^2) that the Gaussian
treatment of dU assumes to be large. Default thresholds: z <= 0.1 and
|c| <= 0.1. Per-parameter sigma is handled by measuring everything along S = diag(sigma)
(see :class:`Regime`).

The check also says whether the arithmetic resolves the moves (:mod:`negd.diagnostics.resolution`): the
rounding error of dU measured on a few probe mutations, the fraction of accept decisions it can
flip (arctan(e/s)/pi with s the rms dU), and the quantization of the moves by the parameter
dtype. Where either exceeds its limit (0.5% of decisions, 1% of a move) the message says what to
change (a float64 loss or float64 parameters).

Ties (:mod:`negd.diagnostics.ties`): the fraction of the probe mutations that leave U exactly
unchanged. Where more than half tie (a piecewise-constant loss: a greedy policy, a quantized
objective) U is a plateau at this sigma, and a scan over sigma x 2^k names the sigma that resolves
it. A loss with no gradient at all (a black-box objective: its losses carry no autograd graph) gets
no z or c (NaN): the gradient twins have nothing to follow there; the check then reports the ties,
the rounding of dU, and names the mean-field twin, which needs no gradient.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from negd.diagnostics.resolution import assess, loss_rounding, quantization
from negd.diagnostics.ties import TIE_FRACTION_MAX, tie_fraction, tie_scan
from negd.losses.base import LossFn, as_ensemble_params, hessian_vector_products, value_and_grad
from negd.theory import curvature_acceptance, twin_drift_factor
from negd.theory.population import GaussianScopeWarning
from negd.validation import NegdError, check_beta, check_int, check_positive, check_sigma

__all__ = ["Regime", "regime_check", "hutchinson_trace"]

# Rows (realizations x probes) evaluated in one double-backward pass.
_MAX_ROWS_PER_PASS = 128
# The sigma grid of a tie scan: sigma x 2^k, k = 0..TIE_SCAN_DOUBLINGS.
TIE_SCAN_DOUBLINGS = 10
_TIE_PROBES_MIN = 32


@dataclass(frozen=True)
class Regime:
    """Result of :func:`regime_check`; tensors have one entry per realization [R].

    grad_norm |g|; trace_hessian tr H (Hutchinson) with its standard error trace_hessian_se;
    trace_hessian_squared tr(H^2); effective_dimensions tr(H)^2/tr(H^2) (a ratio of noisy
    estimates; below 1 when H is indefinite); grad_curvature u.H.u with u = g/|g|;
    z = beta sigma |g|; c = sigma tr H/(2|g|) +- c_se; c_perp = sigma (tr H - u.H.u)/(2|g|);
    c_spread = sigma sqrt(tr(H^2)/2)/|g|; acceptance_predicted and drift_factor (mean
    displacement over the drift of the twin of this beta) from c_perp, each +- its SE from the probes'
    SE of tr H (c_perp +- c_se through the same formula, half the difference); applies [R] bool and one
    reason per realization; message summarizes them in one line. Resolution
    (:mod:`negd.diagnostics.resolution`): loss_error (rms rounding error of dU), decision_risk (fraction of
    accept decisions that rounding can flip), quantization (rms rounding of a move over sigma),
    resolved [R] bool; the message names a rounding problem and its cure. Ties
    (:mod:`negd.diagnostics.ties`, scalar sigma): tie_fraction [R] of probe mutations with dU == 0 and
    its binomial tie_fraction_se [R], resolving_sigma (the smallest sigma x 2^k at which at most half of
    the proposals tie; None when ties are not the problem or nothing up to sigma x 2^10 resolves);
    has_gradient is False for a black-box loss (then the gradient numbers are NaN).

    For per-parameter sigma, ``grad_norm`` = |S g|/sigma_ref and ``trace_hessian`` =
    tr(S H S)/sigma_ref^2 with sigma_ref = rms(sigma), so that z and c keep their scalar formulas
    with sigma = sigma_ref.
    """

    grad_norm: Tensor
    trace_hessian: Tensor
    trace_hessian_se: Tensor
    trace_hessian_squared: Tensor
    effective_dimensions: Tensor
    grad_curvature: Tensor
    z: Tensor
    c: Tensor
    c_se: Tensor
    c_perp: Tensor
    c_spread: Tensor
    acceptance_predicted: Tensor
    acceptance_predicted_se: Tensor
    drift_factor: Tensor
    drift_factor_se: Tensor
    applies: Tensor
    loss_error: Tensor
    decision_risk: Tensor
    quantization: Tensor
    resolved: Tensor
    reasons: tuple[str, ...]
    message: str
    sigma: float
    beta: float
    z_max: float
    c_max: float
    tie_fraction: Tensor | None = None
    tie_fraction_se: Tensor | None = None
    resolving_sigma: float | None = None
    has_gradient: bool = True

    @property
    def all_apply(self) -> bool:
        return bool(self.applies.all())

    def to_dict(self) -> dict[str, object]:
        """Plain Python values (lists for tensors) for logging and JSON."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = v.tolist() if isinstance(v, Tensor) else (list(v) if isinstance(v, tuple) else v)
        return out


def _rademacher(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype,
                device: torch.device) -> Tensor:
    # Drawn on the CPU from a seeded generator: the same probes on every device.
    bits = torch.randint(0, 2, shape, generator=generator, dtype=torch.int64)
    return (bits * 2 - 1).to(dtype=dtype, device=device)


def hutchinson_trace(loss_fn: LossFn, params: Tensor, *, n_probes: int = 8, seed: int = 0,
                     scale: Tensor | None = None, exclude: Tensor | None = None
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Hutchinson estimates per realization of A = S H S: (tr A [R], its standard error [R], tr A^2 [R]).

    tr(A) = E[v.A v] and tr(A^2) = E[|A v|^2] for Rademacher v (Hutchinson 1990); the standard
    error is the sample standard deviation over the ``n_probes`` probes over sqrt(n_probes).
    ``scale`` (S, [N]) is the per-parameter mutation scale; None means S = I. With ``exclude``
    (unit vectors u [R, N]) the probes are projected off u, P v = v - (u.v) u, and the results
    are tr(P A P) and tr(P A^2 P) = tr(A^2) - |A u|^2 (unbiased, since E[P v v^T P] = P).
    """
    n_probes = check_int("n_probes", n_probes, 2)
    params = as_ensemble_params(params)
    r, n = params.shape
    generator = torch.Generator().manual_seed(int(seed))
    per_pass = max(1, _MAX_ROWS_PER_PASS // r)
    quad, sq = [], []
    done = 0
    while done < n_probes:
        k = min(per_pass, n_probes - done)
        v = _rademacher(generator, (k, r, n), params.dtype, params.device)
        if exclude is not None:
            u = exclude.to(params.dtype)
            v = v - (v * u).sum(-1, keepdim=True) * u
        if scale is None:
            hv = hessian_vector_products(loss_fn, params, v)
        else:  # (S H S) v = S (H (S v))
            s = scale.to(params.dtype)
            hv = hessian_vector_products(loss_fn, params, v * s) * s
        quad.append((v * hv).sum(-1).to(torch.float64))
        sq.append((hv * hv).sum(-1).to(torch.float64))
        done += k
    samples = torch.cat(quad)  # [n_probes, R]
    trace = samples.mean(0)
    se = samples.std(0, unbiased=True) / math.sqrt(n_probes)
    return trace, se, torch.cat(sq).mean(0)


def _reason(z: float, c: float, spread: float, beta: float, z_max: float, c_max: float,
            drift: float, n_eff: float = math.nan) -> str:
    fails = []
    if not math.isinf(beta) and z > z_max:
        fails.append(f"z = beta sigma |g| = {z:.3g} > {z_max:g}: the Langevin twin overstates the drift "
                     f"(factor {drift:.3g}); lower beta or sigma, or compare with the beta = inf twin")
    if not math.isfinite(c):
        fails.append("|g| = 0: no drift to compare (c undefined)")
    elif abs(c) > c_max:
        fails.append(f"|c_perp| = |sigma (tr H - u.H.u)/(2|g|)| = {abs(c):.3g} > {c_max:g}: mutations too "
                     f"large for the curvature (drift factor {drift:.3g}); lower sigma")
    if math.isfinite(c) and spread > c_max:
        fails.append(f"c_spread = sigma sqrt(tr H^2/2)/|g| = {spread:.3g} > {c_max:g}: the curvature "
                     "term of dU fluctuates more than the linear one allows (few parameters or anisotropic "
                     f"curvature: n_eff = tr(H)^2/tr(H^2) = {n_eff:.3g}), so the Gaussian forms of "
                     "negd.theory and negd.theory.population are outside their scope (population_moments_mc "
                     "is exact for a quadratic loss); lower sigma")
    if not fails:
        return f"applies: z = {z:.3g}, c_perp = {c:.3g}, c_spread = {spread:.3g} (drift factor {drift:.3g})"
    return "; ".join(fails)


def regime_check(loss_fn: LossFn, params: Tensor, sigma: float | Tensor, beta: float = math.inf, *,
                 n_probes: int = 8, seed: int = 0, z_max: float = 0.1, c_max: float = 0.1,
                 ties: bool = True) -> Regime:
    """Measure z and c at ``params`` ([N] or [R, N]) and predict acceptance and drift factor.

    ``loss_fn`` maps [R, N] -> [R] (e.g. :class:`negd.losses.mlp.MLPLoss`,
    :func:`negd.losses.module.loss_for`) and must be twice differentiable by autograd. The drift
    factor is the predicted mean displacement over the drift of the twin of this beta
    (:func:`negd.theory.twin_drift_factor`); the correspondence "applies" where z <= z_max (finite
    beta only), |c_perp| <= c_max and c_spread <= c_max. ``ties=False`` skips the tie probes (and the
    scan of a plateau): for a caller that counts its run's own ties, as the runner's tallies do.
    """
    params = as_ensemble_params(params)
    sigma = check_sigma(sigma, params.shape[1])
    beta = check_beta(beta)
    z_max = check_positive("z_max", z_max)
    c_max = check_positive("c_max", c_max)
    n_probes = check_int("n_probes", n_probes, 2)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise NegdError(f"seed: must be an integer >= 0, got {seed!r}")

    per_param = isinstance(sigma, Tensor)
    scale = sigma.to(device=params.device, dtype=torch.float64) if per_param else None
    sigma_ref = float(scale.pow(2).mean().sqrt()) if per_param else float(sigma)

    _, grad = value_and_grad(loss_fn, params, missing_ok=True)
    ties = _ties(loss_fn, params, sigma, n_probes, seed) if ties else _Ties(None, None, None, "")
    if grad is None:
        return _without_gradient(loss_fn, params, sigma, sigma_ref, beta, z_max, c_max, seed, ties)
    grad = grad.detach().to(torch.float64)
    grad_norm = torch.linalg.vector_norm(grad if scale is None else grad * scale / sigma_ref, dim=1)
    unit_scale = None if scale is None else scale / sigma_ref
    # u.A.u along the gradient direction u (A = S'HS' in mutation units): one exact
    # Hessian-vector product. Hutchinson then only samples the rest, tr(P A P) = tr A - u.A.u,
    # which removes the (often dominant) variance of the gradient direction from the estimate.
    unit = grad if unit_scale is None else grad * unit_scale
    unit = unit / grad_norm[:, None].clamp_min(torch.finfo(unit.dtype).tiny)
    direction = unit if unit_scale is None else unit * unit_scale
    a_unit = hessian_vector_products(loss_fn, params, direction.to(params.dtype)[None])[0]
    a_unit = a_unit.to(torch.float64) * (1.0 if unit_scale is None else unit_scale)
    grad_curvature = (unit * a_unit).sum(1)
    trace_perp, trace_se, trace_sq_perp = hutchinson_trace(
        loss_fn, params, n_probes=n_probes, seed=seed, scale=unit_scale,
        exclude=unit if bool((grad_norm > 0).all()) else None)
    if bool((grad_norm > 0).all()):
        trace = trace_perp + grad_curvature
        trace_sq = trace_sq_perp + (a_unit * a_unit).sum(1)
    else:  # no gradient direction to take out
        trace, trace_sq = trace_perp, trace_sq_perp
    eff_dims = trace * trace / trace_sq

    z = beta * sigma_ref * grad_norm if not math.isinf(beta) else torch.full_like(grad_norm, math.inf)
    c = sigma_ref * trace / (2 * grad_norm)
    c_perp = sigma_ref * (trace - grad_curvature) / (2 * grad_norm)
    c_se = sigma_ref * trace_se / (2 * grad_norm)
    spread = sigma_ref * torch.sqrt(trace_sq / 2) / grad_norm
    finite_c = torch.isfinite(c_perp)
    c_safe = torch.where(finite_c, c_perp, torch.zeros_like(c))
    z_safe = torch.where(torch.isnan(z), torch.zeros_like(z), z)
    acceptance = torch.where(finite_c, curvature_acceptance(c_safe, z_safe), torch.full_like(c, math.nan))
    drift = torch.where(finite_c, twin_drift_factor(c_safe, z_safe, beta), torch.full_like(c, math.nan))
    # The probes' error on tr H carried through the predictions: half the change over c_perp +- c_se.
    se_safe = torch.where(torch.isfinite(c_se), c_se, torch.zeros_like(c_se))
    known = finite_c & torch.isfinite(c_se)
    nan = torch.full_like(c, math.nan)
    acceptance_se = torch.where(known, (curvature_acceptance(c_safe - se_safe, z_safe)
                                        - curvature_acceptance(c_safe + se_safe, z_safe)).abs() / 2, nan)
    drift_se = torch.where(known, (twin_drift_factor(c_safe - se_safe, z_safe, beta)
                                   - twin_drift_factor(c_safe + se_safe, z_safe, beta)).abs() / 2, nan)

    applies = finite_c & (c_perp.abs() <= c_max) & (spread <= c_max)
    if not math.isinf(beta):
        applies &= z <= z_max
    reasons = tuple(_reason(zi, ci, si, beta, z_max, c_max, di, ni)
                    for zi, ci, si, di, ni in zip(z.tolist(), c_perp.tolist(), spread.tolist(),
                                                  drift.tolist(), eff_dims.tolist()))
    if bool((torch.isfinite(c_perp) & (spread > c_max)).any()):
        warnings.warn("regime_check: c_spread > c_max (few parameters or anisotropic curvature): the "
                      "Gaussian form of dU is outside its scope; see Regime.message", GaussianScopeWarning,
                      stacklevel=2)
    failing = [i for i, ok in enumerate(applies.tolist()) if not ok]
    if not failing:
        conditions = f"|c_perp|, c_spread <= {c_max:g}" + ("" if math.isinf(beta) else f" and z <= {z_max:g}")
        message = f"correspondence applies in all {len(reasons)} realizations ({conditions})"
    else:
        message = f"does not apply in {len(failing)}/{len(reasons)} realizations; e.g. #{failing[0]}: " \
                  f"{reasons[failing[0]]}"

    # Rounding: dU's error on probe mutations and the parameters' quantization of the moves.
    loss_error, du_rms = loss_rounding(loss_fn, params, sigma, seed=seed)
    du_rms = torch.where(torch.isfinite(du_rms), du_rms, sigma_ref * grad_norm.cpu())
    resolution = assess(loss_error, du_rms, quantization(params, sigma).cpu(), params.dtype)
    if _rounding_matters(resolution, du_rms):
        message = f"{message}; {resolution.message}"
    if ties.message:
        message = f"{message}; {ties.message}"
    return Regime(grad_norm=grad_norm, trace_hessian=trace, trace_hessian_se=trace_se,
                  trace_hessian_squared=trace_sq, effective_dimensions=eff_dims,
                  grad_curvature=grad_curvature, z=z, c=c, c_se=c_se, c_perp=c_perp, c_spread=spread,
                  acceptance_predicted=acceptance, acceptance_predicted_se=acceptance_se, drift_factor=drift,
                  drift_factor_se=drift_se, applies=applies,
                  loss_error=resolution.loss_error, decision_risk=resolution.decision_risk,
                  quantization=resolution.quantization, resolved=resolution.ok, reasons=reasons,
                  message=message, sigma=sigma_ref, beta=beta, z_max=z_max, c_max=c_max,
                  tie_fraction=ties.fraction, tie_fraction_se=ties.se, resolving_sigma=ties.resolving_sigma)


def _rounding_matters(resolution, du_rms: Tensor) -> bool:
    """A rounding problem worth a line: not where every probe tied (dU = 0 exactly: nothing for
    rounding to flip; the ties' line says what is wrong there)."""
    return not bool(resolution.ok.all()) and bool((du_rms > 0).any())


@dataclass(frozen=True)
class _Ties:
    fraction: Tensor | None
    se: Tensor | None
    resolving_sigma: float | None
    message: str  # "" where ties are not the problem


def _ties(loss_fn: LossFn, params: Tensor, sigma: float | Tensor, n_probes: int, seed: int) -> _Ties:
    """Tie fraction at sigma; where over half of the proposals tie, the sigma that resolves them."""
    if isinstance(sigma, Tensor):  # per-parameter sigma: the probes of negd.diagnostics.ties are scalar
        return _Ties(None, None, None, "")
    probes = max(n_probes, _TIE_PROBES_MIN)
    fraction, se = tie_fraction(loss_fn, params, sigma, probes=probes, seed=seed)
    if float(fraction.mean()) <= TIE_FRACTION_MAX:
        return _Ties(fraction, se, None, "")
    scan = tie_scan(loss_fn, params, [sigma * 2.0**k for k in range(TIE_SCAN_DOUBLINGS + 1)],
                    probes=probes, seed=seed, at_sigma=sigma)
    return _Ties(fraction, se, scan.resolving_sigma, scan.message)


def _without_gradient(loss_fn: LossFn, params: Tensor, sigma: float | Tensor, sigma_ref: float,
                      beta: float, z_max: float, c_max: float, seed: int, ties: _Ties) -> Regime:
    """The regime of a black-box loss: no z or c (NaN), the rounding of dU, the ties."""
    r = params.shape[0]
    nan = torch.full((r,), math.nan, dtype=torch.float64)
    loss_error, du_rms = loss_rounding(loss_fn, params, sigma, seed=seed)
    resolution = assess(loss_error, du_rms, quantization(params, sigma).cpu(), params.dtype)
    reason = ("no gradient (a black-box loss): z and c are undefined and the gradient twins have nothing "
              "to follow; compare with the mean-field twin (negd.twins.MeanFieldTwin), which needs none")
    parts = [reason] + ([resolution.message] if _rounding_matters(resolution, du_rms) else [])
    parts += [ties.message] if ties.message else []
    if not ties.message and ties.fraction is not None:
        parts.append(f"ties: {100 * float(ties.fraction.mean()):.3g}% of proposals at sigma = "
                     f"{sigma_ref:.3g} leave the loss exactly unchanged (the loss resolves the moves)")
    return Regime(grad_norm=nan, trace_hessian=nan, trace_hessian_se=nan, trace_hessian_squared=nan,
                  effective_dimensions=nan, grad_curvature=nan, z=nan, c=nan, c_se=nan, c_perp=nan,
                  c_spread=nan, acceptance_predicted=nan, acceptance_predicted_se=nan, drift_factor=nan,
                  drift_factor_se=nan, applies=torch.zeros(r, dtype=torch.bool),
                  loss_error=resolution.loss_error, decision_risk=resolution.decision_risk,
                  quantization=resolution.quantization, resolved=resolution.ok, reasons=(reason,) * r,
                  message="; ".join(parts), sigma=sigma_ref, beta=beta, z_max=z_max, c_max=c_max,
                  tie_fraction=ties.fraction, tie_fraction_se=ties.se,
                  resolving_sigma=ties.resolving_sigma, has_gradient=False)
