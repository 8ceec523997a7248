"""``negd.compare``: the correspondence of an update rule and its twin on any loss, in one call.

Whitelam et al., Nat. Commun. 12, 6317 (2021) compare the ensemble mean of R neuroevolution (NE)
realizations, all started from one x(0), with a twin started from the same x(0). This function runs
both for ``steps`` NE steps (one twin step per NE step) and measures, at each snapshot:

* the ensemble's mean loss +- SE and the twin's loss (+- SE for an ensemble twin), both evaluated by
  the same ``loss_fn`` call, and their relative gap g = (<U_NE> - U_twin)/|U_twin| +- SE;
* Delta(t) = (1/N) sum_i (<x_i> - x_twin,i)^2, its floor, the floor-corrected Delta_c and its SE
  (:mod:`negd.analysis.delta`: the realizations' full covariance when R >= 3), and
  r = Delta_c/param_change, param_change = (1/N) sum_i (x_twin,i(t) - x_twin,i(0))^2 (an ensemble
  twin: of its mean, less its own floor);
* the verdict (:mod:`negd.analysis.verdict`): holds, weakens, fails or unresolved, decided from the
  2-SE bands of r and g at every snapshot.

The twin is a name or a rule. ``"mean-field"`` (default) is an ensemble of ``twin_realizations``
(default min(8, realizations)) runs of :class:`negd.twins.mean_field.MeanFieldTwin`: NE's expected step
E[dx | x] from ``twin_proposals`` antithetic proposals. It only evaluates the loss, so it is the twin of
any objective, a black-box callable ``params [R, N] -> losses [R]`` included (no gradient is asked for
anywhere when NE's rule needs none). Its runs differ by the estimation noise of the step (variance
~sigma^2/(2M) per step and parameter at beta = inf, as much as the mean of M NE realizations): one run would
bias Delta_c upward by that noise (measured: +1.6e-8 +- 0.6e-8 on the shallow net at sigma = 1e-4, M =
R = 64, half the floor), an ensemble measures it and the floor removes it. ``"matched"`` (an ensemble of
:class:`negd.rules.MomentMatchedLangevin`), ``"noiseless"`` (the drift of :func:`negd.gradient_twin`:
normalized GD at beta = inf, GD at finite beta) and ``"langevin"`` (an ensemble of the noisy
:func:`negd.gradient_twin`) need a gradient. A named twin needs a :class:`negd.rules.Neuroevolution`
rule with one scalar sigma. A rule given as the twin runs ``twin_realizations`` realizations (1: a
point twin, compared as a noiseless one; >= 2: an ensemble, both means noisy). Same seed, same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from negd.analysis.delta import DeltaStats, delta_from_ensembles, delta_from_samples
from negd.analysis.verdict import TrajectoryVerdict, rows_verdict
from negd.engine import advance
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.rules import Neuroevolution, UpdateRule
from negd.state import State
from negd.twins import MeanFieldTwin, MomentMatchedLangevin, gradient_twin
from negd.validation import NegdError, check_int

__all__ = ["Comparison", "compare", "TWIN_NAMES"]

TWIN_NAMES = ("mean-field", "matched", "noiseless", "langevin")
ENSEMBLE_NAMES = ("mean-field", "matched", "langevin")
MEAN_FIELD_REALIZATIONS = 8  # default R_L of the mean-field twin (module docstring)
MAX_SNAPSHOTS = 100_000


@dataclass(frozen=True)
class Comparison:
    """The measured correspondence (module docstring); arrays [S], one entry per snapshot."""

    twin: str
    t: np.ndarray  # NE steps of the snapshots, t[0] = 0
    ne_loss_mean: np.ndarray
    ne_loss_se: np.ndarray
    twin_loss: np.ndarray  # an ensemble twin: its mean loss
    twin_loss_se: np.ndarray  # 0 for a point twin
    delta: np.ndarray
    delta_floor: np.ndarray
    delta_corrected: np.ndarray
    delta_corrected_se: np.ndarray
    param_change: np.ndarray
    delta_ratio: np.ndarray  # Delta_c / param_change
    delta_ratio_se: np.ndarray
    loss_gap: np.ndarray  # (<U_NE> - U_twin)/|U_twin|
    loss_gap_se: np.ndarray
    verdict: TrajectoryVerdict
    realizations: int
    twin_realizations: int
    settings: dict = field(default_factory=dict)  # rule, twin, steps, seed, versions
    ne_state: State | None = field(default=None, repr=False)
    twin_state: State | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """holds, weakens, fails, unresolved (or undetermined: no snapshot after t = 0)."""
        return self.verdict.label

    def summary(self) -> str:
        """One paragraph: the final numbers and the verdict."""
        return (f"{self.twin} twin after {int(self.t[-1])} NE steps ({self.realizations} realizations): "
                f"NE loss {self.ne_loss_mean[-1]:.6g} +- {self.ne_loss_se[-1]:.2g}, twin "
                f"{self.twin_loss[-1]:.6g} +- {self.twin_loss_se[-1]:.2g}; Delta_c = "
                f"{self.delta_corrected[-1]:.3g} +- {self.delta_corrected_se[-1]:.2g}, Delta_c/param_change "
                f"= {self.delta_ratio[-1]:.3g} +- {self.delta_ratio_se[-1]:.2g}; "
                f"{self.verdict.verdict.sentence}.")

    def to_dict(self) -> dict:
        """Plain JSON values: every series, the verdict's label and reasons, the settings."""
        series = {k: [float(v) for v in getattr(self, k)] for k in (
            "t", "ne_loss_mean", "ne_loss_se", "twin_loss", "twin_loss_se", "delta", "delta_floor",
            "delta_corrected", "delta_corrected_se", "param_change", "delta_ratio", "delta_ratio_se",
            "loss_gap", "loss_gap_se")}
        return {"twin": self.twin, "realizations": self.realizations,
                "twin_realizations": self.twin_realizations, **series, "verdict": self.label,
                "verdict_reasons": list(self.verdict.verdict.reasons), "settings": dict(self.settings)}


def _snapshot_steps(steps: int, snapshots: int | Sequence[int]) -> list[int]:
    if isinstance(snapshots, int) and not isinstance(snapshots, bool):
        n = check_int("snapshots", snapshots, 2)
        if n > MAX_SNAPSHOTS:
            raise NegdError(f"snapshots: at most {MAX_SNAPSHOTS}, got {n}")
        return sorted({round(k * steps / (n - 1)) for k in range(n)})
    if not isinstance(snapshots, Sequence) or isinstance(snapshots, str) or not snapshots:
        raise NegdError(f"snapshots: must be a count >= 2 or a non-empty list of NE steps, got "
                        f"{snapshots!r:.80}")
    rows = []
    for s in snapshots:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= steps:
            raise NegdError(f"snapshots: NE steps must be integers in [0, steps = {steps}], got {s!r:.40}")
        rows.append(int(s))
    return sorted({0, *rows})


def _named_twin(name: str, rule: UpdateRule, proposals: int) -> UpdateRule:
    if not isinstance(rule, Neuroevolution):
        raise NegdError(f"twin: {name!r} is the twin of negd.Neuroevolution, not of "
                        f"{type(rule).__name__}; pass the twin as a rule instead")
    if isinstance(rule.sigma, Tensor):
        raise NegdError(f"twin: {name!r} needs a rule with one scalar sigma; pass the twin as a rule")
    if name == "mean-field":
        return MeanFieldTwin(rule.sigma, rule.beta, proposals=proposals)
    if name == "matched":
        return MomentMatchedLangevin(rule.sigma, rule.beta)
    return gradient_twin(rule, noise=name == "langevin")


def _resolve_twin(twin: str | UpdateRule, rule: UpdateRule, realizations: int,
                  twin_realizations: int | None, twin_proposals: int) -> tuple[str, UpdateRule, int]:
    """(name, rule, realizations) of the twin."""
    if isinstance(twin, str):
        if twin not in TWIN_NAMES:
            raise NegdError(f"twin: must be one of {', '.join(TWIN_NAMES)} or an update rule, got "
                        f"{twin!r:.80}")
        if twin in ENSEMBLE_NAMES:
            default = min(MEAN_FIELD_REALIZATIONS, realizations) if twin == "mean-field" else realizations
            count = check_int("twin_realizations", default if twin_realizations is None
                              else twin_realizations, 2)
        elif twin_realizations not in (None, 1):
            raise NegdError(f"twin_realizations: the {twin} twin is one run, got {twin_realizations!r:.40}")
        else:
            count = 1
        return twin, _named_twin(twin, rule, twin_proposals), count
    if not (callable(getattr(twin, "init", None)) and callable(getattr(twin, "step", None))):
        raise NegdError(f"twin: must be one of {', '.join(TWIN_NAMES)} or an update rule (init/step), got "
                        f"{type(twin).__name__}")
    count = check_int("twin_realizations", 1 if twin_realizations is None else twin_realizations)
    return type(twin).__name__, twin, count


def _delta(twin: State, ne: State) -> DeltaStats:
    x = ne.params.detach().to(torch.float64).cpu().numpy()
    if twin.n_realizations > 1:
        return delta_from_ensembles(twin.params.detach().to(torch.float64).cpu().numpy(), x)
    return delta_from_samples(twin.params[0].detach().to(torch.float64).cpu().numpy(), x)


def _loss_stats(loss_fn: LossFn, state: State) -> tuple[float, float]:
    loss = evaluate(loss_fn, state.params)
    r = loss.shape[0]
    se = float(loss.std(unbiased=True)) / math.sqrt(r) if r > 1 else 0.0
    return float(loss.mean()), se


def _row(loss_fn: LossFn, ne: State, twin: State, twin0: Tensor) -> dict:
    stats = _delta(twin, ne)
    twin_params = twin.params.detach().to(torch.float64)
    change = float(((twin_params.mean(dim=0) - twin0) ** 2).mean())
    if twin.n_realizations > 1:  # less the twin mean's own floor, as the run reports do
        change -= float(twin_params.var(dim=0, unbiased=True).mean()) / twin.n_realizations
    ne_mean, ne_se = _loss_stats(loss_fn, ne)
    twin_mean, twin_se = _loss_stats(loss_fn, twin)
    return {"t": float(ne.step), "ne_loss_mean": ne_mean, "ne_loss_se": ne_se, "twin_loss": twin_mean,
            "twin_loss_se": twin_se if twin.n_realizations > 1 else 0.0, "delta": float(stats.delta),
            "delta_floor": float(stats.floor), "delta_corrected": float(stats.corrected),
            "delta_corrected_se": float(stats.corrected_se), "param_change": change,
            "loss_gap_abs": ne_mean - twin_mean, "loss_gap_abs_se": math.hypot(ne_se, twin_se)}


def compare(loss_fn: LossFn, params: Tensor, rule: UpdateRule, twin: str | UpdateRule = "mean-field", *,
            steps: int, realizations: int = 64, seed: int = 0, snapshots: int | Sequence[int] = 11,
            twin_realizations: int | None = None, twin_proposals: int = 64) -> Comparison:
    """Run ``realizations`` realizations of ``rule`` and its ``twin`` from ``params`` ([N], shared x(0))
    for ``steps`` NE steps and measure their correspondence at ``snapshots`` (a count of evenly spaced
    NE steps, or a list of them); module docstring. ``loss_fn``: params [R, N] -> losses [R]."""
    if isinstance(params, Tensor) and params.dim() != 1:
        raise NegdError(f"params: must be one vector x(0) of shape [N] (every realization and the twin start "
                        f"there), got shape {list(params.shape)}")
    x0 = as_ensemble_params(params, 1)[0]
    steps = check_int("steps", steps)
    realizations = check_int("realizations", realizations, 2)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise NegdError(f"seed: must be an integer in [0, 2^63), got {seed!r:.40}")
    twin_proposals = check_int("twin_proposals", twin_proposals, 2)
    if twin_proposals % 2:
        raise NegdError(f"twin_proposals: must be even (antithetic pairs +-xi), got {twin_proposals}")
    if not (callable(getattr(rule, "init", None)) and callable(getattr(rule, "step", None))):
        raise NegdError(f"rule: must be an update rule (init/step), got {type(rule).__name__}")
    name, twin_rule, twin_count = _resolve_twin(twin, rule, realizations, twin_realizations, twin_proposals)
    rows_at = _snapshot_steps(steps, snapshots)

    ne = rule.init(x0, loss_fn, seed=seed, realizations=realizations)
    tw = twin_rule.init(x0, loss_fn, seed=seed, realizations=twin_count)
    twin0 = tw.params.detach().to(torch.float64).mean(dim=0)
    rows = []
    for target in rows_at:
        if target > ne.step:
            ne = advance(rule, ne, loss_fn, target - ne.step)
            tw = advance(twin_rule, tw, loss_fn, target - tw.step)
        rows.append(_row(loss_fn, ne, tw, twin0))
    verdict, _ = rows_verdict(rows, gap_key="loss_gap_abs", gap_se_key="loss_gap_abs_se",
                              twin_loss_key="twin_loss", realizations=realizations)
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = col["param_change"] > 0
        ratio = np.where(positive, col["delta_corrected"] / col["param_change"], np.nan)
        ratio_se = np.where(positive, col["delta_corrected_se"] / col["param_change"], np.nan)
        scale = np.abs(col["twin_loss"])
        gap = np.where(scale > 0, col["loss_gap_abs"] / scale, np.nan)
        gap_se = np.where(scale > 0, col["loss_gap_abs_se"] / scale, np.nan)
    from negd.version import __version__

    settings = {"rule": repr(rule), "twin": repr(twin_rule), "steps": steps, "realizations": realizations,
                "twin_realizations": twin_count, "seed": seed, "snapshots": rows_at,
                "versions": {"negd": __version__, "torch": torch.__version__, "numpy": np.__version__}}
    return Comparison(name, col["t"], col["ne_loss_mean"], col["ne_loss_se"], col["twin_loss"],
                      col["twin_loss_se"], col["delta"], col["delta_floor"], col["delta_corrected"],
                      col["delta_corrected_se"], col["param_change"], ratio, ratio_se, gap, gap_se, verdict,
                      realizations, twin_count, settings, ne, tw)
