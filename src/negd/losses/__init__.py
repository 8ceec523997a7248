"""Losses: ``loss_fn(params [R, N]) -> losses [R]``, float64, minimized, for R realizations at once.

* :mod:`negd.losses.base`: the interface (``LossFn``) and its checked evaluation and derivatives;
* :mod:`negd.losses.models`: ``MLPSpec`` and the flat parameter layout, initializations;
* :mod:`negd.losses.mlp`: ``MLPLoss``, the fast path (batched products, the C kernel);
* :mod:`negd.losses.module`: ``ModuleLoss`` for any ``nn.Module``, ``loss_for``;
* :mod:`negd.losses.sequential`, :mod:`negd.losses.backprop`: layer-by-layer forward and backward;
* :mod:`negd.losses.classification`: cross-entropy and accuracy; :mod:`negd.losses.minibatch`: batches.

The names of the former module ``negd.losses`` (cross-entropy, labels) are re-exported here.
"""

from negd.losses.base import LossFn, as_ensemble_params, evaluate, value_and_grad
from negd.losses.classification import (
    LOSSES,
    accuracy,
    check_classifier_targets,
    check_labels,
    cross_entropy,
    cross_entropy_unchecked,
)
from negd.losses.minibatch import MinibatchLoss
from negd.losses.mlp import MLPLoss, mse
from negd.losses.models import MLPSpec
from negd.losses.module import ModuleLoss, loss_for

__all__ = ["LossFn", "as_ensemble_params", "evaluate", "value_and_grad", "LOSSES", "accuracy",
           "check_classifier_targets", "check_labels", "cross_entropy", "cross_entropy_unchecked",
           "MinibatchLoss", "MLPLoss", "mse", "MLPSpec", "ModuleLoss", "loss_for"]
