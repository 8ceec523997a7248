"""The verdict rule of docs/report.md written out independently of negd.analysis.verdict, for tests that
check an experiment's stored verdict against its own stored numbers."""

from __future__ import annotations

ORDER = {"holds": 0, "unresolved": 1, "weakens": 2, "fails": 3}


def band_state(value: float, se: float, holds: float = 0.05, fails: float = 0.25, *, floor_zero: bool) -> str:
    upper = (max(value, 0.0) if floor_zero else value) + 2 * se
    if value - 2 * se >= fails:
        return "fails"
    if upper < holds:
        return "holds"
    return "weakens" if value - 2 * se >= holds else "unresolved"


def snapshot_label(ratio: float, ratio_se: float, gap: float, gap_se: float) -> str:
    states = {band_state(ratio, ratio_se, floor_zero=True), band_state(abs(gap), gap_se, floor_zero=False)}
    if "fails" in states:
        return "fails"
    if states == {"holds"}:
        return "holds"
    return "weakens" if "weakens" in states else "unresolved"


def expected_verdict(rows: list[dict], gap_key: str, gap_se_key: str, twin_key: str) -> str:
    """Per snapshot after t = 0, then the run: the most severe of weakens/fails that persists over two
    consecutive snapshots or is at the last one, else the last snapshot's label."""
    labels = []
    for r in rows:
        if r["t"] <= 0:
            continue
        change, twin = r["param_change"], abs(r[twin_key])
        labels.append(snapshot_label(r["delta_corrected"] / change, r["delta_corrected_se"] / change,
                                     r[gap_key] / twin, r[gap_se_key] / twin))
    levels = [ORDER[x] for x in labels]
    lasting = [min(a, b) for a, b in zip(levels, levels[1:])] + [levels[-1]]
    top = max(lasting)
    return next(k for k, v in ORDER.items() if v == top) if top >= ORDER["weakens"] else labels[-1]
