"""Delta(t), its statistical floor and the floor-corrected Delta with a standard error.

The paper (Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021), Fig. 2) measures
how far the ensemble-averaged neuroevolution parameters are from gradient descent::

    Delta = (1/N) sum_i (g_i - m_i)^2

with g the gradient-descent parameters and m_i the sample mean of parameter i over R
realizations. Even when the correspondence is exact (mu_i = g_i, mu_i the true mean),
Delta is not zero: m_i fluctuates around mu_i with variance v_i / R. Writing
b_i = g_i - mu_i (the systematic gap that we want) and taking m_i ~ N(mu_i, v_i/R)::

    E[(g_i - m_i)^2]   = b_i^2 + v_i / R                                   (1)
    Var[(g_i - m_i)^2] = 4 b_i^2 v_i / R + 2 v_i^2 / R^2                   (2)

(the square of a normal variable with mean b and variance s^2 has variance 4 b^2 s^2 + 2 s^4).
The *floor* is the plug-in estimate of the second term of (1), (1/N) sum_i s_i^2 / R with
s_i^2 the unbiased (ddof=1) sample variance, so that the *corrected* Delta::

    Delta_c = (1/N) sum_i C_i,      C_i = (g_i - m_i)^2 - s_i^2 / R

is an unbiased estimate of (1/N) sum_i b_i^2. The floor has its own estimation error: for
Gaussian samples Var[s^2] = 2 v^2 / (R - 1), and s^2 is independent of m, so::

    Var[C_i] = 4 b_i^2 v_i / R + 2 v_i^2 / R^2 + 2 v_i^2 / (R^2 (R - 1))
             = 4 b_i^2 v_i / R + 2 v_i^2 / (R (R - 1)).                    (3)

We estimate (3) without bias from the data with D_i = (g_i - m_i)^2, using
E[D_i s_i^2] = (b_i^2 + v_i/R) v_i and E[s_i^4] = v_i^2 (R + 1)/(R - 1)::

    Var_hat[C_i] = 4 D_i s_i^2 / R - 4 s_i^4 (R - 1) / ((R + 1) R^2) + 2 s_i^4 / (R (R + 1))

and SE[Delta_c] = sqrt(max(sum_i Var_hat[C_i], sum_i 2 s_i^4 / (R (R + 1)))) / N, the second
term being the unbiased estimate of the b = 0 value of (3), a lower bound of the true variance
(the unbiased sum can be negative when N is small). This treats the parameters as
independent: correlations between parameters (which neuroevolution does create) add
cross terms 4 b^T Sigma b / R + 2 tr(Sigma^2) / (R (R-1)) that the per-parameter variances
of a run directory cannot measure, so the SE is a lower bound when parameters are strongly
correlated. The authors' definition of the floor uses ddof=0 (see :func:`delta_floor`).

**Langevin twin** (finite beta). The twin is then itself an ensemble: g_i is the sample mean of
R_L Langevin realizations with variance u_i, g_i ~ N(mu^L_i, u_i/R_L), independent of the NE
ensemble. With b_i = mu^L_i - mu_i and w_i = v_i/R + u_i/R_L, g_i - m_i ~ N(b_i, w_i), so (1)-(2)
hold with v_i/R replaced by w_i. The floor is f_i = s_i^2/R + q_i^2/R_L (q_i^2 the twin's unbiased
variance), unbiased for w_i, with Var[f_i] = 2 v_i^2/(R^2 (R-1)) + 2 u_i^2/(R_L^2 (R_L-1)), and::

    Var[C_i] = 4 b_i^2 w_i + 2 w_i^2 + 2 v_i^2/(R^2 (R-1)) + 2 u_i^2/(R_L^2 (R_L-1)).     (4)

Unbiased pieces: E[D_i f_i] = (b_i^2 + w_i) w_i (D and f independent for Gaussian samples),
W2_i = s_i^4 (R-1)/((R+1) R^2) + 2 s_i^2 q_i^2/(R R_L) + q_i^4 (R_L-1)/((R_L+1) R_L^2) for w_i^2,
s_i^4 (R-1)/(R+1) for v_i^2 (and likewise q_i^4 for u_i^2), hence::

    Var_hat[C_i] = 4 D_i f_i - 2 W2_i + 2 s_i^4/(R^2 (R+1)) + 2 q_i^4/(R_L^2 (R_L+1))

with the b = 0 lower bound 2 W2_i + 2 s_i^4/(R^2 (R+1)) + 2 q_i^4/(R_L^2 (R_L+1)). With q = 0 both
reduce to the expressions above (the noiseless twin is the special case R_L -> inf). The same holds for
any ensemble twin: the moment-matched Langevin ensemble, and the mean-field twin's R_L runs, whose
variance is the estimation noise of its expected step (negd.twins.mean_field).

**Correlated parameters** (:func:`delta_from_samples`, :func:`delta_from_ensembles`, and the runner,
which has every realization at each snapshot). Neuroevolution correlates parameters strongly (all
weights of a realization move together with its accepted moves), and then the per-parameter SE
above can be several times too small. With the whole covariance Sigma of the realizations, (2)
summed over parameters becomes::

    N^2 Var[Delta_c] = 4 b^T Sigma b / R + 2 tr(Sigma^2) / (R (R - 1))                        (5)

(Gaussian m, and s^2 independent of m). Unbiased pieces: with d = g - m and Sigma_hat the sample
covariance, E[d^T Sigma_hat d] = b^T Sigma b + tr(Sigma^2)/R, and for Gaussian samples
T2 = (R-1)^2/((R-2)(R+1)) [tr(Sigma_hat^2) - tr(Sigma_hat)^2/(R-1)] is unbiased for tr(Sigma^2)
(needs R >= 3), hence::

    N^2 Var_hat = 4 d^T Sigma_hat d / R - 2 T2 (R - 2) / (R^2 (R - 1)),   b = 0 bound 2 T2/(R (R-1)).

For diagonal Sigma this is the per-parameter estimator term by term. A Langevin twin (covariance
Omega, R_L realizations) enters as in (4) with W = Sigma/R + Omega/R_L:
N^2 Var_hat = 4 d^T W_hat d - 2 tr_hat(W^2) + 2 T2_x/(R^2 (R-1)) + 2 T2_y/(R_L^2 (R_L-1)), where
tr_hat(W^2) = T2_x/R^2 + 2 tr(Sigma_hat Omega_hat)/(R R_L) + T2_y/R_L^2 (the cross term is unbiased
because the two ensembles are independent). tr(Sigma_hat^2) costs one Gram matrix of the smaller
side, min(R, N)^2 max(R, N) operations. tests/test_analysis.py checks the calibration on
ensembles with a common factor, where the per-parameter SE is 4-10x too small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from negd.validation import NegdError

__all__ = ["DeltaStats", "delta_stats", "delta_from_samples", "delta_from_ensembles", "delta_floor"]


@dataclass(frozen=True)
class DeltaStats:
    """Delta and friends for one snapshot (floats) or a series of snapshots (arrays [S])."""

    delta: np.ndarray | float
    floor: np.ndarray | float
    corrected: np.ndarray | float
    corrected_se: np.ndarray | float


def _as_2d(name: str, a) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise NegdError(f"{name}: must have shape [N] or [S, N], got {list(arr.shape)}")
    return arr


def delta_stats(gd_params, param_mean, param_var, realizations: int, twin_var=None,
                twin_realizations: int | None = None) -> DeltaStats:
    """Delta, floor (ddof=1 variance / R), corrected Delta and its SE (module docstring).

    Args:
        gd_params: [N] or [S, N] gradient-descent parameters g (a Langevin twin: its ensemble mean).
        param_mean: same shape, sample mean m of the R realizations.
        param_var: same shape, unbiased (ddof=1) sample variance s^2 over the realizations.
        realizations: R. With R < 2 the floor is undefined and floor, corrected and SE are NaN.
        twin_var: for a Langevin twin, the unbiased variance q^2 over its realizations (same shape);
            None for a noiseless twin.
        twin_realizations: R_L, required with ``twin_var`` (NaN results when R_L < 2).
    Returns floats for [N] inputs and arrays [S] for [S, N] inputs.
    """
    single = np.ndim(gd_params) == 1
    g = _as_2d("gd_params", gd_params)
    m = _as_2d("param_mean", param_mean)
    s2 = _as_2d("param_var", param_var)
    if not (g.shape == m.shape == s2.shape):
        raise NegdError(
            f"param_mean, param_var, gd_params: shapes differ ({list(m.shape)}, "
            f"{list(s2.shape)}, {list(g.shape)})"
        )
    if isinstance(realizations, bool) or int(realizations) != realizations or realizations < 1:
        raise NegdError(f"realizations: must be an integer >= 1, got {realizations!r}")
    r = int(realizations)
    q2, rl = None, None
    if twin_var is not None:
        q2 = _as_2d("twin_var", twin_var)
        if q2.shape != g.shape:
            raise NegdError(f"twin_var: shape {list(q2.shape)} differs from gd_params {list(g.shape)}")
        if isinstance(twin_realizations, bool) or twin_realizations is None \
                or int(twin_realizations) != twin_realizations or twin_realizations < 1:
            raise NegdError(f"twin_realizations: must be an integer >= 1 with twin_var, "
                            f"got {twin_realizations!r}")
        rl = int(twin_realizations)
    n = g.shape[1]
    d = (g - m) ** 2
    delta = d.mean(axis=1)
    if r < 2 or (rl is not None and rl < 2):
        nan = np.full_like(delta, np.nan)
        out = DeltaStats(delta, nan, nan, nan)
    elif q2 is None:
        floor = (s2 / r).mean(axis=1)
        s4 = s2**2
        var_c = 4 * d * s2 / r - 4 * s4 * (r - 1) / ((r + 1) * r**2) + 2 * s4 / (r * (r + 1))
        # The unbiased sum can come out below its b = 0 value (even negative) for few parameters;
        # Var[C_i] >= 2 v_i^2 / (R (R - 1)) always, so never report less than that bound's estimate.
        lower = (2 * s4 / (r * (r + 1))).sum(axis=1)
        se = np.sqrt(np.maximum(var_c.sum(axis=1), lower)) / n
        out = DeltaStats(delta, floor, delta - floor, se)
    else:  # Langevin twin: both means are noisy, equation (4)
        f = s2 / r + q2 / rl
        floor = f.mean(axis=1)
        s4, q4 = s2**2, q2**2
        w2 = s4 * (r - 1) / ((r + 1) * r**2) + 2 * s2 * q2 / (r * rl) + q4 * (rl - 1) / ((rl + 1) * rl**2)
        own = 2 * s4 / (r**2 * (r + 1)) + 2 * q4 / (rl**2 * (rl + 1))
        var_c = 4 * d * f - 2 * w2 + own
        lower = (2 * w2 + own).sum(axis=1)
        se = np.sqrt(np.maximum(var_c.sum(axis=1), lower)) / n
        out = DeltaStats(delta, floor, delta - floor, se)
    if single:
        return DeltaStats(
            *(float(np.asarray(v)[0]) for v in (out.delta, out.floor, out.corrected, out.corrected_se))
        )
    return out


def _centered(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-2, keepdims=True)


def _cross_trace(xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
    """tr(X^T X Y^T Y) = ||X Y^T||_F^2 for centered [S, R, N] and [S, R', N], on the cheaper side.

    The products go through torch: numpy's bundled OpenBLAS, loaded beside torch's, ran ~15x slower
    here (3 s against 0.2 s for a 1e5 x 90 Gram matrix)."""
    x, y = torch.from_numpy(xc), torch.from_numpy(yc)
    if xc.shape[-2] * yc.shape[-2] <= xc.shape[-1] ** 2:
        return (torch.bmm(x, y.transpose(1, 2)) ** 2).sum(dim=(1, 2)).numpy()
    gram_x = torch.bmm(x.transpose(1, 2), x)
    gram_y = gram_x if yc is xc else torch.bmm(y.transpose(1, 2), y)
    return (gram_x * gram_y).sum(dim=(1, 2)).numpy()


def _trace_sigma2(xc: np.ndarray) -> np.ndarray:
    """Unbiased (Gaussian) estimate T2 of tr(Sigma^2) from centered samples [S, R, N], R >= 3."""
    r = xc.shape[-2]
    tr2 = _cross_trace(xc, xc) / (r - 1) ** 2
    tr = (xc**2).sum(axis=(1, 2)) / (r - 1)
    return (r - 1) ** 2 / ((r - 2) * (r + 1)) * (tr2 - tr**2 / (r - 1))


def _covariance_variance(d: np.ndarray, xc: np.ndarray,
                         yc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased estimate of N^2 Var[Delta_c] (equation (5) or its twin form) and its b = 0 bound; [S]."""
    r = xc.shape[-2]
    xd = np.einsum("srn,sn->sr", xc, d) ** 2  # (x_r - m) . d, squared
    t2x = _trace_sigma2(xc)
    if yc is None:
        var = 4 * xd.sum(axis=1) / ((r - 1) * r) - 2 * t2x * (r - 2) / (r**2 * (r - 1))
        lower = 2 * t2x / (r * (r - 1))
    else:
        rl = yc.shape[-2]
        yd = np.einsum("srn,sn->sr", yc, d) ** 2
        t2y = _trace_sigma2(yc)
        cross = _cross_trace(xc, yc) / ((r - 1) * (rl - 1))
        w2 = t2x / r**2 + 2 * cross / (r * rl) + t2y / rl**2
        own = 2 * t2x / (r**2 * (r - 1)) + 2 * t2y / (rl**2 * (rl - 1))
        dwd = xd.sum(axis=1) / ((r - 1) * r) + yd.sum(axis=1) / ((rl - 1) * rl)
        var = 4 * dwd - 2 * w2 + own
        lower = 2 * w2 + own
    return var, lower


def _covariance_se(d: np.ndarray, xc: np.ndarray, yc: np.ndarray | None) -> np.ndarray:
    """SE of Delta_c with the full covariance; [S]. Never below the b = 0 bound: an unbiased estimate
    that falls under it is noise (the true variance is never below the bound), so this SE errs on the
    large side: by 1.8x in variance (1.35x in SE) for ensembles with one common factor of correlation
    0.5 (tests/test_analysis.py), by ~1.1x for independent parameters."""
    var, lower = _covariance_variance(d, xc, yc)
    return np.sqrt(np.maximum(np.maximum(var, lower), 0.0)) / d.shape[-1]


def _with_covariance_se(stats: DeltaStats, d: np.ndarray, xc: np.ndarray, yc: np.ndarray | None,
                        single: bool) -> DeltaStats:
    if xc.shape[-2] < 3 or (yc is not None and yc.shape[-2] < 3):
        return stats  # T2 needs R >= 3: keep the per-parameter SE
    se = _covariance_se(d, xc, yc)
    return DeltaStats(stats.delta, stats.floor, stats.corrected, float(se[0]) if single else se)


def delta_from_samples(gd_params, samples) -> DeltaStats:
    """:func:`delta_stats` from raw realizations ``samples`` [R, N] (or [S, R, N]) and g [N] / [S, N].

    With R >= 3 the SE uses the full covariance of the realizations (module docstring, (5)).
    """
    x = np.asarray(samples, dtype=np.float64)
    single = x.ndim == 2
    if x.ndim not in (2, 3):
        raise NegdError(f"samples: must have shape [R, N] or [S, R, N], got {list(x.shape)}")
    x = x[None] if single else x
    g = _as_2d("gd_params", gd_params)
    if g.shape != (x.shape[0], x.shape[2]):
        raise NegdError(f"gd_params: shape {list(np.shape(gd_params))} does not match samples "
                        f"{list(np.shape(samples))}")
    r = x.shape[1]
    mean = x.mean(axis=1)
    var = x.var(axis=1, ddof=1) if r > 1 else np.zeros_like(mean)
    stats = delta_stats(g[0] if single else g, mean[0] if single else mean, var[0] if single else var, r)
    return _with_covariance_se(stats, g - mean, _centered(x), None, single)


def delta_from_ensembles(twin_samples, samples) -> DeltaStats:
    """:func:`delta_stats` between a Langevin twin ensemble [R_L, N] (or [S, R_L, N]) and NE samples
    [R, N] (or [S, R, N]): both means noisy (module docstring, equation (4); with R, R_L >= 3 the SE
    uses both full covariances)."""
    xl = np.asarray(twin_samples, dtype=np.float64)
    x = np.asarray(samples, dtype=np.float64)
    if xl.ndim not in (2, 3) or x.ndim != xl.ndim or xl.shape[-1] != x.shape[-1] \
            or xl.shape[:-2] != x.shape[:-2]:
        raise NegdError(f"twin_samples, samples: must both have shape [R, N] or [S, R, N] with the same "
                        f"S and N, got {list(xl.shape)} and {list(x.shape)}")
    single = x.ndim == 2
    x, xl = (x[None], xl[None]) if single else (x, xl)
    r, rl = x.shape[1], xl.shape[1]
    mean, mean_l = x.mean(axis=1), xl.mean(axis=1)
    var = x.var(axis=1, ddof=1) if r > 1 else np.zeros_like(mean)
    var_l = xl.var(axis=1, ddof=1) if rl > 1 else np.zeros_like(mean_l)
    pick = (lambda a: a[0]) if single else (lambda a: a)
    stats = delta_stats(pick(mean_l), pick(mean), pick(var), r, twin_var=pick(var_l), twin_realizations=rl)
    return _with_covariance_se(stats, mean_l - mean, _centered(x), _centered(xl), single)


def delta_floor(samples, ddof: int = 1) -> float | np.ndarray:
    """(1/N) sum_i Var(x_i) / R over realizations (axis -2) of ``samples`` [..., R, N].

    ``ddof=1`` (default) is the unbiased floor used by :func:`delta_stats`; the paper's
    authors' "mean per-parameter variance divided by 10" matches ``ddof=0`` (numpy's default),
    which is smaller by (R - 1)/R.
    """
    x = np.asarray(samples, dtype=np.float64)
    r = x.shape[-2]
    return (x.var(axis=-2, ddof=ddof) / r).mean(axis=-1)
