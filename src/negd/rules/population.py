"""Population selection: the (1,K) ("comma") and (1+K) ("elitist") evolution strategies.

Each step draws K mutants x + sigma xi_k of every realization, evaluates their K losses in one batched
call of ``loss_fn`` on [R*K, N] parameters, and picks the best child (lowest finite loss; ties go to
the lowest k):

* ``"comma"``: move to the best child whatever its loss (only a non-finite best child is refused);
* ``"elitist"``: the Metropolis test of :func:`negd.rules.metropolis_accept` on the best child
  (beta = inf: move iff it is not worse than the parent).

K = 1 elitist is exactly :class:`negd.rules.Neuroevolution` (same numbers, same seed). Theory (drift
-sigma E[M_K] u or -sigma E[max(0, M_K)] u, M_K the largest of K standard normals) and the gradient
twin: :mod:`negd.theory.population`.

Random numbers (:mod:`negd.rng`). With P = 4 ceil(N/4) (whole Philox blocks), child k of a realization
uses normals k P ... k P + N - 1 of that realization's mutation row at this step, i.e. Philox blocks
k P/4 ... (k + 1) P/4 - 1 of the counter layout of :mod:`negd.rng`; child 0 therefore uses exactly
the normals of :class:`Neuroevolution`, and the Metropolis uniform is the same one (stream
``STREAM_ACCEPT``, block 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.rules.neuroevolution import metropolis_accept
from negd.state import State, init_state
from negd.theory.population import check_selection
from negd.validation import NegdError, check_beta, check_int, check_sigma

__all__ = ["Population", "child_mutations"]


def child_mutations(state: State, sigma: float | Tensor, k: int) -> Tensor:
    """sigma * xi of every child: [R, K, N], a pure function of (seed, realization, step, k).

    Same arithmetic as :meth:`Neuroevolution.mutation` (float32 product, then the params' dtype).
    """
    n = state.n_params
    padded = 4 * ((n + 3) // 4)
    xi = rng.normal(state.seed, state.realization, state.step, k * padded)
    xi = xi.view(-1, k, padded)[:, :, :n]
    s = torch.as_tensor(sigma, dtype=torch.float32, device=xi.device)
    return (xi * s).to(state.params.dtype)


@dataclass(frozen=True)
class Population:
    """(1,K) or (1+K) selection among ``k`` mutants of scale ``sigma`` (module docstring)."""

    sigma: float | Tensor
    k: int = 2
    selection: str = "elitist"
    beta: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        object.__setattr__(self, "k", check_int("k", self.k))
        object.__setattr__(self, "selection", check_selection(self.selection))
        object.__setattr__(self, "beta", check_beta(self.beta))
        if self.selection == "comma" and not math.isinf(self.beta):
            raise NegdError(f"beta: comma selection always moves and has no temperature; use "
                            f"selection='elitist' for beta = {self.beta}, or beta = inf")

    @property
    def evaluations_per_step(self) -> int:
        return self.k

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        check_sigma(self.sigma, params.shape[1])
        blocks = (params.shape[1] + 3) // 4
        if self.k * blocks >= 2**32:  # the Philox block index (counter word 0) is 32 bits
            raise NegdError(f"k: k * ceil(N/4) must be below 2^32, got k = {self.k} with N = "
                            f"{params.shape[1]}")
        return init_state(params, evaluate(loss_fn, params), seed=seed, realization=realization)

    def step(self, state: State, loss_fn: LossFn) -> State:
        r, n = state.params.shape
        children = state.params[:, None, :] + child_mutations(state, self.sigma, self.k)  # [R, K, N]
        losses = evaluate(loss_fn, children.reshape(r * self.k, n)).view(r, self.k)
        # Non-finite children rank last; argmin returns the first of equal losses.
        ranked = torch.where(torch.isfinite(losses), losses.to(torch.float64),
                             torch.full_like(losses, math.inf, dtype=torch.float64))
        best = ranked.argmin(dim=1)
        rows = torch.arange(r, device=best.device)
        proposal, new_loss = children[rows, best], losses[rows, best]
        if self.selection == "comma":
            accept = torch.isfinite(new_loss)
        else:
            u = None if math.isinf(self.beta) else rng.uniform(state.seed, state.realization, state.step)
            accept = metropolis_accept(new_loss, state.loss, self.beta, u)
        return state.replace(
            params=torch.where(accept[:, None], proposal, state.params),
            loss=torch.where(accept, new_loss.to(state.loss.dtype), state.loss),
            step=state.step + 1, accepted=accept)
