"""The peers of ``negd bench``'s classifier workloads (digits-mlp, digits-cnn; see
:mod:`negd.bench.workloads`). negd takes ``negd.loss_for(model, ...)``: :class:`negd.MLPLoss` for
the MLP, :class:`negd.ModuleLoss` for the CNN (batched layers, the convolution of all
realizations as one im2col product, :mod:`negd.losses.sequential`). Peers (the columns of
:mod:`negd.bench.peers` that apply):

* ``negd``: :func:`negd.advance` of :class:`negd.Neuroevolution` on ``negd.loss_for(model, ...)``;
* ``generic``: the same on the generic path as it was before negd had a classifier path:
  ``ModuleLoss`` with a callable loss, i.e. ``vmap`` of ``functional_call`` per realization;
* ``loop``: per-realization loop of plain PyTorch forward passes (copy, mutate with
  ``torch.randn``, ``nn.CrossEntropyLoss``, restore on reject), as :class:`negd.bench.peers.LoopPeer`;
* ``compile``: negd's ``ModuleLoss(..., compile=True)`` (``torch.compile`` of the batched evaluation);
* ``grad``: negd's normalized-gradient twin on the same ensemble (autograd);
* ``evosax``, ``evosax-matmul`` (digits-mlp only; jax and evosax from the ``bench`` extra): evosax's
  Open_ES with population R, :class:`negd.bench.jax_peers.EvosaxOpenESPeer`, the output layer as
  ``sum(h * w2)`` or as ``h @ w2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import negd
from negd.bench.peers import LOOP_REALIZATIONS, LoopPeer, NegdPeer
from negd.bench.workloads import ClassifierWorkload, initial_classifier_params
from negd.engine import fused_step_fn

__all__ = ["CLASSIFIER_PEERS", "make_classifier_peer", "initial_classifier_params"]


CLASSIFIER_PEERS = ("negd", "generic", "loop", "compile", "grad", "evosax", "evosax-matmul")


class ClassifierNegdPeer(NegdPeer):
    """negd's engine on a classifier loss (``loss_for`` or a given loss function)."""

    def __init__(self, workload: ClassifierWorkload, realizations: int, device: torch.device, seed: int,
                 gradient: bool = False, loss_fn=None) -> None:
        x, y = workload.data(device)
        self.device = device
        self.loss_fn = loss_fn(x, y) if loss_fn is not None else negd.loss_for(
            workload.model().to(device), x, y, loss="cross_entropy")
        rule = negd.Neuroevolution(workload.sigma, workload.beta)
        self.rule = negd.gradient_twin(rule, noise=False) if gradient else rule
        params = initial_classifier_params(workload, realizations, seed).to(device)
        self.state = self.rule.init(params, self.loss_fn, seed=seed)
        self.realization_steps_per_step = realizations
        self.fused = fused_step_fn(self.rule, self.state, self.loss_fn) is not None


class ClassifierLoopPeer(LoopPeer):
    """:class:`LoopPeer` (copy / mutate / evaluate / restore per realization) with cross-entropy."""

    def __init__(self, workload: ClassifierWorkload, realizations: int, device: torch.device, seed: int
                 ) -> None:
        x, y = workload.data(device)
        start = initial_classifier_params(workload, min(realizations, LOOP_REALIZATIONS), seed)
        self._setup(x, y, workload.model, start, nn.CrossEntropyLoss(), workload.sigma, workload.beta,
                    device, seed)


def make_classifier_peer(name: str, workload: ClassifierWorkload, realizations: int, device: torch.device,
                         seed: int = 0):
    """Peer ``name`` of :data:`CLASSIFIER_PEERS`, or None when it does not apply to classifiers."""
    if name == "negd":
        return ClassifierNegdPeer(workload, realizations, device, seed)
    if name == "grad":
        return ClassifierNegdPeer(workload, realizations, device, seed, gradient=True)
    if name == "loop":
        return ClassifierLoopPeer(workload, realizations, device, seed)
    if name == "generic":
        return ClassifierNegdPeer(workload, realizations, device, seed, loss_fn=lambda x, y: negd.ModuleLoss(
            workload.model().to(device), x, y, loss=lambda pred, t: F.cross_entropy(pred, t)))
    if name in ("evosax", "evosax-matmul"):
        if workload.name != "digits-mlp" or realizations < 2 or realizations % 2:
            return None  # Open_ES needs an even population; the peer is written for the MLP
        from negd.bench.jax_peers import EvosaxOpenESPeer

        return EvosaxOpenESPeer(workload, realizations, device, seed,
                                form="matmul" if name == "evosax-matmul" else "sum")
    if name == "compile":
        return ClassifierNegdPeer(workload, realizations, device, seed, loss_fn=lambda x, y: negd.ModuleLoss(
            workload.model().to(device), x, y, loss="cross_entropy", compile=True))
    return None
