"""negd: neuroevolution for PyTorch models and ensembles, and its correspondence with
gradient descent (Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021)).

Update rules over ensembles are in :mod:`negd.rules` (also exported here); optimizers with the
``torch.optim`` protocol are in :mod:`negd.optim` (``negd.optim.Neuroevolution``) and are not
exported at the top level, so that the rule ``negd.Neuroevolution`` has no look-alike.
``negd.compare(loss_fn, x0, rule, twin="mean-field", steps=...)`` measures the correspondence of a rule
and its twin on any loss (:mod:`negd.analysis.correspondence`)."""

from negd import _compat, optim
from negd.diagnostics.regime import Regime, regime_check
from negd.engine import advance, advance_counted
from negd.losses.minibatch import MinibatchLoss
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, flat_params, load_flat_params, paper_init, torch_default_init
from negd.losses.module import ModuleLoss, loss_for
from negd.rules import (
    RULES,
    AdaptiveMC,
    GradientDescent,
    Langevin,
    MinibatchGradient,
    MinibatchNeuroevolution,
    MomentMatchedLangevin,
    Neuroevolution,
    NormalizedGradientDescent,
    Population,
)
from negd.state import State
from negd.tasks import get_task
from negd.twins import gradient_twin, matched_twin, population_twin
from negd.validation import NegdError
from negd.version import __version__

_compat.install()  # the module paths of 0.1, for one release (CHANGELOG.md)

__all__ = ["advance", "advance_counted", "MLPLoss", "ModuleLoss", "loss_for", "MLPSpec", "flat_params",
           "load_flat_params", "paper_init", "torch_default_init", "RULES", "GradientDescent",
           "Langevin", "MomentMatchedLangevin", "Neuroevolution", "NormalizedGradientDescent", "State",
           "get_task", "gradient_twin", "matched_twin", "population_twin", "Population",
           "AdaptiveMC", "MinibatchLoss", "MinibatchNeuroevolution", "MinibatchGradient",
           "NegdError", "optim", "Regime",
           "regime_check", "__version__", "compare"]


def __getattr__(name: str):
    """``negd.compare`` (negd.analysis.correspondence), imported when first asked for: the analysis floor
    brings matplotlib, which ``import negd`` alone does not need."""
    if name == "compare":
        from negd.analysis.correspondence import compare

        return compare
    raise AttributeError(f"module 'negd' has no attribute {name!r}")
