"""Gradient dynamics: the twins that neuroevolution corresponds to, and their constructors.

Each twin is an update rule with the shared ``init``/``step`` signature:
:class:`GradientDescent`, :class:`Langevin`, :class:`NormalizedGradientDescent` (the paper's small-sigma
limits), :class:`MomentMatchedLangevin` (exact one-step moments at any z), :class:`CurvatureAwareTwin`,
:class:`AdaptiveMCTwin` and :class:`MinibatchGradient` (SGD on neuroevolution's batches).
:func:`gradient_twin`, :func:`matched_twin`, :func:`population_twin` and :func:`minibatch_twin` build
the twin of a neuroevolution rule from its (sigma, beta).
"""

from negd.twins.adaptive_twin import AdaptiveMCTwin
from negd.twins.constructors import gradient_twin, matched_twin, minibatch_twin, population_twin
from negd.twins.curvature import CurvatureAwareTwin
from negd.twins.gradient import GradientDescent, Langevin, NormalizedGradientDescent
from negd.twins.matched import MomentMatchedLangevin
from negd.twins.minibatch import MinibatchGradient

__all__ = ["gradient_twin", "matched_twin", "population_twin", "minibatch_twin", "GradientDescent",
           "Langevin", "NormalizedGradientDescent", "MomentMatchedLangevin", "CurvatureAwareTwin",
           "AdaptiveMCTwin", "MinibatchGradient"]
