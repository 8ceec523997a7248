"""Sweeps over a grid of settings (:mod:`.grid`) and their map report (:mod:`.report`)."""

from negd.experiments.sweep.grid import run_sweep

__all__ = ["run_sweep"]
