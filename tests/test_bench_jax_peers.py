"""The JAX peers of ``negd bench``: evosax Open_ES on the digits MLP, the two forms of the JAX peers.

They need the ``bench`` extra (jax, evosax); without it these tests skip and say why.
"""

from __future__ import annotations

import math

import pytest
import torch

import negd
from negd.bench import cli
from negd.bench.classifiers import initial_classifier_params
from negd.bench.factory import make_peer
from negd.bench.jax_peers import evosax_available, jax_available
from negd.bench.peers import jax_loss_fn
from negd.bench.workloads import WORKLOADS, initial_params
from negd.validation import NegdError

needs_jax = pytest.mark.skipif(not jax_available(), reason="jax is not installed (pip install 'negd[bench]')")
needs_evosax = pytest.mark.skipif(not evosax_available(),
                                  reason="evosax is not installed (pip install 'negd[bench]')")


def _digits_reference(params: torch.Tensor) -> torch.Tensor:
    workload = WORKLOADS["digits-mlp"]
    x, y = workload.data()
    return negd.loss_for(workload.model(), x, y, loss="cross_entropy")(params)


@needs_jax
@pytest.mark.parametrize("form", ["sum", "matmul"])
def test_digits_loss_is_negd_cross_entropy_in_both_forms(form):
    pytest.importorskip("sklearn")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from negd.bench.jax_peers import digits_mlp_loss

    workload = WORKLOADS["digits-mlp"]
    x, y = workload.data()
    params = initial_classifier_params(workload, 3, seed=4)
    params = params + 0.3 * torch.randn(params.shape, generator=torch.Generator().manual_seed(0))
    got = np.asarray(jax.vmap(digits_mlp_loss(x, y, form=form))(jnp.asarray(params.numpy())))
    # float32 sums over 1347 examples in another order against negd's float64 loss: ~1e-6 relative
    np.testing.assert_allclose(got, _digits_reference(params).numpy(), rtol=2e-5)


@needs_jax
@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_jax_peer_forms_evaluate_the_same_mse(name):
    import jax.numpy as jnp
    import numpy as np

    workload = WORKLOADS[name]
    task = workload.task()
    params = initial_params(workload, 3, seed=5)
    reference = negd.MLPLoss(workload.spec, task.inputs, task.targets, backend="torch")(params).numpy()
    for form in ("sum", "matmul"):
        got = np.asarray(jax_loss_fn(workload, form)(jnp.asarray(params.numpy())))
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-7, err_msg=form)
    with pytest.raises(NegdError, match="form"):
        jax_loss_fn(workload, "einsum")
    peer = make_peer("jax-matmul", workload, 2, seed=5)
    start = peer.losses().clone()
    peer.run(peer.quantum)
    assert bool((peer.losses() <= start).all())  # beta = inf: never up


@needs_evosax
def test_evosax_peer_runs_from_negd_start_and_both_apis_agree():
    pytest.importorskip("sklearn")
    from negd.bench.jax_peers import EvosaxOpenESPeer

    workload = WORKLOADS["digits-mlp"]
    start_loss = float(_digits_reference(initial_classifier_params(workload, 1, seed=0)))
    ends = {}
    for api in ("lean", "public"):
        for form in ("sum", "matmul"):
            peer = EvosaxOpenESPeer(workload, 4, seed=0, form=form, api=api)
            assert peer.realization_steps_per_step == 4
            # the same start as negd's first realization (same flat layout, same init)
            assert math.isclose(float(peer.losses()), start_loss, rel_tol=2e-5)
            peer.run(2 * peer.quantum)  # 32 generations
            ends[api, form] = float(peer.losses())
    # the same Open_ES arithmetic with and without tell's archive, and in both output-layer forms:
    # the same trajectory up to float32 rounding of the evaluations
    for key, value in ends.items():
        assert math.isclose(value, ends["lean", "sum"], rel_tol=1e-4), key
    # 32 generations of SGD (lr 0.01) on rank-shaped estimates from sigma = 0.01 go down from the start
    assert ends["lean", "sum"] < start_loss


@needs_evosax
def test_evosax_peer_refuses_what_it_cannot_run():
    from negd.bench.jax_peers import EvosaxOpenESPeer

    workload = WORKLOADS["digits-mlp"]
    with pytest.raises(NegdError, match="realizations"):
        EvosaxOpenESPeer(workload, 3)
    with pytest.raises(NegdError, match="form"):
        EvosaxOpenESPeer(workload, 4, form="einsum")
    with pytest.raises(NegdError, match="api"):
        EvosaxOpenESPeer(workload, 4, api="fast")


def test_evosax_peer_applies_to_the_digits_mlp_only():
    # no jax needed: these return None before anything is imported
    assert make_peer("evosax", WORKLOADS["shallow"], 4) is None
    assert make_peer("evosax-matmul", WORKLOADS["digits-cnn"], 4) is None
    assert make_peer("evosax", WORKLOADS["digits-mlp"], 1) is None  # Open_ES needs an even population
    assert make_peer("jax-matmul", WORKLOADS["digits-mlp"], 4) is None


def test_cell_reports_a_missing_extra(monkeypatch):
    from negd.bench import cell

    monkeypatch.setattr(cell, "evosax_available", lambda: False)
    got = cell.run_cell({"kind": "peer", "peer": "evosax", "workload": "digits-mlp", "realizations": 4,
                         "seconds": 0.01, "repeats": 1})
    assert got == {"status": "not installed"}


def test_evosax_ratio_is_per_cpu_second_against_the_fastest_form():
    cells = {"negd": {"status": "ok", "rate": 1.0, "cpu_rate": 12_000.0},
             "evosax": {"status": "ok", "rate": 9.0, "cpu_rate": 5_000.0},
             "evosax-matmul": {"status": "ok", "rate": 1.0, "cpu_rate": 6_000.0}}
    assert cli._best_cpu_rate(cells, ("evosax", "evosax-matmul")) == 6_000.0
    assert cli._best_cpu_rate({"evosax": {"status": "not installed"}}, ("evosax",)) is None
    rows = [{"workload": "digits-mlp", "realizations": 32, "negd_over_evosax_cpu": 2.0,
             "negd_over_generic": None, "fraction_of_limit_cpu": None, "fraction_of_fma_peak": None,
             "mutation_over_gradient_cost": None}]
    met = {t["target"]: t["met"] for t in cli._targets(rows, None)}
    assert met["digits-mlp R=32: negd >= 1.6x evosax Open_ES (fastest form, per CPU-s)"] is True
    rows[0]["negd_over_evosax_cpu"] = 1.5
    met = {t["target"]: t["met"] for t in cli._targets(rows, None)}
    assert met["digits-mlp R=32: negd >= 1.6x evosax Open_ES (fastest form, per CPU-s)"] is False
