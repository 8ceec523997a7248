"""Verdicts of stored results (a folder with summary.json and report.md, schema 1 or 2), recomputed with
the four-verdict rule of negd.analysis.verdict, and the computed text of docs/results/paper-scale.md.

Stored results keep the final numbers, the largest loss gap along the run and the report, not the
snapshots; so the verdict here is that of the last snapshot, checked against the loss gap's peak
(the snapshot where |gap| is largest). Schema 1 summaries (negd.analysis.schema) hold unsigned loss
gaps: the sign comes from loss_ne_mean_final - loss_gd_final, the SE from loss_ne_se_final and
loss_twin_se_final, and delta_ratio_upper = delta_ratio + 2 SE gives the ratio's SE. The acceptance
of the last interval and the time c first exceeds 0.1 are read from report.md (the prediction's own
SE is not stored in schema 1: its misses count the measured SE only).

``python -m negd.analysis.stored docs/results`` prints the block between the markers of
paper-scale.md; tests/test_stored.py checks that the document holds exactly that block.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from negd.analysis.verdict import BAND_SE, LOSS_GAP_FAILS, LOSS_GAP_HOLDS, Verdict, classify_band, decide

__all__ = ["stored_numbers", "stored_verdict", "paper_scale_block", "BEGIN", "END", "PAPER_RUNS"]

BEGIN = "<!-- verdicts computed by `python -m negd.analysis.stored docs/results`: begin -->"
END = "<!-- verdicts computed: end -->"
PAPER_RUNS = (("deep", "paper-deep"), ("shallow", "paper-shallow"), ("finite beta", "paper-finite-beta"))


def _number(value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(value.replace("infinity", "inf"))
    return float(value)


def stored_numbers(folder: Path) -> dict:
    """The verdict's numbers of a stored result, signed and with SEs, whatever its schema."""
    s = json.loads((Path(folder) / "summary.json").read_text())
    report = (Path(folder) / "report.md").read_text() if (Path(folder) / "report.md").exists() else ""
    twin, ne = _number(s["loss_gd_final"]), _number(s["loss_ne_mean_final"])
    twin_se = _number(s.get("loss_twin_se_final") or 0.0)
    gap_se = math.hypot(_number(s["loss_ne_se_final"]), twin_se) / abs(twin)
    ratio = _number(s["delta_ratio"])
    ratio_se = _number(s["delta_ratio_se"]) if "delta_ratio_se" in s \
        else (_number(s["delta_ratio_upper"]) - ratio) / 2
    peak = _number(s.get("loss_gap_max_relative"))
    peak_in_se = abs(_number(s.get("loss_gap_max_in_se")))
    out = {"realizations": s.get("realizations"), "twin_realizations": s.get("twin_realizations"),
           "t_final": _number(s["t_final"]), "schema_version": s.get("schema_version", 1),
           "delta_ratio": ratio, "delta_ratio_se": ratio_se, "loss_gap": (ne - twin) / abs(twin),
           "loss_gap_se": gap_se,
           "loss_gap_peak": peak, "loss_gap_peak_se": abs(peak) / peak_in_se if peak_in_se > 0 else math.nan,
           "t_loss_gap_peak": _number(s.get("t_loss_gap_max")), "z_max": _number(s.get("z_max")),
           "c_max": _number(s.get("c_max")), "c_final": _number(s.get("c_final")),
           "z_final": _number(s.get("z_final")),
           "s_final": _number(s.get("s_final")), "stored_verdict": s.get("verdict")}
    m = re.search(r"last interval ([0-9.]+) \+- ([0-9.e-]+) vs ([0-9.]+)", report)
    if m:
        out["acceptance_last"] = tuple(float(x) for x in m.groups())
    m = re.search(r"c first exceeds [0-9.]+ at t = ([0-9.]+)", report)
    out["t_c_exceeds"] = float(m.group(1)) if m else math.nan
    return out


def stored_verdict(numbers: dict) -> Verdict:
    """The last snapshot's verdict, made worse where the loss gap's peak along the run weakens or fails
    on its own (a peak whose band clears the threshold; schema-1 results cannot check that it persists
    over two snapshots, see negd.analysis.verdict)."""
    final = decide(numbers["delta_ratio"], numbers["delta_ratio_se"], numbers["loss_gap"],
                   numbers["loss_gap_se"], realizations=numbers["realizations"], t=numbers["t_final"])
    peak = classify_band(abs(numbers["loss_gap_peak"]), numbers["loss_gap_peak_se"], LOSS_GAP_HOLDS,
                         LOSS_GAP_FAILS)
    order = ("holds", "unresolved", "weakens", "fails")
    if peak in ("weakens", "fails") and final.label in order and order.index(peak) > order.index(final.label):
        reason = (f"the loss gap's peak along the run, {100 * numbers['loss_gap_peak']:+.3g}% +- "
                  f"{100 * numbers['loss_gap_peak_se']:.2g}% at t = {numbers['t_loss_gap_peak']:.3g}, {peak}")
        return Verdict(peak, [reason, *final.reasons], None, final.realizations, None,
                       numbers["t_loss_gap_peak"])
    return final


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}"


def _peak_text(n: dict) -> str:
    peak, se, t = n["loss_gap_peak"], n["loss_gap_peak_se"], n["t_loss_gap_peak"]
    if not math.isfinite(peak):
        return ""
    state = classify_band(abs(peak), se, LOSS_GAP_HOLDS, LOSS_GAP_FAILS)
    text = (f" The largest loss gap along the run, {100 * peak:+.2f}% +- {100 * se:.2g}% at t = {_f(t)}, is "
            f"**{state}** on its own (2-SE band of |gap| {100 * (abs(peak) - BAND_SE * se):.2g}% .. "
            f"{100 * (abs(peak) + BAND_SE * se):.2g}%).")
    # Attribution from what the stored results hold: c's first crossing of 0.1 and z's maximum.
    tc = n["t_c_exceeds"]
    if math.isfinite(tc) and t < tc and n["c_max"] > 0.1:
        text += (f" At t = {_f(t)} c is still below 0.1 (c first exceeds 0.1 at t = {_f(tc)}; its maximum "
                 f"{_f(n['c_max'])} comes later), so curvature does not explain it")
        if n["z_max"] > 0.1:
            text += (f"; z = beta sigma |g|, whose maximum along the run is {_f(n['z_max'])} (above the 0.1 "
                     f"the Langevin limit needs; {_f(n['z_final'])} at t = {_f(n['t_final'])}), is the small "
                     "parameter that is not small: a finite-temperature effect. (Schema-1 results do not "
                     "store z at each snapshot; `negd report` on the run directory names the parameter at "
                     "the peak.)")
        else:
            text += "."
    return text


def _acceptance_text(n: dict) -> str:
    if "acceptance_last" not in n:
        return ""
    m, se, p = n["acceptance_last"]
    return (f" Acceptance over the last interval: {m:.4g} +- {se:.2g} measured against {p:.4g} predicted "
            f"({(m - p) / se:+.1f} SE of the measurement alone: the schema-1 prediction is one 4-probe draw "
            "without a stored SE, so the miss is an upper bound in SE).")


def paper_scale_block(results: Path) -> str:
    """The computed verdict section of docs/results/paper-scale.md."""
    lines = [BEGIN, "", "| experiment | R | verdict (four-verdict rule: last snapshot and loss-gap peak) | "
             "stored verdict (schema 1) |", "|---|---|---|---|"]
    paragraphs = []
    for name, folder in PAPER_RUNS:
        n = stored_numbers(Path(results) / folder)
        v = stored_verdict(n)
        r = f"{n['realizations']}" + (f" + twin {n['twin_realizations']}" if n["twin_realizations"] else "")
        label = v.sentence.removeprefix("correspondence ")
        lines.append(f"| {name} | {r} | **{label}** | {n['stored_verdict']} |")
        paragraphs.append(f"**{name}** (last snapshot t = {_f(n['t_final'])}): **{v.label}**. "
                          + "; ".join(v.reasons)
                          + "." + _peak_text(n) + _acceptance_text(n))
    lines += ["", *[p + "\n" for p in paragraphs], END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(paper_scale_block(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")))
