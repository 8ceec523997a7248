"""A black-box objective named in a configuration: ``objective: "package.module:factory"``.

The contract (docs/experiments.md): ``factory()`` (no arguments) returns a loss, a callable
``params [R, N] -> losses [R]`` (float64, minimized: no sign flips), with an integer attribute
``n_params`` (N) and optionally ``initial_params()`` -> [N], the run's x(0) (otherwise x(0) is the
``paper`` initialization N(0, sigma0^2)). The losses may carry an autograd graph (then a twin that
needs a gradient may be used) or not (a simulator, a control task: only the mean-field twin).

The module is imported with importlib when the problem is built (negd.experiments.run.problem), so a
Ray shard worker, which rebuilds the problem from the configuration, imports it too: it must be
importable there (installed, or on PYTHONPATH). Every failure is one :class:`NegdError` line naming
the ``objective`` field. Only the name is in the run's settings fingerprint: a change to the
objective's code between a run and its ``--resume`` is not detected.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from negd.losses.base import value_and_grad
from negd.validation import NegdError, first_line

__all__ = ["load_objective", "probe_objective", "objective_x0"]


def _fail(name: str, what: str) -> NegdError:
    return NegdError(f"objective: {name!r} {what}")


def load_objective(name: str) -> Any:
    """The loss ``factory()`` returns for ``name`` = "package.module:factory" (module docstring)."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or an error raised while the module runs
        first = first_line(err)
        raise _fail(name, f"cannot be imported: {type(err).__name__}: {first}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise _fail(name, f"names no attribute {attr!r} of module {module_name}")
    if not callable(factory):
        raise _fail(name, f"is not callable (a {type(factory).__name__}); it must be a function returning "
                          f"the loss")
    try:
        loss = factory()
    except Exception as err:
        first = first_line(err)
        raise _fail(name, f"failed when called: {type(err).__name__}: {first}") from None
    if not callable(loss):
        raise _fail(name, f"returned a {type(loss).__name__}, not a loss callable params [R, N] -> [R]")
    n = getattr(loss, "n_params", None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _fail(name, f"returned a loss without an integer n_params >= 1 (its parameter count), got "
                          f"{n!r}")
    return loss


def probe_objective(name: str, loss: Any, params: Tensor) -> bool:
    """Evaluate ``loss`` on ``params`` [R, N]: refuse a wrong shape or a non-finite loss in one line;
    True when the losses have a gradient (tried: negd.losses.base.value_and_grad, missing_ok)."""
    try:
        values, grad = value_and_grad(loss, params, missing_ok=True)
    except NegdError as err:
        raise _fail(name, f"returned a bad loss: {err}") from None
    except Exception as err:
        first = first_line(err)
        raise _fail(name, f"failed on params {list(params.shape)}: {type(err).__name__}: {first}") from None
    if not torch.isfinite(values).all():
        raise _fail(name, f"returned a non-finite loss at x(0): {values.tolist()[:4]}")
    return grad is not None


def objective_x0(name: str, loss: Any) -> Tensor | None:
    """The objective's ``initial_params()`` as a float64 vector [n_params], or None when it has none."""
    initial = getattr(loss, "initial_params", None)
    if initial is None:
        return None
    try:
        x0 = torch.as_tensor(initial(), dtype=torch.float64).detach().clone()
    except Exception as err:
        first = first_line(err)
        raise _fail(name, f"initial_params() failed: {type(err).__name__}: {first}") from None
    if tuple(x0.shape) != (loss.n_params,) or not torch.isfinite(x0).all():
        raise _fail(name, f"initial_params() must return {loss.n_params} finite numbers, got shape "
                          f"{list(x0.shape)}")
    return x0
