"""The prose of a run's report: numbers with their SE, and the paragraphs on the regime, the twin,
acceptance and the resolution of dU (:mod:`negd.analysis.report` assembles them)."""

from __future__ import annotations

import math

from negd.analysis.metrics import C_SMALL, S_SMALL
from negd.analysis.rundir import ENSEMBLE_TWINS, NOISY_TWINS, TWIN_LABELS, RunData

__all__ = ["fmt", "pm", "regime_text", "twin_text", "acceptance_text", "RESOLUTION_KEYS",
           "resolution_over_arms", "resolution_text"]


def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def pm(value: float, se: float) -> str:
    return f"{fmt(value)} +- {fmt(se, 2)}"


def regime_text(run: RunData, final: dict) -> str:
    beta = run.beta
    c_final, c_max, t_c = final["c_final"], final["c_max"], final["t_c_exceeds"]
    if not math.isfinite(c_max):
        return "Regime not computed for this run (z, c are NaN): no statement on the small-sigma limit."
    parts = [f"c = sigma tr(H)/(2|g|) is {fmt(c_final, 3)} at the end (max {fmt(c_max, 3)})."]
    if math.isnan(t_c):
        parts.append(
            f"c stays below {C_SMALL} throughout: mutations are small compared with the scale on "
            "which the gradient changes, so the small-sigma expansion behind the correspondence applies."
        )
    else:
        g0, g1 = final["grad_norm_initial"], final["grad_norm_final"]
        parts.append(
            f"c first exceeds {C_SMALL} at t = {fmt(t_c, 3)}; |g| went from {fmt(g0, 3)} to "
            f"{fmt(g1, 3)}, so curvature (tr H) competes with the gradient: the acceptance drops "
            "towards Phi(-c) and the drift towards GD is reduced by about exp(-c^2/2), which is where "
            "the correspondence is expected to weaken."
        )
    z = final["z_final"]
    if math.isinf(beta):
        parts.append("beta = inf: the twin is the mean-field drift of NE (z = inf by definition)."
                     if run.twin == "mean-field" else
                     "beta = inf: the twin is normalized GD (z = inf by definition).")
    elif math.isfinite(z):
        not_small = ("the moment-matched twin carries that factor and the acceptance A(z)"
                     if run.twin == "matched" else
                     "the mean-field twin carries that factor (it estimates NE's own expected step)"
                     if run.twin == "mean-field" else "the plain Langevin twin is only approximate "
                     "(negd reproduce --twin matched follows NE at any z)")
        regime = (
            "z << 1: Langevin regime, twin = GD with lr beta sigma^2/2"
            if z < C_SMALL
            else "z is not small: acceptance below 1 and the drift leaves the Langevin form "
            f"(factor erfcx(z/sqrt 2)); {not_small}"
        )
        parts.append(f"z = beta sigma |g| = {fmt(z, 3)} at the end: {regime}.")
    spread = final.get("s_final", math.nan)
    if math.isfinite(spread) and run.twin not in NOISY_TWINS:
        verdict_on_spread = (
            f"below {S_SMALL}: the mutation noise the {run.twin} twin lacks moves the mean loss by less than "
            "the verdict's own tolerance" if abs(spread) <= S_SMALL else
            f"above {S_SMALL}: the theory no longer guarantees that the ensemble's mean loss stays with the "
            f"{run.twin} twin's (s ignores restoring forces and, at beta = inf, that every realization only "
            "moves downhill: near convergence it overstates the spread)")
        parts.append(f"s = tr(H) Var/(2 U_twin) = {fmt(spread, 3)} at the end, with Var = sigma^2 x "
                     f"(accepted steps) the random-walk spread of the mutations: {verdict_on_spread}.")
    return " ".join(parts)


_ENSEMBLE_TWIN_RULES = {
    "langevin": "x <- x - alpha grad U + (sigma/sqrt(lambda)) xi per GD step (finite-beta NE is Langevin "
    "dynamics; its ensemble mean, not noiseless GD, is what the NE mean should follow)",
    "matched": "negd.rules.MomentMatchedLangevin: per GD step x <- x - (1/lambda)(beta sigma^2/2) "
    "erfcx(z/sqrt 2) grad U + sigma sqrt(A(z)/lambda) xi, with z = beta sigma |grad U| of each "
    "realization and A(z) = 1/2 + erfcx(z/sqrt 2)/2: neuroevolution's exact one-step drift and spread "
    "for a locally linear loss at any z (plain Langevin is its z -> 0 limit)",
    "mean-field": "negd.twins.mean_field.MeanFieldTwin: per GD step x <- x + (1/lambda) E[dx | x], "
    "neuroevolution's expected step estimated from M antithetic proposals x +- sigma xi_j, with the "
    "acceptance probability min(1, exp(-beta dU)) in place of the coin (1[dU <= 0] at beta = inf); it only "
    "evaluates the loss (no gradient) and is NE's exact drift at any sigma, smooth loss or not, but not its "
    "spread (its realizations differ only by the estimation noise of the step, O(sigma^2/M) per step)",
}


def twin_text(run: RunData) -> str:
    if run.twin in ENSEMBLE_TWINS:
        r_l = run.arms[0].twin_realizations if run.arms else "?"
        name = TWIN_LABELS[run.twin].removesuffix(" mean")
        return (
            f"Twin: **{name}** of {r_l} realizations from the shared x(0), {_ENSEMBLE_TWIN_RULES[run.twin]}. "
            "Delta compares the two ensemble means; the floor and SE include both ensembles' sampling noise; "
            "losses are compared with the twin's mean loss +- SE."
        )
    return "Twin: **noiseless** gradient descent (one run from the shared x(0))."


def acceptance_text(final: dict) -> str:
    m, p = final["acceptance_measured"], final["acceptance_predicted"]
    if not math.isfinite(m):
        return "no acceptance measured yet"
    text = f"measured {fmt(m, 4)} (run average) vs predicted {fmt(p, 4)}"
    mf, sf = final["acceptance_measured_final"], final["acceptance_se_final"]
    pf = final["acceptance_predicted_final"]
    spf = final.get("acceptance_predicted_se_final", math.nan)
    if all(math.isfinite(v) for v in (mf, sf, pf)) and sf > 0:
        err = math.hypot(sf, spf if math.isfinite(spf) else 0.0)
        text += (f"; last interval {fmt(mf, 4)} +- {fmt(sf, 2)} vs {fmt(pf, 4)} +- {fmt(spf, 2)} "
                 f"({(mf - pf) / err:+.1f} SE, both errors)")
    return text


RESOLUTION_KEYS = ("resolution_tie_fraction", "resolution_decision_risk_max", "resolution_loss_error_max",
                   "resolution_quantization_max", "resolution_ok")


def resolution_over_arms(finals: dict, key: str):
    """The worst value of a resolution number over the arms (all arms must resolve their moves)."""
    values = [f[key] for f in finals.values() if key in f]
    if key == "resolution_ok":
        return all(values) if values else None
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan


def resolution_text(cfg: dict, finals: dict) -> str:
    ok = resolution_over_arms(finals, "resolution_ok")
    pct = lambda k: fmt(100 * resolution_over_arms(finals, k), 2) + "%"  # noqa: E731
    text = (f"Parameters in {cfg.get('dtype', 'float32')}, losses summed and compared in float64. Over all "
            f"arms: exact ties dU == 0 in {pct('resolution_tie_fraction')} of proposals; loss rounding can "
            f"flip at most {pct('resolution_decision_risk_max')} of accept decisions (rms dU rounding error "
            f"{fmt(resolution_over_arms(finals, 'resolution_loss_error_max'), 3)}); parameter rounding "
            f"distorts a move by at most {pct('resolution_quantization_max')} rms.")
    if ok is False:
        text += (" **Beyond the limits (0.5% of decisions, 1% of a move): rounding may change the dynamics "
                 "measurably; rerun with `dtype: float64` (`--dtype float64`) to rule it out.** (Flips of "
                 "decisions with dU ~ N(0, s^2) and a rounding error e reduce the mean drift by about "
                 "(e/s)^2/2: 0.14% at 1.7% of flipped decisions.)")
    elif ok:
        text += (" Both within limits (0.5% of decisions, 1% of a move): rounding does not change the "
                 "dynamics.")
    return text
