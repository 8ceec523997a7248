"""One measurement of ``negd bench``, runnable in a fresh process so that its peak memory is its own.

``python -m negd.bench.cell '<json spec>'`` prints one JSON line with the result. Spec kinds:

* ``{"kind": "peer", "peer", "workload", "realizations", "device", "seconds", "repeats"}``:
  time one implementation (see :mod:`negd.bench.peers`);
* ``{"kind": "limit", "workload", "seconds", "threads"}``: the machine's limit for a workload in
  realization-steps/s: one core's FMA peak and tanh throughput (C probes compiled with the kernel)
  against the FLOPs and tanh's of one realization-step, times the cores used; torch's own rate on
  the same arithmetic beside it, as a peer;
* ``{"kind": "memory", "realizations", "steps"}``: a few negd steps of the shallow workload
  at a very large R, reporting the peak resident memory.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from negd.bench.factory import make_peer
from negd.bench.jax_peers import evosax_available, one_thread_xla
from negd.bench.measure import matmul_rate, peak_rss_mb, tanh_rate, time_peer
from negd.bench.peers import LOOP_REALIZATIONS, jax_available
from negd.bench.workloads import get_workload

__all__ = ["run_cell"]


def _peer_cell(spec: dict) -> dict:
    name, workload = spec["peer"], get_workload(spec["workload"])
    if name.startswith("jax") and not jax_available():
        return {"status": "not installed"}
    if name.startswith("evosax") and not evosax_available():
        return {"status": "not installed"}
    baseline = peak_rss_mb()
    t0 = time.perf_counter()
    try:
        peer = make_peer(name, workload, spec["realizations"], spec.get("device", "cpu"),
                         spec.get("seed", 0))
    except Exception as err:  # a peer that cannot be built here (e.g. no compiler) is reported
        return {"status": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    setup = time.perf_counter() - t0
    if peer is None:
        return {"status": "n/a"}
    start_loss = float(peer.losses().mean())
    try:
        result = time_peer(peer, spec["seconds"], spec["repeats"])
    except Exception as err:
        return {"status": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    result.update(status="ok", setup_s=setup, baseline_rss_mb=baseline, peak_rss_mb=peak_rss_mb(),
                  start_loss=start_loss, end_loss=float(peer.losses().mean()),
                  realizations_simulated=peer.realization_steps_per_step)
    if hasattr(peer, "fused"):
        result["fused"] = peer.fused
    if name == "loop":
        result["note"] = (f"per-realization loop: {min(spec['realizations'], LOOP_REALIZATIONS)} "
                          "realizations simulated; throughput does not depend on R")
    return result


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _torch_limit(workload, seconds: float, device: str, cores: int | None = None) -> dict:
    """torch's own throughput on the workload's arithmetic (tanh, or the [P, width] x [width, width]
    products), with torch's threads and on one thread times ``cores`` (default: all): a peer, not
    a limit."""
    cores = cores or _cores()
    def measure() -> dict:
        if workload.limit_kind == "tanh":
            return tanh_rate(seconds, device)
        return matmul_rate(workload.n_points, workload.matmul_width, seconds, device)

    measured = {"all_threads": measure()}
    if device == "cpu" and cores > 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = measure()
        finally:
            torch.set_num_threads(threads)
        measured["one_thread_times_cores"] = {**one, "rate": one["rate"] * cores, "cores": cores}
    best = max(measured.values(), key=lambda m: m["rate"])
    per_step = workload.tanh_per_step if workload.limit_kind == "tanh" else workload.flops_per_step
    return {"rate": best["rate"] / per_step, "kind": workload.limit_kind, "throughput": best["rate"],
            "unit": "tanh/s" if workload.limit_kind == "tanh" else "FLOP/s", "work_per_step": per_step,
            "detail": measured}


def _limit_cell(spec: dict) -> dict:
    """The machine's limit for a workload (CPU): one core's float32 FMA peak and the kernel's tanh
    throughput, measured here by the C probes of :mod:`negd.kernels.limits`, combined as
    ``1 / (FLOPs / peak + tanhs / tanh rate)`` per core, times the cores the run uses (``threads``,
    default torch's, at most the cores). ``torch`` holds torch's own rate on the same arithmetic,
    a peer. Without the kernels (or on CUDA) the limit is torch's rate, as before."""
    from negd import kernels
    from negd.kernels import limits

    workload = get_workload(spec["workload"])
    seconds, device = spec["seconds"], spec.get("device", "cpu")
    cores = max(1, min(int(spec.get("threads") or torch.get_num_threads()), _cores()))
    peer = _torch_limit(workload, seconds, device, cores)
    if device != "cpu" or not kernels.available():
        return {"status": "ok", **peer, "basis": "torch", "torch": peer}
    peak, peak64 = limits.fma_peak(torch.float32, seconds), limits.fma_peak(torch.float64, seconds)
    tanh_per_s = limits.tanh_throughput(seconds, torch.float32)
    flops, tanhs = workload.flops_per_step, workload.tanh_per_step
    one_core = limits.step_limit(flops, tanhs, peak, tanh_per_s)
    return {"status": "ok", "rate": cores * one_core, "basis": "fma+tanh", "cores": cores,
            "fma_peak_flops": peak, "fma_peak_f64_flops": peak64, "tanh_per_s": tanh_per_s,
            "flops_per_step": flops, "tanh_per_step": tanhs,
            "fma_only_rate": cores * peak / flops if flops else None,
            "torch": peer}


def _memory_cell(spec: dict) -> dict:
    import negd
    from negd.bench.workloads import initial_params

    workload = get_workload("shallow")
    r, steps = spec["realizations"], spec["steps"]
    task = workload.task()
    loss_fn = negd.MLPLoss(workload.spec, task.inputs, task.targets, backend="auto")
    rule = negd.Neuroevolution(workload.sigma, workload.beta)
    baseline = peak_rss_mb()
    t0 = time.perf_counter()
    state = rule.init(initial_params(workload, r), loss_fn)
    state = negd.advance(rule, state, loss_fn, steps)
    elapsed = time.perf_counter() - t0
    return {"status": "ok", "realizations": r, "steps": steps, "seconds": elapsed,
            "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "fused": negd.engine.fused_step_fn(rule, state, loss_fn) is not None}


def run_cell(spec: dict) -> dict:
    """Run one measurement in this process (see module docstring)."""
    kind = spec.get("kind", "peer")
    if kind == "peer":
        return _peer_cell(spec)
    if kind == "limit":
        return _limit_cell(spec)
    if kind == "memory":
        return _memory_cell(spec)
    raise ValueError(f"kind: must be 'peer', 'limit' or 'memory', got {kind!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
        if int(spec["threads"]) == 1:
            one_thread_xla()  # the JAX peers on one thread too (before jax is imported)
    torch.manual_seed(spec.get("seed", 0))
    print(json.dumps(run_cell(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
