"""Closed-form predictions of the neuroevolution <-> gradient descent correspondence.

(Placeholder: the twin mapping only; the full module is built in the theory work.)
"""

from __future__ import annotations

import math

from torch import Tensor

from negd.validation import check_beta, check_sigma

__all__ = ["twin_rates"]


def twin_rates(sigma: float | Tensor, beta: float) -> tuple[float | Tensor, float | Tensor]:
    """(alpha, s): learning rate and noise scale of the twin, per neuroevolution step.

    finite beta: alpha = beta sigma^2/2, s = sigma; beta = inf: alpha = sigma/sqrt(2 pi),
    s = sigma/sqrt(2).
    """
    sigma = check_sigma(sigma)
    beta = check_beta(beta)
    if math.isinf(beta):
        return sigma / math.sqrt(2 * math.pi), sigma / math.sqrt(2)
    return beta * sigma**2 / 2, sigma
