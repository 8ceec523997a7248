"""Fused compiled kernels (placeholder: none yet, every caller falls back to torch)."""

from __future__ import annotations


def fused_step_fn(rule, state, loss_fn):
    """A function ``(state, steps) -> (state, accepted_count [R] int64)`` running fused steps, or None."""
    return None
