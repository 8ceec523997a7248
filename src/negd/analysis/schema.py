"""The schema of summary.json (negd.analysis.report): one meaning, sign and unit per key, and a version.

Version 2 (this one): every loss gap is signed, (NE mean - twin)/|twin| and (NE mean - twin)/SE; the
verdict is one of holds / weakens / fails / unresolved (negd.analysis.verdict) over the whole run.
Version 1 (summaries without ``schema_version``): ``loss_gap_relative`` and ``loss_gap_in_se`` were
unsigned |gap| while ``loss_gap_max_relative`` beside them was signed, and the verdict could read
"does not hold" or "weakens" for what version 2 calls "fails" or "unresolved".

Kinds: ``signed`` (a number of either sign), ``nonnegative`` (>= 0 by definition), ``label``, ``text``,
``count``, ``bool``, ``object`` (a nested record, described in docs/report.md). :func:`check_summary`
raises on an undocumented key or a negative ``nonnegative`` value; the report calls it before writing,
and the tests call it on every summary they build.
"""

from __future__ import annotations

import math

from negd.validation import NegdError

__all__ = ["SCHEMA_VERSION", "SUMMARY_KEYS", "check_summary", "markdown_table"]

SCHEMA_VERSION = 2

_RUN = {
    "schema_version": ("count", "version of this schema"),
    "experiment": ("text", "experiment name"),
    "scale": ("text", "quick / paper / custom"),
    "sigma": ("nonnegative", "mutation scale of the main arm"),
    "beta": ("signed", "inverse temperature (\"inf\" for beta = inf)"),
    "alpha": ("nonnegative", "GD learning rate"),
    "lambda": ("nonnegative", "NE steps per GD step ratio of the main arm"),
    "realizations": ("count", "NE realizations R"),
    "steps": ("count", "planned NE steps of the main arm"),
    "steps_done": ("count", "NE steps done"),
    "t_final": ("nonnegative", "time t = alpha x GD steps reached"),
    "t_final_planned": ("nonnegative", "planned final time"),
    "twin": ("label", "noiseless / mean-field / langevin / matched"),
    "twin_realizations": ("count", "realizations R_L of an ensemble twin (null for a noiseless twin)"),
    "loss_twin_final": ("signed", "twin loss at the end (an ensemble twin: its mean loss)"),
    "loss_twin_se_final": ("nonnegative", "SE of the twin's mean loss (0 for a noiseless twin)"),
    "loss_twin_of_mean_final": ("signed", "loss of the twin's mean parameters"),
    "loss_gd_final": ("signed", "same as loss_twin_final (kept for version 1 readers)"),
    "loss_ne_mean_final": ("signed", "NE ensemble-mean loss at the end"),
    "loss_ne_se_final": ("nonnegative", "its SE"),
    "loss_of_mean_final": ("signed", "loss of the NE mean parameters"),
    "loss_gap_relative": ("signed", "(NE mean - twin)/|twin| at the end"),
    "loss_gap_relative_se": ("nonnegative", "its SE, sqrt(SE_NE^2 + SE_twin^2)/|twin|"),
    "loss_gap_in_se": ("signed", "(NE mean - twin)/sqrt(SE_NE^2 + SE_twin^2) at the end"),
    "loss_gap_max_relative": ("signed", "loss_gap_relative at the snapshot where |gap| is largest"),
    "loss_gap_max_in_se": ("signed", "loss_gap_in_se at that snapshot"),
    "t_loss_gap_max": ("nonnegative", "time of that snapshot"),
    "delta_final": ("nonnegative", "raw Delta at the end"),
    "delta_floor_final": ("nonnegative", "its sampling floor"),
    "delta_corrected_final": ("signed", "Delta_c = Delta - floor (negative: a draw below the floor)"),
    "delta_corrected_se_final": ("nonnegative", "SE of Delta_c"),
    "delta_corrected_se_per_parameter_final": ("nonnegative",
                                               "SE of Delta_c treating parameters as independent"),
    "delta_se_method": ("label", "covariance / per-parameter"),
    "param_change_final": ("signed", "(1/N) sum (x_twin(t) - x(0))^2, minus its floor for an ensemble twin"),
    "delta_ratio": ("signed", "Delta_c / param_change at the end"),
    "delta_ratio_se": ("nonnegative", "its SE"),
    "delta_ratio_upper": ("nonnegative", "max(delta_ratio, 0) + 2 SE (the verdict's upper end)"),
    "acceptance_measured": ("nonnegative", "run-average measured acceptance"),
    "acceptance_predicted": ("nonnegative", "run-average predicted acceptance"),
    "acceptance_measured_final": ("nonnegative", "measured acceptance of the last interval"),
    "acceptance_se_final": ("nonnegative", "its SE"),
    "acceptance_predicted_final": ("nonnegative", "predicted acceptance of the last interval (pooled)"),
    "acceptance_predicted_se_final": ("nonnegative", "its SE (probes, pooled over three snapshots)"),
    "z_final": ("nonnegative", "z = beta sigma |g| at the end (inf at beta = inf)"),
    "c_final": ("signed", "c = sigma tr(H)/(2|g|) at the end"),
    "c_max": ("signed", "largest c along the run"),
    "z_max": ("nonnegative", "largest finite z along the run"),
    "s_final": ("signed", "spread parameter s = tr(H) Var/(2 U_twin) at the end"),
    "dtype": ("label", "parameter dtype"),
    "resolution_tie_fraction": ("nonnegative", "fraction of proposals with dU == 0 exactly (worst arm)"),
    "resolution_decision_risk_max": ("nonnegative", "largest fraction of decisions rounding can flip"),
    "resolution_loss_error_max": ("nonnegative", "largest rms rounding error of dU"),
    "resolution_quantization_max": ("nonnegative", "largest rms rounding of a move over sigma"),
    "resolution_ok": ("bool", "all arms within the rounding limits"),
    "wall_seconds": ("nonnegative", "wall time of the run"),
    "verdict": ("label", "holds / weakens / fails / unresolved / undetermined, over the whole run"),
    "verdict_sentence": ("text", "the verdict as a sentence (with the realizations needed if unresolved)"),
    "verdict_final": ("label", "the verdict of the last snapshot alone"),
    "verdict_worst": ("label", "the verdict of the worst snapshot"),
    "verdict_t_worst": ("nonnegative", "its time"),
    "verdict_changes": ("object", "[[t, label], ...]: the snapshot verdict from t on"),
    "realizations_needed": ("nonnegative", "unresolved: realizations that would resolve it (else null)"),
    "attribution": ("object", "{loss_gap, delta_ratio, acceptance}: where each peaks, value, in_se, z, c, s, "
                    "the largest small parameter there and its value"),
    "acceptance_final": ("object", "last interval: measured +- SE, pooled predicted +- SE, miss in SE"),
    "parameter_view": ("object", "Delta over the k parameters that move most, largest relative mean gap, "
                       "branch test"),
    "state": ("label", "complete / interrupted"),
    "partial": ("bool", "some arm missing or stopped early"),
    "seed": ("count", "seed of the run"),
    "arms": ("object", "one record per arm (keys as above, where they apply, plus index, label, snapshots, "
             "complete, problem)"),
    "sigma_trend": ("object", "Delta_c against sigma at a common time, log-log slope +- SE"),
    "figures": ("object", "figure name -> path"),
}
SUMMARY_KEYS: dict[str, tuple[str, str]] = dict(_RUN)
_ARM_EXTRA = {"index": "count", "label": "text", "snapshots": "count", "complete": "bool", "problem": "text"}


def _check_value(key: str, kind: str, value, where: str) -> None:
    if kind == "nonnegative" and isinstance(value, int | float) and not isinstance(value, bool) \
            and not math.isnan(value) and value < 0:
        raise NegdError(f"summary.json{where}: {key} = {value!r} must be >= 0 (schema {SCHEMA_VERSION})")


def check_summary(summary: dict) -> dict:
    """Raise NegdError on a key the schema does not document or a value of the wrong sign; return it."""
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise NegdError(f"summary.json: schema_version must be {SCHEMA_VERSION}, got "
                        f"{summary.get('schema_version')!r}")
    for key, value in summary.items():
        if key not in SUMMARY_KEYS:
            raise NegdError(f"summary.json: key {key!r} is not in the schema (negd.analysis.schema)")
        _check_value(key, SUMMARY_KEYS[key][0], value, "")
    for i, arm in enumerate(summary.get("arms") or []):
        for key, value in arm.items():
            kind = SUMMARY_KEYS[key][0] if key in SUMMARY_KEYS else _ARM_EXTRA.get(key)
            if kind is None:
                raise NegdError(f"summary.json arms[{i}]: key {key!r} is not in the schema")
            _check_value(key, kind, value, f" arms[{i}]")
    return summary


def markdown_table() -> str:
    """The schema as the table of docs/report.md."""
    rows = ["| key | kind | meaning |", "| --- | --- | --- |"]
    escaped = {k: (kind, text.replace("|", "\\|")) for k, (kind, text) in SUMMARY_KEYS.items()}
    rows += [f"| `{k}` | {kind} | {text} |" for k, (kind, text) in escaped.items()]
    return "\n".join(rows)
