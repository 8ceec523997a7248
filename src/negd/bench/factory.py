"""``make_peer`` for every workload of ``negd bench``: the regression peers of
:mod:`negd.bench.peers` and the classifier peers of :mod:`negd.bench.classifiers` (kept apart so
that neither module imports the other's dispatch: the import graph has no circles)."""

from __future__ import annotations

import torch

from negd.bench import peers
from negd.bench.classifiers import make_classifier_peer
from negd.bench.workloads import ClassifierWorkload, Workload
from negd.validation import NegdError

__all__ = ["make_peer"]


def make_peer(name: str, workload: Workload | ClassifierWorkload, realizations: int,
              device: torch.device | str = "cpu", seed: int = 0) -> peers.Peer | None:
    """Peer ``name`` (a key of :data:`negd.bench.peers.PEERS`) for ``workload`` at R = ``realizations``;
    None when it does not apply to the workload (e.g. JAX on a classifier, "generic" on a regression)."""
    if name not in peers.PEERS:
        raise NegdError(f"peers: each must be one of {sorted(peers.PEERS)}, got {name!r}")
    if isinstance(workload, ClassifierWorkload):
        return make_classifier_peer(name, workload, realizations, torch.device(device), seed)
    return peers.make_peer(name, workload, realizations, device, seed)
