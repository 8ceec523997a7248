"""Fused compiled kernels (placeholder: none yet, every caller falls back to torch)."""

from __future__ import annotations


def fused_step_fn(rule, state, loss_fn):
    """A function (state, steps) -> state running ``steps`` fused steps, or None."""
    return None
