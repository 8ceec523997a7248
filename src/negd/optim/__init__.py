"""Optimizers with the ``torch.optim`` protocol for a single model in an ordinary training loop.

Update rules over ensembles of realizations live in :mod:`negd.rules`; the optimizers here apply
one of those algorithms to the parameters of one ``nn.Module``:

- :class:`Neuroevolution` (``neuroevolution.py``): conditioned stochastic mutation of Whitelam,
  Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021); exactly ``negd.rules.Neuroevolution``
  with one realization.
"""

from negd.optim.neuroevolution import Neuroevolution

__all__ = ["Neuroevolution"]
