"""JAX peers of ``negd bench`` on the digits MLP: evosax's Open_ES and a JAX Metropolis ensemble.

Open_ES is the OpenAI evolution strategy (Salimans, Ho, Chen, Sidor & Sutskever,
arXiv:1703.03864, 2017) as evosax ships it (``evosax.algorithms.Open_ES``, evosax >= 0.3): ask a
population of ``mean + std * z`` (antithetic z), evaluate, rank-shape the losses, step the mean with
SGD. It is what a user of the JAX ecosystem picks for this problem, so it is the peer negd must not
only match but beat (issue 18: negd digits-mlp >= 1.6x Open_ES, evaluations per CPU-second).

Same problem as negd's digits-mlp workload (:mod:`negd.bench.workloads`): Linear(64, 32), tanh,
Linear(32, 10), softmax cross-entropy (minimized; evosax minimizes, no sign flip) on the 1347
training digits, same starting point (PyTorch's initialization, the first row of
:func:`negd.bench.workloads.initial_classifier_params`) and the same flat layout (weight [out, in]
row-major then bias, layer by layer, as :func:`negd.flat_params`). Everything runs as the JAX
idiom: ``jit`` of ``lax.scan`` over generations of a step whose evaluation is ``vmap``-ped over the
population, float32.

The output layer is written in one of two forms, because XLA runs them at very different speeds
under ``vmap`` and a peer written the slow way flatters negd:

* ``"sum"``: ``sum(h[:, :, None] * w2.T, axis=1)``: a broadcast multiply-reduce XLA fuses with the
  tanh before it (the fast form on CPU);
* ``"matmul"``: ``h @ w2.T``: a batched dot per population member.

and the generation through evosax's public ``ask``/``tell`` (``api="public"``) or through Open_ES's
own steps without ``tell``'s best-so-far archive (``api="lean"``, see :data:`APIS`): negd keeps no
archive either, and a peer slowed by bookkeeping it does not need would flatter negd.

``jax`` and ``evosax`` are optional (the ``bench`` extra) and imported only when a peer is built.
:func:`one_thread_xla` must run before ``jax`` is imported for a one-thread measurement.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import Tensor

from negd.validation import NegdError

__all__ = ["FORMS", "one_thread_xla", "jax_available", "evosax_available", "digits_mlp_loss",
           "EvosaxOpenESPeer", "APIS"]

FORMS = ("sum", "matmul")
# "public": evosax's ask/tell; "lean": Open_ES's _ask, centered-rank shaping and _tell, the same
# arithmetic without tell's best-so-far archive and metrics (which negd does not keep either). Both are
# timed (benchmarks/evosax_peer.py) so that neither form's bookkeeping decides the ratio.
APIS = ("lean", "public")
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
STEPS_PER_CALL = 16  # generations per jitted scan call


def one_thread_xla() -> None:
    """Ask XLA for one CPU thread (no Eigen thread pool, one intra-op thread). Effective only before
    ``jax`` is first imported; afterwards a NegdError-free no-op that says so on stderr."""
    if "jax" in sys.modules:
        print("negd bench: jax already imported; XLA thread flags not applied", file=sys.stderr)
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + ONE_THREAD_XLA_FLAGS).strip()


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def evosax_available() -> bool:
    try:
        from evosax.algorithms import Open_ES  # noqa: F401
    except ImportError:
        return False
    return True


def digits_mlp_loss(x: Tensor, y: Tensor, hidden: int = 32, classes: int = 10, form: str = "sum"):
    """A jittable ``flat params [N] -> mean softmax cross-entropy`` (float32) of the MLP
    ``in -> hidden (tanh) -> classes`` on inputs ``x`` [P, in] and class labels ``y`` [P], in the
    flat layout of :func:`negd.flat_params` on ``nn.Sequential(Linear, Tanh, Linear)``."""
    import jax
    import jax.numpy as jnp

    if form not in FORMS:
        raise NegdError(f"form: must be one of {FORMS}, got {form!r}")
    xs = jnp.asarray(x.detach().cpu().numpy(), dtype=jnp.float32)
    labels = jnp.asarray(y.detach().cpu().numpy())
    n_in = xs.shape[1]
    sizes = [hidden * n_in, hidden, classes * hidden, classes]
    ends = [sum(sizes[:k + 1]) for k in range(4)]

    def loss(p):
        w1 = p[:ends[0]].reshape(hidden, n_in)
        b1 = p[ends[0]:ends[1]]
        w2 = p[ends[1]:ends[2]].reshape(classes, hidden)
        b2 = p[ends[2]:ends[3]]
        h = jnp.tanh(xs @ w1.T + b1)
        if form == "sum":
            logits = jnp.sum(h[:, :, None] * w2.T[None, :, :], axis=1) + b2
        else:
            logits = h @ w2.T + b2
        log_p = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))

    return loss


class EvosaxOpenESPeer:
    """evosax Open_ES (population ``realizations``, even) on the digits MLP: ``jit`` of ``lax.scan``
    over :data:`STEPS_PER_CALL` generations of ask / ``vmap``-ped evaluation / tell. One run step is
    one generation: ``realizations`` forward passes over the training set. ``std`` defaults to the
    workload's sigma, ``learning_rate`` (plain SGD on the mean) to evosax's own default, 1e-3."""

    def __init__(self, workload, realizations: int, device: torch.device | str = "cpu", seed: int = 0,
                 form: str = "sum", api: str = "lean", std: float | None = None,
                 learning_rate: float = 1e-3) -> None:
        import jax
        import jax.numpy as jnp
        import optax
        from evosax.algorithms import Open_ES
        from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn

        from negd.bench.workloads import initial_classifier_params

        if torch.device(device).type != "cpu":
            raise NegdError("device: the evosax peer runs on CPU only here")
        if realizations < 2 or realizations % 2:
            raise NegdError(f"realizations: Open_ES needs an even population >= 2, got {realizations}")
        if api not in APIS:
            raise NegdError(f"api: must be one of {APIS}, got {api!r}")
        x, y = workload.data()
        model = workload.model()
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        loss = digits_mlp_loss(x, y, linears[0].out_features, linears[1].out_features, form)
        batched = jax.vmap(loss)
        start = jnp.asarray(initial_classifier_params(workload, 1, seed)[0].numpy())
        es = Open_ES(population_size=realizations, solution=start,
                     optimizer=optax.sgd(learning_rate=learning_rate),
                     std_schedule=optax.constant_schedule(workload.sigma if std is None else std))
        params = es.default_params

        def generation(carry, _):
            state, key = carry
            key, k_ask, k_tell = jax.random.split(key, 3)
            if api == "public":
                population, state = es.ask(k_ask, state, params)
                fitness = batched(population)
                state, _ = es.tell(k_tell, population, fitness, state, params)
            else:  # Open_ES's own arithmetic, without the best-so-far archive and metrics of tell
                population, state = es._ask(k_ask, state, params)
                fitness = batched(population)
                shaped = centered_rank_fitness_shaping_fn(population, fitness, state, params)
                state = es._tell(k_tell, population, shaped, state, params)
                state = state.replace(generation_counter=state.generation_counter + 1)
            return (state, key), jnp.min(fitness)

        def many(state, key):
            (state, key), best = jax.lax.scan(generation, (state, key), None, length=STEPS_PER_CALL)
            return state, key, best[-1]

        self._many = jax.jit(many)
        self._loss = jax.jit(loss)
        key = jax.random.key(seed)
        key, k_init = jax.random.split(key)
        self.state = es.init(k_init, start, params)
        self.key = key
        self.best = self._loss(start)
        self.quantum = STEPS_PER_CALL
        self.realization_steps_per_step = realizations
        self.form = form

    def run(self, steps: int) -> None:
        for _ in range(max(1, steps // self.quantum)):
            self.state, self.key, self.best = self._many(self.state, self.key)
        self.best.block_until_ready()

    def losses(self) -> Tensor:
        """The loss of the distribution's mean (one number: Open_ES has one search point)."""
        import numpy as np

        return torch.from_numpy(np.asarray(self._loss(self.state.mean), dtype=np.float64).reshape(1))
