"""Diagnostics that evaluate losses and rules: is a run inside the theory's regime
(:func:`regime_check`: z, c, the spread s), and does the arithmetic resolve its dU
(:mod:`negd.diagnostics.resolution`: ties, decision risk, move quantization), and how often a
piecewise-constant loss ties (:mod:`negd.diagnostics.ties`: tie fraction, the sigma that resolves it)."""

from negd.diagnostics.regime import Regime, hutchinson_trace, regime_check
from negd.diagnostics.resolution import Resolution, assess, loss_rounding
from negd.diagnostics.ties import TieScan, tie_fraction, tie_scan

__all__ = ["Regime", "regime_check", "hutchinson_trace", "Resolution", "assess", "loss_rounding", "TieScan",
           "tie_fraction", "tie_scan"]
