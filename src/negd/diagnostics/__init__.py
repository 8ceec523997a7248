"""Diagnostics that evaluate losses and rules: is a run inside the theory's regime
(:func:`regime_check`: z, c, the spread s), and does the arithmetic resolve its dU
(:mod:`negd.diagnostics.resolution`: ties, decision risk, move quantization)."""

from negd.diagnostics.regime import Regime, hutchinson_trace, regime_check
from negd.diagnostics.resolution import Resolution, assess, loss_rounding

__all__ = ["Regime", "regime_check", "hutchinson_trace", "Resolution", "assess", "loss_rounding"]
