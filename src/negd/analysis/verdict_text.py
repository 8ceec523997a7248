"""The report's verdict section and its diagnosis (negd.analysis.verdict, .diagnosis, .branches) as text
and as summary.json fields.

Every sentence here is computed from the run's numbers: the verdict over the trajectory, the worst
snapshot and the times the verdict changes, the realizations an unresolved verdict needs, the
acceptance misses counting both errors, the small parameter (z, c, s) that is largest where a gap or
a miss peaks, the Delta of the parameters that move most and the two-branch test.
"""

from __future__ import annotations

import math

from negd.analysis.branches import BRANCH_P
from negd.analysis.diagnosis import SMALL, acceptance_misses, attributions
from negd.analysis.verdict import (
    BAND_SE,
    LOSS_GAP_FAILS,
    LOSS_GAP_HOLDS,
    RATIO_FAILS,
    RATIO_HOLDS,
    TrajectoryVerdict,
)

__all__ = ["THRESHOLDS_TEXT", "verdict_line", "verdict_fields", "diagnosis_fields", "diagnosis_lines"]

THRESHOLDS_TEXT = (
    f"Four verdicts (negd.analysis.verdict), from the {BAND_SE:g}-SE bands of r = Delta_c/param_change "
    f"and of the relative loss gap g = (NE mean - twin)/twin: *holds* if both upper ends are below the "
    f"holds thresholds (r: max(r, 0) + 2 SE < {RATIO_HOLDS}, the data exclude a systematic gap larger "
    f"than ~{math.sqrt(RATIO_HOLDS):.0%} of the typical parameter displacement; g: |g| + 2 SE < "
    f"{LOSS_GAP_HOLDS:.0%}); *fails* if either lower end reaches its fails threshold (r - 2 SE >= "
    f"{RATIO_FAILS}, |g| - 2 SE >= {LOSS_GAP_FAILS:.0%}); *weakens* if either lower end is above its holds "
    "threshold (a gap the data resolve); *unresolved* if a band contains the holds threshold: neither "
    "holds nor fails can be claimed, and the verdict says how many realizations would resolve it "
    "(SE ~ 1/sqrt(R)). A negative Delta_c is a draw below the floor: it is reported, and the upper end "
    "starts at 0. The run's verdict covers every snapshot: *fails* or *weakens* where that persists over "
    "two consecutive snapshots (or at the last one), else the last snapshot's. Delta_c = Delta - floor "
    "is unbiased for the systematic gap; its SE "
    "includes the floor's own error and, where the run stored it, the correlations between parameters "
    "(docs/report.md)."
)


def _f(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def verdict_line(arm, run: TrajectoryVerdict, t_final: float) -> str:
    """One bullet: the run's verdict, the deciding snapshot, the last snapshot and the changes."""
    v, final, worst = run.verdict, run.final, run.worst
    head = f"- **arm {arm.index} '{arm.label}' (sigma = {_f(arm.sigma, 4)}): {v.sentence}** over t in (0, " \
           f"{_f(t_final)}]"
    if v.label == "undetermined":
        return head + ": " + "; ".join(v.reasons) + "."
    parts = [head + f". Worst snapshot t = {_f(worst.t)} ({worst.label}): " + "; ".join(worst.reasons)]
    if final.t != worst.t:
        parts.append(f"Last snapshot t = {_f(final.t)} ({final.sentence.removeprefix('correspondence ')}): "
                     + "; ".join(final.reasons))
    parts.append("Verdict along the run: " + run.changes_text())
    return ". ".join(parts) + "."


def verdict_fields(run: TrajectoryVerdict) -> dict:
    """summary.json fields of a run's verdict (schema: negd.analysis.schema)."""
    return {
        "verdict": run.label,
        "verdict_sentence": run.verdict.sentence,
        "verdict_final": run.final.label,
        "verdict_t_worst": run.worst.t,
        "verdict_worst": run.worst.label,
        "verdict_changes": [[t, label] for t, label in run.transitions],
        "realizations_needed": run.verdict.realizations_needed if run.label == "unresolved" else None,
    }


def diagnosis_fields(series: dict, view: dict | None) -> dict:
    """Attribution, acceptance misses with both errors, the per-parameter view (summary.json)."""
    misses = acceptance_misses(series)
    last = len(series["t"]) - 1
    out = {
        "attribution": attributions(series),
        "acceptance_final": {"measured": float(misses["measured"][last]),
                             "measured_se": float(misses["measured_se"][last]),
                             "predicted": float(misses["predicted"][last]),
                             "predicted_se": float(misses["predicted_se"][last]),
                             "miss_in_se": float(misses["miss_in_se"][last])},
    }
    if view is not None:
        out["parameter_view"] = view
    return out


def _attribution_text(key: str, a: dict) -> str:
    what = {"loss_gap": f"the loss gap peaks at {100 * a['value']:+.2f}% ({_f(a['in_se'], 2)} SE)",
            "delta_ratio": f"Delta_c/param_change peaks at {_f(a['value'])} ({_f(a['in_se'], 2)} SE)",
            "acceptance": f"the acceptance misses most, by {_f(a['value'])} ({_f(a['in_se'], 2)} SE, both "
                          "errors counted)"}[key]
    values = ", ".join(f"{k} = {_f(a[k])}" for k in ("z", "c", "s") if math.isfinite(a[k]))
    if a["parameter"] == "none":
        return f"At t = {_f(a['t'])} {what}; no small parameter measured there."
    limit = SMALL[a["parameter"]]
    threshold = {"loss_gap": LOSS_GAP_HOLDS, "delta_ratio": RATIO_HOLDS}.get(key)
    if a["exceeds_limit"]:
        verdict = f"above its limit {limit:g}: the small-sigma theory's own explanation"
    elif threshold is not None and abs(a["value"]) < threshold:
        verdict = f"below its limit {limit:g}, and the peak is within the {threshold:g} of 'holds'"
    else:
        verdict = (f"below its limit {limit:g}, as are the others: the small-sigma theory does not explain "
                   "this")
    return (f"At t = {_f(a['t'])} {what}; the largest small parameter there (relative to its limit) is "
            f"**{a['parameter']} = {_f(a['parameter_value'])}** ({values}), {verdict}.")


def diagnosis_lines(fields: dict, realizations: int) -> list[str]:
    """The report's "Where it departs" section from :func:`diagnosis_fields`."""
    lines = ["## Where it departs, and why (computed)", ""]
    for key in ("loss_gap", "delta_ratio", "acceptance"):
        if key in fields["attribution"]:
            lines.append("- " + _attribution_text(key, fields["attribution"][key]))
    acc = fields["acceptance_final"]
    if math.isfinite(acc["measured"]):
        lines.append(f"- Last interval's acceptance: measured {_f(acc['measured'], 4)} +- "
                     f"{_f(acc['measured_se'], 2)} against predicted {_f(acc['predicted'], 4)} +- "
                     f"{_f(acc['predicted_se'], 2)} (the prediction pooled over three snapshots, its SE from "
                     f"the Hutchinson probes or their scatter): {_f(acc['miss_in_se'], 2)} SE.")
    view = fields.get("parameter_view")
    if view is not None:
        lines.append(
            f"- The {view['k']} parameters that move most ({', '.join(map(str, view['parameters']))}): "
            f"Delta_c/param_change = {_f(view['delta_ratio'])} +- {_f(view['delta_ratio_se'], 2)} "
            f"(per-parameter SE), beside {_f(fields.get('delta_ratio_all', math.nan))} over all parameters; "
            f"the largest relative mean gap |<x_i> - x_twin,i|/|x_twin,i(t) - x_i(0)| is "
            f"{_f(view['largest_relative_gap'])} +- {_f(view['largest_relative_gap_se'], 2)} (parameter "
            f"{view['largest_relative_gap_parameter']}).")
        b = view["branches"]
        if b["trajectories"] >= 4 and math.isfinite(b["statistic"]):
            flag = ("**the realizations split into two branches**" if b["bimodal"] else
                    "no evidence of two branches")
            lines.append(
                f"- Branch test on the {b['trajectories']} stored trajectories (top parameters, final "
                f"snapshot): between/total sum of squares of the best two-cluster split "
                f"{_f(b['statistic'])}, "
                f"p = {_f(b['p_value'], 2)} against one Gaussian cloud (flag below {BRANCH_P}): {flag}"
                + (f" (smaller branch: {b['smaller_branch']} of {b['trajectories']}); the all-parameter "
                   "Delta averages over both" if b["bimodal"] else "") + ".")
        else:
            lines.append(f"- Branch test: not possible with {b['trajectories']} stored trajectories "
                         "(needs 4).")
    lines.append("")
    return lines
