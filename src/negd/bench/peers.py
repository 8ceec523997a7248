"""The implementations the benchmark races: negd and the usual ways of running neuroevolution.

All of them run the same step (Whitelam et al. 2021): mutate every parameter by
N(0, sigma^2), evaluate the MSE once, accept with probability min(1, exp(-beta dU)) (beta = inf:
iff dU <= 0). Each peer is built for one (workload, R) and offers ``run(steps)`` (blocking
until the work is done), ``losses()`` and ``realization_steps_per_step`` (how many
realization-steps one ``run`` step performs).

* ``negd``: :func:`negd.advance` of :class:`negd.Neuroevolution` on an ``MLPLoss(backend="auto")``
  (the fused C kernel when :func:`negd.engine.fused_step_fn` offers one, the torch loop
  otherwise);
* ``loop``: the authors' style, one ``nn.Module`` per trajectory: deep-copy the state dict,
  mutate in place with ``torch.randn``, evaluate, restore on reject. It is a Python loop over
  realizations, so its throughput does not depend on R; for R > 1 only a few realizations are
  simulated and the per-realization-step rate is reported;
* ``torch``: an eager PyTorch ensemble ([R, N] ``torch.randn`` mutation, ``bmm`` forward,
  ``torch.where`` accept);
* ``compile``: the same step under ``torch.compile``;
* ``jax``: the same step in JAX (``jit`` of ``lax.scan`` over steps of a ``vmap`` over
  realizations, float32, donated buffers, a cheap counter-based key per step), written the fast
  way (``sum(h * w2)`` for a 1-output layer); ``jax-matmul``: the same with every layer ``h @ w``;
* ``evosax``, ``evosax-matmul``: evosax's Open_ES on the digits MLP (classifiers only,
  :mod:`negd.bench.jax_peers`), output layer ``sum(h * w2)`` or ``h @ w2``;
* ``grad``: negd's gradient twin (normalized gradient descent or gradient descent through
  autograd, no noise) on the same ensemble: the cost a gradient step has on this problem.
"""

from __future__ import annotations

import copy
import math
from typing import Protocol

import torch
from torch import Tensor, nn

import negd
from negd.bench.workloads import Workload, initial_params
from negd.engine import fused_step_fn
from negd.validation import NegdError

__all__ = ["Peer", "PEERS", "make_peer", "jax_available", "jax_loss_fn", "LOOP_REALIZATIONS"]

# Realizations the per-realization loop simulates when R > 1 (its rate does not depend on R).
LOOP_REALIZATIONS = 4


class Peer(Protocol):
    realization_steps_per_step: int
    quantum: int  # run(steps) needs steps to be a multiple of this

    def run(self, steps: int) -> None: ...

    def losses(self) -> Tensor: ...


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NegdPeer:
    """negd's own engine: ``negd.advance`` (fused kernel if available)."""

    quantum = 1

    def __init__(self, workload: Workload, realizations: int, device: torch.device, seed: int = 0,
                 gradient: bool = False) -> None:
        task = workload.task(device)
        self.device = device
        self.loss_fn = negd.MLPLoss(workload.spec, task.inputs, task.targets, backend="auto")
        rule = negd.Neuroevolution(workload.sigma, workload.beta)
        self.rule = negd.gradient_twin(rule, noise=False) if gradient else rule
        params = initial_params(workload, realizations, seed).to(device)
        self.state = self.rule.init(params, self.loss_fn, seed=seed)
        self.realization_steps_per_step = realizations
        self.fused = fused_step_fn(self.rule, self.state, self.loss_fn) is not None

    def run(self, steps: int) -> None:
        self.state = negd.advance(self.rule, self.state, self.loss_fn, steps)
        _sync(self.device)

    def losses(self) -> Tensor:
        return self.state.loss.detach().cpu()


class LoopPeer:
    """The authors' style: one nn.Module per realization, copy / mutate / evaluate / restore."""

    quantum = 1

    def __init__(self, workload: Workload, realizations: int, device: torch.device, seed: int = 0
                 ) -> None:
        task = workload.task(device)
        n = min(realizations, LOOP_REALIZATIONS)
        self._setup(task.inputs, task.targets, workload.spec.module, initial_params(workload, n, seed),
                    nn.MSELoss(), workload.sigma, workload.beta, device, seed)

    def _setup(self, x: Tensor, y: Tensor, make_model, start: Tensor, criterion: nn.Module, sigma: float,
               beta: float, device: torch.device, seed: int) -> None:
        """One model per row of ``start`` (``make_model()`` loaded with it), their current losses and
        the generators: the state every loop peer starts from."""
        self.x, self.y = x, y
        self.sigma, self.beta = sigma, beta
        self.nets: list[nn.Module] = [negd.load_flat_params(make_model(), row).to(device) for row in start]
        self.criterion = criterion
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.cpu_generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            self.current = [self.criterion(net(self.x), self.y).item() for net in self.nets]
        self.realization_steps_per_step = len(self.nets)
        self.device = device

    def _one_step(self, k: int) -> None:
        net = self.nets[k]
        saved = copy.deepcopy(net.state_dict())
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=self.generator, device=p.device), alpha=self.sigma)
            new = self.criterion(net(self.x), self.y).item()
        d_u = new - self.current[k]
        if math.isinf(self.beta):
            accept = d_u <= 0
        else:
            u = torch.rand((), generator=self.cpu_generator).item()
            accept = d_u <= 0 or u < math.exp(-self.beta * d_u)
        if accept and math.isfinite(new):
            self.current[k] = new
        else:
            net.load_state_dict(saved)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            for k in range(len(self.nets)):
                self._one_step(k)

    def losses(self) -> Tensor:
        return torch.tensor(self.current)


def _make_torch_step(workload: Workload, x: Tensor, y: Tensor):
    spec, sigma, beta = workload.spec, workload.sigma, workload.beta

    def step(params: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
        proposal = params + sigma * torch.randn_like(params)
        new = ((spec.forward(proposal, x) - y) ** 2).mean(dim=(1, 2))
        d_u = new - loss
        if math.isinf(beta):
            accept = d_u <= 0
        else:
            accept = torch.rand_like(loss) < torch.exp(-beta * d_u)
        accept = accept & torch.isfinite(new)
        return torch.where(accept[:, None], proposal, params), torch.where(accept, new, loss)

    return step


class TorchEnsemblePeer:
    """Eager PyTorch ensemble (or the same step under ``torch.compile``)."""

    quantum = 1

    def __init__(self, workload: Workload, realizations: int, device: torch.device, seed: int = 0,
                 compiled: bool = False) -> None:
        task = workload.task(device)
        self.x, self.y = task.inputs, task.targets
        self.device = device
        torch.manual_seed(seed)
        self.params = initial_params(workload, realizations, seed).to(device)
        step = _make_torch_step(workload, self.x, self.y)
        self.step = torch.compile(step, dynamic=False) if compiled else step
        with torch.no_grad():
            self.loss = ((workload.spec.forward(self.params, self.x) - self.y) ** 2
                         ).mean(dim=(1, 2))
        self.realization_steps_per_step = realizations

    def run(self, steps: int) -> None:
        with torch.no_grad():
            for _ in range(steps):
                self.params, self.loss = self.step(self.params, self.loss)
        _sync(self.device)

    def losses(self) -> Tensor:
        return self.loss.detach().cpu()


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def jax_loss_fn(workload: Workload, form: str = "sum"):
    """A jittable function params [R, N] -> MSE [R] of the workload's net, in JAX.

    ``form="sum"`` (the fast way under ``vmap`` on CPU, what the ``jax`` peer runs): a 1-input first
    layer as a broadcast multiply-add and a 1-output last layer as ``sum(h * w2)``; ``"matmul"``
    (the ``jax-matmul`` peer): every layer as ``h @ w.T``, as a user would first write it. Under
    ``vmap`` XLA runs the ``@`` form of the output layer several times slower, so a peer written that
    way overstates negd's lead; ``negd bench`` reports both."""
    import jax
    import jax.numpy as jnp

    spec = workload.spec
    task = workload.task()
    if form not in ("sum", "matmul"):
        raise NegdError(f"form: must be 'sum' or 'matmul', got {form!r}")
    fast = form == "sum"
    x = jnp.asarray(task.inputs.numpy())
    x = x[:, 0] if spec.in_features == 1 and fast else x
    y = jnp.asarray(task.targets.numpy())
    layers = list(zip(spec.layer_sizes, spec.slices()))

    def single(p):
        # Written for XLA: a 1-input first layer is a broadcast multiply-add and a 1-output last
        # layer a multiply-reduce, both of which fuse with tanh instead of calling a GEMM.
        h = None
        for k, ((i, o, _), (ws, bs)) in enumerate(layers):
            w = p[ws.start:ws.stop].reshape(o, i)
            if fast and k == 0 and i == 1:
                h = x[:, None] * w[:, 0][None, :]
            elif fast and k == len(layers) - 1 and o == 1:
                h = jnp.sum(h * w[0][None, :], axis=1, keepdims=True)
            else:
                h = (h if h is not None else x) @ w.T
            if bs is not None:
                h = h + p[bs.start:bs.stop][None, :]
            if k < spec.depth:
                h = jnp.tanh(h)
        return jnp.mean((h - y) ** 2)

    return jax.vmap(single)


class JaxPeer:
    """``jit(lax.scan(step))`` over steps, ``vmap`` over realizations, in float32."""

    def __init__(self, workload: Workload, realizations: int, device: torch.device, seed: int = 0,
                 steps_per_call: int = 16, prng: str = "unsafe_rbg", form: str = "sum") -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        sigma, beta = workload.sigma, workload.beta
        batched_loss = jax_loss_fn(workload, form)
        shape = (realizations, workload.spec.n_params)

        def body(carry, _):
            params, loss, key = carry
            # A fresh key per step: splitting the carried key is the scan idiom; with the
            # "unsafe_rbg" implementation both the split and the draws are cheap on CPU.
            key, k_mut, k_acc = jax.random.split(key, 3)
            proposal = params + sigma * jax.random.normal(k_mut, shape, jnp.float32)
            new = batched_loss(proposal)
            d_u = new - loss
            if math.isinf(beta):
                accept = d_u <= 0
            else:
                accept = jax.random.uniform(k_acc, loss.shape, jnp.float32) < jnp.exp(-beta * d_u)
            accept = accept & jnp.isfinite(new)
            return (jnp.where(accept[:, None], proposal, params), jnp.where(accept, new, loss), key), None

        def many(params, loss, key):
            return jax.lax.scan(body, (params, loss, key), None, length=steps_per_call)[0]

        self._many = jax.jit(many, donate_argnums=(0, 1))
        start = jnp.asarray(initial_params(workload, realizations, seed).numpy())
        self.params, self.loss = start, batched_loss(start)
        self.key = jax.random.key(seed, impl=prng)
        self.quantum = steps_per_call
        self.realization_steps_per_step = realizations

    def run(self, steps: int) -> None:
        for _ in range(max(1, steps // self.quantum)):
            self.params, self.loss, self.key = self._many(self.params, self.loss, self.key)
        self.loss.block_until_ready()

    def losses(self) -> Tensor:
        import numpy as np

        return torch.from_numpy(np.asarray(self.loss).copy())


# name -> (column label, constructor)
PEERS = {
    "negd": "negd",
    "loop": "authors-style loop",
    "torch": "torch eager ensemble",
    "compile": "torch.compile ensemble",
    "jax": "JAX jit+vmap+scan",
    "jax-matmul": "JAX jit+vmap+scan, @ form",
    "evosax": "evosax Open_ES",
    "evosax-matmul": "evosax Open_ES, @ form",
    "grad": "negd gradient twin",
    "generic": "generic ModuleLoss (vmap)",
}


def make_peer(name: str, workload: Workload, realizations: int, device: torch.device | str = "cpu",
              seed: int = 0) -> Peer | None:
    """Build peer ``name`` (a key of :data:`PEERS`) for the regression ``workload`` at R =
    ``realizations``; None when the peer does not apply ("generic"). Every workload, the
    classifiers included: :func:`negd.bench.factory.make_peer`."""
    device = torch.device(device)
    if name not in PEERS:
        raise NegdError(f"peers: each must be one of {sorted(PEERS)}, got {name!r}")
    if not isinstance(workload, Workload):  # the classifiers' peers: negd.bench.factory
        return None
    if name == "negd":
        return NegdPeer(workload, realizations, device, seed)
    if name == "grad":
        return NegdPeer(workload, realizations, device, seed, gradient=True)
    if name == "loop":
        return LoopPeer(workload, realizations, device, seed)
    if name == "torch":
        return TorchEnsemblePeer(workload, realizations, device, seed)
    if name == "compile":
        return TorchEnsemblePeer(workload, realizations, device, seed, compiled=True)
    if name == "jax":
        return JaxPeer(workload, realizations, device, seed)
    if name == "jax-matmul":
        return JaxPeer(workload, realizations, device, seed, form="matmul")
    return None
