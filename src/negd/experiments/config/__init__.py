"""Experiment configuration: the schema (:mod:`.schema`), config files (:mod:`.file`) and the
paper's presets (:mod:`.presets`)."""

from negd.experiments.config.schema import Arm, ExperimentConfig, config_from_dict, load_config

__all__ = ["Arm", "ExperimentConfig", "config_from_dict", "load_config"]
