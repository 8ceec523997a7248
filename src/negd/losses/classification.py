"""Classification losses of R realizations at once: softmax cross-entropy and accuracy.

For logits z [R, P, C] (realization r, example p, class c) and labels y [P]::

    l_rp = log sum_c exp(z_rpc - m_rp) - (z_rp,y_p - m_rp),     m_rp = max_c z_rpc   (1)
    U_r  = (1/P) sum_p l_rp                                                             (2)

(1), the per-example loss, is minus torch's ``log_softmax`` at the label, computed in the dtype
of the logits (float32 forward passes stay float32); (2), the mean over examples, is
accumulated in float64, so U_r does not lose digits when P is large and differences of nearby
losses (neuroevolution's dU) stay meaningful. This is the definition that a compiled kernel
reproduces. Accuracy is the fraction of examples whose largest logit is the label's (first
index on ties, as ``argmax``), also float64.

Bad labels or logits get a one-line :class:`negd.validation.NegdError` naming the argument.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negd.validation import NegdError

__all__ = ["cross_entropy", "cross_entropy_unchecked", "accuracy", "check_labels",
           "check_classifier_targets", "LOSSES"]

LOSSES = ("mse", "cross_entropy")


def check_labels(labels: Tensor, n_classes: int, n_examples: int | None = None,
                 name: str = "targets") -> Tensor:
    """Labels [P] of an integer dtype with values in 0 .. n_classes - 1 (returned as int64)."""
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        got = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise NegdError(f"{name}: class labels must be a 1-D integer tensor [P], got {got}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise NegdError(f"{name}: class labels must have an integer dtype, got {labels.dtype}")
    if n_examples is not None and labels.shape[0] != n_examples:
        raise NegdError(f"{name}: must have one label per input, {n_examples}, got {labels.shape[0]}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise NegdError(f"{name}: labels must be in 0..{n_classes - 1} for {n_classes} classes, got values "
                        f"in {int(labels.min())}..{int(labels.max())}")
    return labels.to(torch.int64)


def check_classifier_targets(labels: Tensor, n_outputs: int, n_examples: int) -> Tensor:
    """Labels [P] for a model with ``n_outputs`` logits: a label beyond the outputs is the model's
    fault when the labels themselves are valid class indices, so the error then names ``model``."""
    check_labels(labels, 2**62, n_examples)  # shape, dtype, no negative labels
    top = int(labels.max()) if labels.numel() else 0
    if top >= n_outputs:
        raise NegdError(f"model: has {n_outputs} outputs but targets has labels up to {top} ({top + 1} "
                        f"classes); the last layer needs one output per class")
    return labels.to(torch.int64)


def _check_logits(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() < 2 or logits.shape[-2] != labels.shape[0]:
        raise NegdError(f"logits: must have shape [..., P, C] with P = {labels.shape[0]}, got "
                        f"{list(logits.shape)}")


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy [R] float64 of logits [R, P, C] against labels [P] (eq. 1-2)."""
    _check_logits(logits, labels)
    check_labels(labels, logits.shape[-1], logits.shape[-2], name="labels")
    return cross_entropy_unchecked(logits, labels.to(torch.int64))


def cross_entropy_unchecked(logits: Tensor, labels: Tensor, class_dim: int = -1) -> Tensor:
    """Eq. (1)-(2) without checks (hot path; labels int64 [P] on the logits' device).

    ``class_dim`` -1: logits [..., P, C]; -2: logits [..., C, P] (the feature-major layout).
    """
    log_p = torch.log_softmax(logits, dim=class_dim)  # (1), in the forward dtype
    if class_dim == -1:
        picked = log_p.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    else:
        shape = (*logits.shape[:-2], 1, logits.shape[-1])
        picked = log_p.gather(-2, labels.expand(shape)).squeeze(-2)
    return -picked.sum(dim=-1, dtype=torch.float64) / picked.shape[-1]  # (2), in float64


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction [R] float64 of examples whose largest logit is at the label, logits [R, P, C]."""
    _check_logits(logits, labels)
    check_labels(labels, logits.shape[-1], logits.shape[-2], name="labels")
    hits = logits.argmax(dim=-1) == labels.to(logits.device)
    return hits.sum(dim=-1, dtype=torch.float64) / logits.shape[-2]
