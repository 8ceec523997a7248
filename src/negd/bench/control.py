"""``negd bench control``: environment-steps per CPU-second of negd's batched control environments,
its fused C rollout kernel and its torch loop, against gymnasium's vector environments driving the
same torch MLP policies, measured side by side in one run.

Three sides play the same R x E episodes with the same policies (realization r's MLP, a
``obs``-``width``-``out`` tanh net: greedy over 2 outputs for CartPole-v1, the torque for Pendulum-v1,
drives its E environments):

* **kernel**: :func:`negd.envs.rollout` on CPU with an MLPSpec policy, which runs the fused C kernel
  (``negd_env.h``: whole episodes in C, episodes in SIMD lanes);
* **torch**: the same call with ``kernel=False``, negd's torch loop (one batched step of all R x E
  episodes per Python iteration);
* **gymnasium**: CartPole-v1: ``CartPoleVectorEnv(num_envs = R E)`` (numpy, autoreset on the next
  step); Pendulum-v1: gymnasium 1.x has no vector Pendulum, so ``gymnasium.make_vec("Pendulum-v1",
  vectorization_mode="sync")`` (R E environments stepped one by one); both for ``vector_steps`` steps,
  the policy evaluated by the same :meth:`negd.models.MLPSpec.forward` on its float32 observations.

An environment step is one step of one live episode (gymnasium's autoreset steps and negd's finished
episodes are not counted). Time is process CPU time (``time.process_time``: all threads; torch and
the kernel are given ``--threads`` threads, default 1), so the ratios do not depend on how busy the
machine is; wall time is reported too. Each repeat runs the three sides in a rotated order (the
machine's state drifts: every side sees every position); the figure is the median over repeats. The
kernel's rate is also stated as a fraction of one core's FMA peak (:func:`negd.kernels.limits.fma_peak`)
counting only the policy's multiply-adds (2 FLOP each). Target of issue 15: CartPole >= 20x
gymnasium's vector environment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from negd.bench.measure import machine_info
from negd.envs import CartPole, Pendulum, episode_starts, rollout
from negd.envs.fused import kernel_fits
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec
from negd.validation import NegdError

__all__ = ["main", "measure", "TARGET_RATIO", "SIDES"]

TARGET_RATIO = 20.0
SIDES = ("kernel", "torch", "gymnasium")
ENVS = {"cartpole": CartPole, "pendulum": Pendulum}


def _policies(spec: MLPSpec, realizations: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """R balancing policies (a trained population: episodes run to truncation, as late in training):
    hidden unit 0 reads the linear controller w.x, w = (0.1, 0.5, 10, 1.5)/10, and the two outputs are
    -h0 and h0 (push the way the pole falls); every parameter is perturbed by N(0, 0.01^2)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(spec.n_params, dtype=torch.float64)
    (w1, _), (w2, _) = spec.slices()[0], spec.slices()[-1]
    base[w1.start:w1.start + 4] = torch.tensor([0.01, 0.05, 1.0, 0.15], dtype=torch.float64)
    out = base[w2].view(2, spec.width)
    out[0, 0], out[1, 0] = -1.0, 1.0
    base[w2] = out.reshape(-1)
    noise = 0.01 * torch.randn(realizations, spec.n_params, generator=g, dtype=torch.float64)
    return (base + noise).to(dtype)


def _pendulum_policies(spec: MLPSpec, realizations: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """R random policies (Pendulum never terminates: every episode is 200 steps whatever the policy)."""
    g = torch.Generator().manual_seed(seed)
    return (0.5 * torch.randn(realizations, spec.n_params, generator=g, dtype=torch.float64)).to(dtype)


def _rates(steps: int, cpu: float, wall: float) -> dict:
    return {"env_steps": steps, "cpu_s": cpu, "wall_s": wall, "rate_cpu": steps / cpu,
            "rate_wall": steps / wall}


def negd_rate(env, spec: MLPSpec, params: torch.Tensor, episodes: int, seed: int, kernel: bool) -> dict:
    """One rollout of R x E episodes (the kernel or the torch loop), timed."""
    starts = episode_starts(env, seed, torch.arange(params.shape[0]), 0, episodes, params.dtype)
    c0, w0 = time.process_time(), time.perf_counter()
    _, lengths = rollout(env, mlp_policy(spec), params, starts, lengths=True, kernel=kernel)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return _rates(int(lengths.sum()), cpu, wall)


def _gym_vector(env_name: str, n: int):
    try:
        import gymnasium
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
    except ImportError:
        raise NegdError("gymnasium: not installed; pip install gymnasium (the control bench compares "
                        "against its vector environments)") from None
    if env_name == "cartpole":
        return CartPoleVectorEnv(num_envs=n)
    return gymnasium.make_vec("Pendulum-v1", num_envs=n, vectorization_mode="sync")


def gymnasium_rate(env_name: str, spec: MLPSpec, params: torch.Tensor, episodes: int, vector_steps: int,
                   seed: int) -> dict:
    n = params.shape[0] * episodes
    envs = _gym_vector(env_name, n)
    rows = params.repeat_interleave(episodes, dim=0)  # env i is driven by realization i // E
    obs, _ = envs.reset(seed=seed)
    done = torch.zeros(n, dtype=torch.bool)
    steps = 0
    c0, w0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        for _ in range(vector_steps):
            out = spec.forward(rows, torch.from_numpy(obs)[:, None, :])[:, 0]
            action = out.argmax(dim=-1).numpy() if env_name == "cartpole" else out.float().numpy()
            obs, _, terminated, truncated, _ = envs.step(action)
            steps += int((~done).sum())  # a step after done is gymnasium's autoreset: not an env step
            done = torch.from_numpy(terminated | truncated)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    envs.close()
    return _rates(steps, cpu, wall)


def policy_flops(spec: MLPSpec) -> int:
    """Multiply-add FLOPs (2 per weight) of one policy evaluation."""
    return 2 * sum(i * o for i, o, _ in spec.layer_sizes)


def measure(realizations: int = 64, episodes: int = 16, width: int = 8, vector_steps: int = 500,
            repeats: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32, env: str = "cartpole",
            fma_peak: float | None = None) -> dict:
    """The three sides (module docstring) on one R x E grid point; ``fma_peak`` (FLOP/CPU-s) adds the
    kernel's fraction of it."""
    if env not in ENVS:
        raise NegdError(f"env: must be one of {', '.join(ENVS)}, got {env!r}")
    environment = ENVS[env]()
    spec = MLPSpec(depth=1, width=width, in_features=environment.observation_size,
                   out_features=environment.policy_outputs)
    make = _policies if env == "cartpole" else _pendulum_policies
    params = make(spec, realizations, seed, dtype)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for i in range(repeats):
        for k in range(len(SIDES)):
            side = SIDES[(i + k) % len(SIDES)]
            if side == "gymnasium":
                runs[side].append(gymnasium_rate(env, spec, params, episodes, vector_steps, seed + i))
            else:
                runs[side].append(negd_rate(environment, spec, params, episodes, seed + i, side == "kernel"))
    rate = {side: statistics.median(r["rate_cpu"] for r in runs[side]) for side in SIDES}
    wall = {side: statistics.median(r["rate_wall"] for r in runs[side]) for side in SIDES}
    res = {"workload": f"control-{env}", "env": environment.name, "realizations": realizations,
           "episodes": episodes, "width": width, "depth": 1,
           "policy": f"{spec.in_features}-{width}-{spec.out_features} tanh MLP, "
                     + ("greedy" if env == "cartpole" else "torque"),
           "dtype": str(dtype).removeprefix("torch."), "vector_steps": vector_steps, "repeats": repeats,
           "seed": seed, "kernel_used": kernel_fits(environment, mlp_policy(spec), params),
           "gymnasium_side": "CartPoleVectorEnv" if env == "cartpole" else "make_vec sync",
           "runs": runs, **{f"{side}_env_steps_per_cpu_s": rate[side] for side in SIDES},
           "kernel_vs_gymnasium": rate["kernel"] / rate["gymnasium"],
           "torch_vs_gymnasium": rate["torch"] / rate["gymnasium"],
           "kernel_vs_torch": rate["kernel"] / rate["torch"],
           "kernel_vs_gymnasium_wall": wall["kernel"] / wall["gymnasium"],
           "target_ratio": TARGET_RATIO if env == "cartpole" else None,
           "policy_flops_per_step": policy_flops(spec)}
    if fma_peak:
        res["fma_peak_flops"] = fma_peak
        res["kernel_fma_peak_fraction"] = rate["kernel"] * policy_flops(spec) / fma_peak
    return res


def _markdown(results: list[dict], machine: dict) -> str:
    lines = ["# Control bench: negd's fused rollout kernel and torch loop vs gymnasium's vector environments",
             "",
             "Environment steps (live episodes only) per CPU-second, one thread, the same MLP policies on "
             "every side, median of the repeats (sides rotated within each repeat). `negd bench control` "
             "(src/negd/bench/control.py). gymnasium: CartPole `CartPoleVectorEnv` (numpy), Pendulum "
             "`make_vec(..., vectorization_mode=\"sync\")` (1.x has no vector Pendulum). FMA peak: the "
             "kernel's policy multiply-adds (2 FLOP each) per CPU-second over one core's FMA peak in the "
             "dtype (`negd.kernels.limits`).", "",
             "| env | R x E | dtype | policy | kernel steps/CPU-s | torch steps/CPU-s | "
             "gymnasium steps/CPU-s | kernel / gymnasium | torch / gymnasium | kernel / torch | FMA peak | "
             "target >= 20x |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        target = r["target_ratio"]
        ok = "-" if target is None else ("met" if r["kernel_vs_gymnasium"] >= target else "NOT met")
        frac = f"{r['kernel_fma_peak_fraction']:.1%}" if "kernel_fma_peak_fraction" in r else "-"
        lines.append(f"| {r['env']} | {r['realizations']} x {r['episodes']} | {r['dtype']} | {r['policy']} | "
                     f"{r['kernel_env_steps_per_cpu_s']:,.0f} | {r['torch_env_steps_per_cpu_s']:,.0f} | "
                     f"{r['gymnasium_env_steps_per_cpu_s']:,.0f} | {r['kernel_vs_gymnasium']:.1f}x | "
                     f"{r['torch_vs_gymnasium']:.2f}x | {r['kernel_vs_torch']:.0f}x | {frac} | {ok} |")
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None), ""]
    return "\n".join(lines)


def _summary(res: dict) -> str:
    rate = {side: f"{res[side + '_env_steps_per_cpu_s']:,.0f}" for side in SIDES}
    target = f" (target {TARGET_RATIO:g}x)" if res["target_ratio"] else ""
    return (f"{res['env']} {res['realizations']} x {res['episodes']} {res['dtype']}: "
            f"kernel {rate['kernel']}, "
            f"torch {rate['torch']}, gymnasium {rate['gymnasium']} env-steps/CPU-s: kernel "
            f"{res['kernel_vs_gymnasium']:.1f}x gymnasium{target}, torch {res['torch_vs_gymnasium']:.2f}x")


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in s.split("x")) for s in text.split(",")]
        if any(len(s) != 2 or min(s) < 1 for s in sizes):
            raise ValueError
    except ValueError:
        raise NegdError(f"--sizes: must be comma-separated RxE with R, E >= 1, got {text!r}") from None
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="negd bench control", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="16x16,64x16,64x64,256x64",
                   help="comma-separated RxE (realizations x episodes per realization)")
    p.add_argument("--envs", default="cartpole,pendulum", help="comma-separated: cartpole, pendulum")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vector-steps", type=int, default=500, help="gymnasium CartPole steps per repeat")
    p.add_argument("--pendulum-vector-steps", type=int, default=40,
                   help="gymnasium Pendulum steps per repeat (its sync vector env is slow)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch (and kernel) threads (default 1)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-control"),
                   help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    sizes = _sizes(args.sizes)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    if not envs or any(e not in ENVS for e in envs):
        raise NegdError(f"--envs: must be comma-separated among {', '.join(ENVS)}, got {args.envs!r}")
    for name in ("threads", "repeats", "vector_steps", "pendulum_vector_steps", "width"):
        if getattr(args, name) < 1:
            raise NegdError(f"--{name.replace('_', '-')}: must be an integer >= 1, got {getattr(args, name)}")
    dtypes = {"float32": [torch.float32], "float64": [torch.float64],
              "both": [torch.float32, torch.float64]}[args.dtype]
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    results = []
    try:
        try:
            from negd.kernels.limits import fma_peak

            peaks = {dt: fma_peak(dt) for dt in dtypes}
        except RuntimeError:  # the kernels are unavailable: no peak to compare with
            peaks = {}
        for env in envs:
            steps = args.vector_steps if env == "cartpole" else args.pendulum_vector_steps
            for dtype in dtypes:
                for r, e in sizes:
                    res = measure(r, e, args.width, steps, args.repeats, args.seed, dtype, env,
                                  peaks.get(dtype))
                    print(_summary(res), flush=True)
                    results.append(res)
        machine = machine_info("cpu")
    finally:
        torch.set_num_threads(previous)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(results, machine))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0
