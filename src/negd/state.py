"""The explicit state that every update rule reads and returns.

An ensemble of R independent realizations of one model with N parameters is
``params [R, N]`` plus their current losses ``loss [R]``, a step counter and the random
generator state. Random numbers are counter based (:mod:`negd.rng`), so the generator state is
``seed`` plus the global index of each realization: a chunk of an ensemble is a state of its
own, and a saved state resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from negd.validation import NegdError

__all__ = ["State", "init_state"]


@dataclass(frozen=True)
class State:
    """Ensemble state; update rules return a new one and never modify their input.

    Attributes:
        params: [R, N] flat parameters, one row per realization.
        loss: [R] float64 loss of each row of ``params`` (float64 whatever the parameter dtype:
            the Metropolis test compares differences of losses that float32 cannot resolve).
        step: number of steps taken so far.
        seed: key of the counter-based generator.
        realization: [R] int64 global realization index of each row (the stream id).
        accepted: [R] bool, whether the last step moved each realization (all True for
            deterministic gradient rules, all False before the first step).
        extras: rule-specific tensors (e.g. an adaptive mutation scale); rules that need
            none leave it empty.
        tied: [R] bool, whether the last step's proposal had exactly the current loss (dU == 0:
            a loss too coarse to resolve the move, see :mod:`negd.diagnostics.resolution`); all False for
            rules without proposals. None at construction means all False.
    """

    params: Tensor
    loss: Tensor
    step: int
    seed: int
    realization: Tensor
    accepted: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    tied: Tensor | None = None

    def __post_init__(self) -> None:
        if self.tied is None:
            object.__setattr__(self, "tied", torch.zeros_like(self.accepted, dtype=torch.bool))

    @property
    def n_realizations(self) -> int:
        return self.params.shape[0]

    @property
    def n_params(self) -> int:
        return self.params.shape[1]

    def replace(self, **changes) -> State:
        return replace(self, **changes)

    def chunk(self, start: int, stop: int) -> State:
        """Rows ``start:stop`` as a state of their own (same seed and step)."""
        return State(self.params[start:stop], self.loss[start:stop], self.step, self.seed,
                     self.realization[start:stop], self.accepted[start:stop],
                     {k: v[start:stop] for k, v in self.extras.items()}, self.tied[start:stop])

    @staticmethod
    def concat(states: list[State]) -> State:
        """Inverse of :meth:`chunk`: stack the rows of states taken at the same step."""
        first = states[0]
        if any(s.step != first.step or s.seed != first.seed for s in states):
            raise NegdError("states: can only concatenate states with the same step and seed")
        cat = lambda name: torch.cat([getattr(s, name) for s in states])  # noqa: E731
        extras = {k: torch.cat([s.extras[k] for s in states]) for k in first.extras}
        return State(cat("params"), cat("loss"), first.step, first.seed, cat("realization"),
                     cat("accepted"), extras, cat("tied"))

    def to(self, device: torch.device | str) -> State:
        """The same state with every tensor (extras included) on ``device``."""
        return State(self.params.to(device), self.loss.to(device), self.step, self.seed,
                     self.realization.to(device), self.accepted.to(device),
                     {k: v.to(device) for k, v in self.extras.items()}, self.tied.to(device))

    def to_dict(self) -> dict:
        """Plain tensors and ints, for ``torch.save``."""
        return {"params": self.params, "loss": self.loss, "step": self.step, "seed": self.seed,
                "realization": self.realization, "accepted": self.accepted,
                "extras": dict(self.extras), "tied": self.tied}

    @staticmethod
    def from_dict(d: dict) -> State:
        return State(d["params"], d["loss"], int(d["step"]), int(d["seed"]), d["realization"],
                     d["accepted"], dict(d.get("extras", {})), d.get("tied"))


def init_state(params: Tensor, loss: Tensor, *, seed: int, realization: Tensor | None,
               extras: dict[str, Tensor] | None = None) -> State:
    """The step-0 state of R realizations: every rule's ``init`` ends here (seed and ids checked)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise NegdError(f"seed: must be an integer in [0, 2^64), got {seed!r}")
    r = params.shape[0]
    if realization is None:
        realization = torch.arange(r, dtype=torch.int64, device=params.device)
    elif realization.shape != (r,):
        raise NegdError(f"realization: must have shape [{r}], got {list(realization.shape)}")
    return State(params=params, loss=loss, step=0, seed=seed,
                 realization=realization.to(device=params.device, dtype=torch.int64),
                 accepted=torch.zeros(r, dtype=torch.bool, device=params.device),
                 extras=extras or {})
