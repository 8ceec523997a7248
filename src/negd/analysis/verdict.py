"""The four verdicts on the neuroevolution <-> gradient-descent correspondence, decided by one function.

Whitelam et al., Nat. Commun. 12, 6317 (2021), Figs. 1-2, compare the ensemble-mean neuroevolution
(NE) loss with gradient descent and the mean parameters with GD's. A run measures two numbers, each
with a standard error (SE):

* the floor-corrected Delta over the parameters' displacement, r = Delta_c / param_change
  (negd.analysis.delta; Delta_c is unbiased for the systematic gap, whose true value is >= 0);
* the relative loss gap g = (<U_NE> - U_twin) / U_twin, SE = sqrt(SE_NE^2 + SE_twin^2) / U_twin.

Each number gets a state from its 2-SE band. For r the band's upper end is max(r, 0) + 2 SE: a
negative Delta_c is a draw below the floor (reported as such), not evidence of a smaller gap, so it
cannot pull the upper bound under the threshold. For the loss gap the band is |g| +- 2 SE.

* holds       upper end < the "holds" threshold (RATIO_HOLDS, LOSS_GAP_HOLDS): the data exclude a gap
              that large;
* fails       lower end >= the "fails" threshold (RATIO_FAILS, LOSS_GAP_FAILS): a large gap, resolved;
* weakens     lower end >= the "holds" threshold: a gap the data resolve, below "fails";
* unresolved  the band contains the "holds" threshold: neither holds nor fails can be claimed.

The verdict of a snapshot: fails if either number fails; holds if both hold; weakens if either
weakens; unresolved otherwise. An unresolved number states the realizations that would resolve it:
SE ~ 1/sqrt(R), so the band's half-width 2 SE falls below |max(r, 0) - threshold| after
R' = R (2 SE / |max(r, 0) - threshold|)^2 realizations (the twin's R_L scaled alike), if the estimate
stays where it is. (For Delta_c the SE falls between 1/sqrt(R) and 1/R: R' is an upper estimate.)

The verdict of a run (:func:`trajectory_verdict`) covers every snapshot after t = 0: fails if the
snapshots fail at two consecutive snapshots or at the last one, else weakens likewise (weakens or
fails at two consecutive snapshots, or at the last one), else the verdict of the last snapshot (holds
or unresolved). Each snapshot uses its own 2-SE bounds, beyond which a snapshot lands by chance about
2% of the time; the persistence rule keeps one such draw among tens of snapshots from deciding the
run, while a real departure (the realizations carry it from one snapshot to the next) persists. The
worst snapshot and every change of the snapshot verdict are reported, isolated ones included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "RATIO_HOLDS",
    "RATIO_FAILS",
    "LOSS_GAP_HOLDS",
    "LOSS_GAP_FAILS",
    "BAND_SE",
    "LABELS",
    "Band",
    "Verdict",
    "TrajectoryVerdict",
    "classify_band",
    "decide",
    "trajectory_verdict",
    "rows_verdict",
    "verdict_record",
]

RATIO_HOLDS = 0.05  # Delta_c/param_change: the data exclude a gap above ~22% (sqrt 0.05) of the displacement
RATIO_FAILS = 0.25
LOSS_GAP_HOLDS = 0.05  # relative loss gap
LOSS_GAP_FAILS = 0.25
BAND_SE = 2.0  # half-width of the band in standard errors
LABELS = ("holds", "weakens", "fails", "unresolved")
_SEVERITY = {"holds": 0, "unresolved": 1, "weakens": 2, "fails": 3}


def classify_band(value: float, se: float, holds_below: float, fails_at: float, *,
                  nonnegative: bool = False) -> str:
    """The state of one number: holds / weakens / fails / unresolved (module docstring).

    ``nonnegative``: the true value is >= 0 (Delta_c), so the upper end starts at max(value, 0)."""
    if not (math.isfinite(value) and math.isfinite(se) and se >= 0):
        return "unresolved"
    centre = max(value, 0.0) if nonnegative else value
    if value - BAND_SE * se >= fails_at:
        return "fails"
    if centre + BAND_SE * se < holds_below:
        return "holds"
    if value - BAND_SE * se >= holds_below:
        return "weakens"
    return "unresolved"


@dataclass(frozen=True)
class Band:
    """One number of the verdict with its SE, thresholds and state."""

    name: str
    value: float  # signed estimate
    se: float
    holds_below: float
    fails_at: float
    nonnegative: bool  # the true value is >= 0 (Delta_c): the upper end starts at max(value, 0)
    magnitude: bool = False  # judge |value| (the loss gap: either sign is a gap)

    @property
    def judged(self) -> float:
        return abs(self.value) if self.magnitude else self.value

    @property
    def state(self) -> str:
        return classify_band(self.judged, self.se, self.holds_below, self.fails_at,
                             nonnegative=self.nonnegative)

    @property
    def upper(self) -> float:
        centre = max(self.judged, 0.0) if self.nonnegative else self.judged
        return centre + BAND_SE * self.se

    @property
    def lower(self) -> float:
        return self.judged - BAND_SE * self.se

    def scale_to_resolve(self) -> float:
        """Factor on the realizations after which the band no longer contains the holds threshold."""
        if self.state != "unresolved" or not math.isfinite(self.se) or not math.isfinite(self.value):
            return math.nan
        centre = max(self.judged, 0.0) if self.nonnegative else self.judged
        distance = abs(centre - self.holds_below)
        return math.inf if distance == 0 else (BAND_SE * self.se / distance) ** 2

    def text(self) -> str:
        v, se = self.value, self.se
        band = "2-SE band of |value|" if self.magnitude else "2-SE band"
        out = (f"{self.name} = {v:.3g} +- {se:.2g} ({band} {self.lower:.3g} .. {self.upper:.3g}; holds "
               f"below {self.holds_below:g}, fails at {self.fails_at:g}): {self.state}")
        if self.nonnegative and v < 0:
            out += (f"; negative ({v / se:.2f} SE): a draw below the floor, consistent with zero, so the "
                    "upper end starts at 0" if se > 0 else "; negative")
        return out


@dataclass(frozen=True)
class Verdict:
    label: str  # one of LABELS, or "undetermined" when a number is undefined (no snapshot after t = 0)
    reasons: list[str]
    caveat: str | None = None  # rounding beyond the limits of negd.diagnostics.resolution
    realizations: int | None = None
    realizations_needed: float | None = None  # unresolved: realizations that would resolve it
    t: float = math.nan

    @property
    def arithmetic_ok(self) -> bool:
        return self.caveat is None

    @property
    def sentence(self) -> str:
        text = "correspondence " + self.label
        if self.label == "unresolved" and self.realizations_needed is not None:
            text += f" ({_needed_text(self.realizations, self.realizations_needed)})"
        return f"{text} ({self.caveat})" if self.caveat else text


def _needed_text(realizations: int | None, needed: float) -> str:
    if not math.isfinite(needed):
        return "the estimate sits on the threshold: no number of realizations resolves it"
    have = f"{realizations} realizations" if realizations else "these realizations"
    return f"{have} do not resolve it; about {math.ceil(needed):,} would, if the estimate stays"


def bands(delta_ratio: float, delta_ratio_se: float, loss_gap: float,
          loss_gap_se: float) -> tuple[Band, Band]:
    return (Band("Delta_c/param_change", delta_ratio, delta_ratio_se, RATIO_HOLDS, RATIO_FAILS, True),
            Band("loss gap (NE - twin)/twin", loss_gap, loss_gap_se, LOSS_GAP_HOLDS, LOSS_GAP_FAILS, False,
                 magnitude=True))


def decide(delta_ratio: float, delta_ratio_se: float, loss_gap: float, loss_gap_se: float, *,
           realizations: int | None = None, t: float = math.nan, caveat: str | None = None,
           extra_reasons: list[str] | None = None) -> Verdict:
    """The verdict of one snapshot from r +- SE and the signed relative loss gap +- SE."""
    if not (math.isfinite(delta_ratio) and math.isfinite(delta_ratio_se)):
        return Verdict("undetermined", ["Delta_c/param_change undefined (no snapshot after t = 0, R < 2 or "
                                        "no parameter change)"], caveat, realizations, None, t)
    ratio, loss = bands(delta_ratio, delta_ratio_se, loss_gap, loss_gap_se)
    states = (ratio.state, loss.state)
    if "fails" in states:
        label = "fails"
    elif states == ("holds", "holds"):
        label = "holds"
    elif "weakens" in states:
        label = "weakens"
    else:
        label = "unresolved"
    needed = None
    if label == "unresolved":
        scale = max(b.scale_to_resolve() for b in (ratio, loss) if b.state == "unresolved")
        needed = scale * realizations if realizations else scale
    reasons = [ratio.text(), loss.text(), *(extra_reasons or [])]
    if needed is not None:
        reasons.append(_needed_text(realizations, needed) + " (SE ~ 1/sqrt(R))")
    return Verdict(label, reasons, caveat, realizations, needed, t)


@dataclass(frozen=True)
class TrajectoryVerdict:
    """The run's verdict over all snapshots after t = 0 (module docstring)."""

    verdict: Verdict  # the run's label, with the reasons of the deciding snapshot
    final: Verdict  # the last snapshot's verdict
    worst: Verdict  # the most severe snapshot (largest upper end of Delta_c/param_change among equals)
    labels: list[str]  # per snapshot (t = 0 included as "undetermined")
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (t, new label) where it changes

    @property
    def label(self) -> str:
        return self.verdict.label

    def changes_text(self) -> str:
        if not self.transitions:
            return "no snapshot after t = 0"
        parts = [f"{label} from t = {t:.3g}" for t, label in self.transitions]
        return "; ".join(parts)


def trajectory_verdict(t: np.ndarray, delta_ratio: np.ndarray, delta_ratio_se: np.ndarray,
                       loss_gap: np.ndarray, loss_gap_se: np.ndarray, *, realizations: int | None = None,
                       caveat: str | None = None) -> TrajectoryVerdict:
    """Decide every snapshot (:func:`decide`) and the run from them (module docstring)."""
    per = [decide(float(r), float(rs), float(g), float(gs), realizations=realizations, t=float(ti),
                  caveat=caveat)
           for ti, r, rs, g, gs in zip(t, delta_ratio, delta_ratio_se, loss_gap, loss_gap_se)]
    labels = [v.label if ti > 0 else "undetermined" for v, ti in zip(per, t)]
    decided = [i for i, (v, ti) in enumerate(zip(per, t)) if ti > 0 and v.label in _SEVERITY]
    if not decided:
        reasons = per[-1].reasons if per else ["no snapshot"]
        undetermined = Verdict("undetermined", reasons, caveat, realizations, None, math.nan)
        return TrajectoryVerdict(undetermined, undetermined, undetermined, labels, [])
    final = per[decided[-1]]

    def badness(i: int) -> tuple[int, float]:
        upper = max(float(delta_ratio[i]), 0.0) + BAND_SE * float(delta_ratio_se[i])
        return _SEVERITY[per[i].label], upper if math.isfinite(upper) else -math.inf

    worst = per[max(decided, key=badness)]
    # A departure counts where it persists: at two consecutive snapshots, or at the last one.
    severity = [_SEVERITY[per[i].label] for i in decided]
    lasting = [min(severity[j], severity[j + 1]) for j in range(len(severity) - 1)] + [severity[-1]]
    level = max(lasting)
    if level >= _SEVERITY["weakens"]:
        deciding = per[max((i for i, s in zip(decided, severity) if s >= level), key=badness)]
        label = next(k for k, v in _SEVERITY.items() if v == level)
        run = Verdict(label, deciding.reasons, caveat, realizations, None, deciding.t)
    else:
        run = final
    transitions: list[tuple[float, str]] = []
    for i in decided:
        if not transitions or per[i].label != transitions[-1][1]:
            transitions.append((per[i].t, per[i].label))
    return TrajectoryVerdict(run, final, worst, labels, transitions)


def rows_verdict(rows: list[dict], *, gap_key: str, gap_se_key: str, twin_loss_key: str,
                 realizations: int | None) -> tuple[TrajectoryVerdict, dict]:
    """The run verdict of an experiment that keeps its snapshots as rows of dicts (classification,
    variants), and the last snapshot's numbers: each row holds t, delta_corrected, delta_corrected_se,
    param_change, the absolute loss gap (NE - twin) under ``gap_key``, its SE under ``gap_se_key`` and
    the twin's loss under ``twin_loss_key``."""
    col = {k: np.array([float(r[k]) for r in rows]) for k in
           ("t", "delta_corrected", "delta_corrected_se", "param_change", gap_key, gap_se_key, twin_loss_key)}
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = col["param_change"] > 0
        ratio = np.where(positive, col["delta_corrected"] / col["param_change"], np.nan)
        ratio_se = np.where(positive, col["delta_corrected_se"] / col["param_change"], np.nan)
        scale = np.abs(col[twin_loss_key])
        gap = np.where(scale > 0, col[gap_key] / scale, np.nan)
        gap_se = np.where(scale > 0, col[gap_se_key] / scale, np.nan)
    run = trajectory_verdict(col["t"], ratio, ratio_se, gap, gap_se, realizations=realizations)
    g, gs = float(col[gap_key][-1]), float(col[gap_se_key][-1])
    final = {"t_final": float(col["t"][-1]), "delta_ratio": float(ratio[-1]),
             "delta_ratio_se": float(ratio_se[-1]),
             "delta_ratio_upper": max(float(ratio[-1]), 0.0) + BAND_SE * float(ratio_se[-1]),
             "loss_gap_relative": float(gap[-1]), "loss_gap_relative_se": float(gap_se[-1]),
             "loss_gap_in_se": g / gs if gs > 0 else (math.copysign(math.inf, g) if g else 0.0)}
    return run, final


def verdict_record(run: TrajectoryVerdict) -> dict:
    """The verdict fields an experiment's summary.json holds (classification, variants)."""
    return {"verdict": run.verdict.sentence, "verdict_label": run.label,
            "verdict_reasons": run.verdict.reasons,
            "verdict_final": run.final.label, "verdict_t_worst": run.worst.t,
            "verdict_changes": [[t, label] for t, label in run.transitions],
            "realizations_needed": run.verdict.realizations_needed if run.label == "unresolved" else None}
