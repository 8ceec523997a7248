"""Parameter dtypes: float32 or float64, and the automatic choice from the mutation scale.

A mutation of sigma moves a parameter near 1 by sigma; float32 parameters resolve that only when
sigma is well above float32's unit roundoff (eps ~ 1.2e-7). ``auto_dtype`` picks float64 below
100 eps, where float32 would quantize moves by more than a quarter of a percent. Losses are float64
whatever the parameters' dtype (see :mod:`negd.losses.classification`).
"""

from __future__ import annotations

import torch

from negd.validation import NegdError

__all__ = ["DTYPES", "FLOAT64_BELOW", "parse_dtype", "auto_dtype"]

# auto dtype: float64 parameters when sigma is below 100 float32 units of a parameter near 1 (q > 0.25%
# there): parameters of trained networks reach O(1), where float32 quantizes smaller mutations.
FLOAT64_BELOW = 100 * torch.finfo(torch.float32).eps
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(name: str, value: object) -> torch.dtype:
    """``value`` ("float32"/"float64" or the torch dtype) as a torch dtype; NegdError otherwise."""
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise NegdError(f"{name}: must be float32 or float64, got {value!r}")


def auto_dtype(sigma: float) -> str:
    """The parameter dtype for mutation scale ``sigma``: float64 when float32 would quantize the moves."""
    return "float64" if sigma < FLOAT64_BELOW else "float32"
