"""Analysis of a run directory: Delta(t) with its floor and error bar, figures, summary and report.

``build_report(run_dir)`` writes ``summary.json``, ``report.md``, ``timeseries.csv`` and
``figures/*.png`` into the run directory (format: the run-directory contract, docs/report.md).
``compare(loss_fn, x0, rule, twin="mean-field", steps=...)`` measures the same correspondence on any
loss without a run directory (:mod:`negd.analysis.correspondence`; also ``negd.compare``).
"""

from negd.analysis.correspondence import Comparison, compare
from negd.analysis.delta import DeltaStats, delta_floor, delta_from_ensembles, delta_from_samples, delta_stats
from negd.analysis.report import build_report, json_safe
from negd.analysis.rundir import load_run
from negd.analysis.synthetic import make_run_dir

__all__ = [
    "build_report",
    "compare",
    "Comparison",
    "json_safe",
    "load_run",
    "make_run_dir",
    "DeltaStats",
    "delta_stats",
    "delta_from_samples",
    "delta_from_ensembles",
    "delta_floor",
]
