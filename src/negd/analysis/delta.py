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
reduce to the expressions above (the noiseless twin is the special case R_L -> inf).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def delta_from_samples(gd_params, samples) -> DeltaStats:
    """:func:`delta_stats` from raw realizations ``samples`` [R, N] (or [S, R, N]) and g [N] / [S, N]."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
        g = np.asarray(gd_params, dtype=np.float64)[None]
        single = True
    elif x.ndim == 3:
        g = np.asarray(gd_params, dtype=np.float64)
        single = False
    else:
        raise NegdError(f"samples: must have shape [R, N] or [S, R, N], got {list(x.shape)}")
    r = x.shape[1]
    var = x.var(axis=1, ddof=1) if r > 1 else np.zeros_like(x[:, 0])
    stats = delta_stats(
        g[0] if single else g, x.mean(axis=1)[0] if single else x.mean(axis=1), var[0] if single else var, r
    )
    return stats


def delta_from_ensembles(twin_samples, samples) -> DeltaStats:
    """:func:`delta_stats` between a Langevin twin ensemble [R_L, N] (or [S, R_L, N]) and NE samples
    [R, N] (or [S, R, N]): both means noisy (module docstring, equation (4))."""
    xl = np.asarray(twin_samples, dtype=np.float64)
    x = np.asarray(samples, dtype=np.float64)
    if xl.ndim not in (2, 3) or x.ndim != xl.ndim:
        raise NegdError(f"twin_samples, samples: must both have shape [R, N] or [S, R, N], got "
                        f"{list(xl.shape)} and {list(x.shape)}")
    r, rl = x.shape[-2], xl.shape[-2]
    var = x.var(axis=-2, ddof=1) if r > 1 else np.zeros_like(x.mean(axis=-2))
    var_l = xl.var(axis=-2, ddof=1) if rl > 1 else np.zeros_like(xl.mean(axis=-2))
    return delta_stats(xl.mean(axis=-2), x.mean(axis=-2), var, r, twin_var=var_l, twin_realizations=rl)


def delta_floor(samples, ddof: int = 1) -> float | np.ndarray:
    """(1/N) sum_i Var(x_i) / R over realizations (axis -2) of ``samples`` [..., R, N].

    ``ddof=1`` (default) is the unbiased floor used by :func:`delta_stats`; the paper's
    authors' "mean per-parameter variance divided by 10" matches ``ddof=0`` (numpy's default),
    which is smaller by (R - 1)/R.
    """
    x = np.asarray(samples, dtype=np.float64)
    r = x.shape[-2]
    return (x.var(axis=-2, ddof=ddof) / r).mean(axis=-1)
