"""Experiments of Whitelam et al. 2021 (shallow, deep, finite beta) and user configurations, run
into a run directory that :mod:`negd.analysis` turns into figures and a report."""

from negd.experiments.config.presets import EXPERIMENTS, SCALES, preset
from negd.experiments.config.schema import Arm, ExperimentConfig, config_from_dict, load_config
from negd.experiments.run.runner import RunResult, default_run_dir, resume_experiment, run_experiment

__all__ = ["Arm", "ExperimentConfig", "config_from_dict", "load_config", "EXPERIMENTS", "SCALES", "preset",
           "RunResult", "default_run_dir", "resume_experiment", "run_experiment"]
