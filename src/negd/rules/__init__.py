"""Update rules, all with the signature ``init(params, loss_fn, seed=...)`` / ``step(state, loss_fn)``.

``RULES`` maps a name to each rule class, so configurations and tests can go over all of them.
"""

from negd.rules.adaptive import AdaptiveMC
from negd.rules.adaptive_twin import AdaptiveMCTwin
from negd.rules.base import LossFn, UpdateRule, value_and_grad
from negd.rules.curvature import CurvatureAwareTwin
from negd.rules.gradient import GradientDescent, Langevin, NormalizedGradientDescent
from negd.rules.matched import MomentMatchedLangevin
from negd.rules.minibatch import MinibatchGradient, MinibatchNeuroevolution
from negd.rules.neuroevolution import Neuroevolution, metropolis_accept
from negd.rules.population import Population

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
