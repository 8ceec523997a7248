"""Neuroevolution update rules, all with the signature ``init(params, loss_fn, seed=...)`` /
``step(state, loss_fn)``: :class:`Neuroevolution` (the paper's conditioned stochastic mutation),
:class:`Population`, :class:`AdaptiveMC` and :class:`MinibatchNeuroevolution`.

``RULES`` maps a name to every update rule, the gradient twins of :mod:`negd.twins` (which sit on
the floor below) included, so configurations and tests can go over all of them with the same checks.
The twins' classes are re-exported here for that registry and for the import paths of 0.1.
"""

from negd.losses.base import LossFn, value_and_grad
from negd.rules.adaptive import AdaptiveMC
from negd.rules.base import UpdateRule
from negd.rules.minibatch import MinibatchNeuroevolution
from negd.rules.neuroevolution import Neuroevolution, metropolis_accept
from negd.rules.population import Population
from negd.twins.adaptive_twin import AdaptiveMCTwin
from negd.twins.curvature import CurvatureAwareTwin
from negd.twins.gradient import GradientDescent, Langevin, NormalizedGradientDescent
from negd.twins.matched import MomentMatchedLangevin
from negd.twins.minibatch import MinibatchGradient

RULES: dict[str, type] = {
    "neuroevolution": Neuroevolution,
    "gradient_descent": GradientDescent,
    "langevin": Langevin,
    "normalized": NormalizedGradientDescent,
    "matched_langevin": MomentMatchedLangevin,
    "population": Population,
    "adaptive_mc": AdaptiveMC,
    "minibatch_neuroevolution": MinibatchNeuroevolution,
    "minibatch_gradient": MinibatchGradient,
    "curvature_twin": CurvatureAwareTwin,
    "adaptive_mc_twin": AdaptiveMCTwin,
}

__all__ = ["RULES", "LossFn", "UpdateRule", "value_and_grad", "Neuroevolution",
           "metropolis_accept", "GradientDescent", "Langevin", "NormalizedGradientDescent",
           "MomentMatchedLangevin", "Population", "AdaptiveMC",
           "MinibatchNeuroevolution", "MinibatchGradient", "CurvatureAwareTwin",
           "AdaptiveMCTwin"]
