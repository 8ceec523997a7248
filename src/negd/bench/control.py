"""``negd bench control``: environment-steps per CPU-second of batched torch CartPole (negd.envs)
against gymnasium's ``CartPoleVectorEnv`` (numpy) driving the same torch MLP policies, in one run.

Both sides play CartPole-v1 with the same R x E policies (realization r's MLP, a 4-``width``-2 tanh
net with greedy actions, drives its E environments): negd steps all R x E episodes as tensors
(:func:`negd.envs.rollout`, episodes to termination or truncation at 500); gymnasium steps
``CartPoleVectorEnv(num_envs = R E)`` (autoreset on the next step) for ``vector_steps`` steps, the
policy evaluated by the same :meth:`negd.models.MLPSpec.forward` on its float32 observations. An
environment step is one step of one live episode (gymnasium's autoreset steps and negd's finished
episodes are not counted). Time is process CPU time (``time.process_time``: all threads), so the
ratio does not depend on how busy the machine is; wall time is reported too. Repeats: the median of
``repeats`` runs of each side. Target of issue 15: negd >= 20x gymnasium.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from negd.bench.measure import machine_info
from negd.envs import CartPole, episode_starts, rollout
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec
from negd.validation import NegdError

__all__ = ["main", "measure"]

TARGET_RATIO = 20.0


def _policies(spec: MLPSpec, realizations: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """R balancing policies (a trained population: episodes run to truncation, as late in training):
    hidden unit 0 reads the linear controller w.x, w = (0.1, 0.5, 10, 1.5)/10, and the two outputs are
    -h0 and h0 (push the way the pole falls); every parameter is perturbed by N(0, 0.01^2)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(spec.n_params, dtype=torch.float64)
    (w1, _), (w2, _) = spec.slices()
    base[w1.start:w1.start + 4] = torch.tensor([0.01, 0.05, 1.0, 0.15], dtype=torch.float64)
    out = base[w2].view(2, spec.width)
    out[0, 0], out[1, 0] = -1.0, 1.0
    base[w2] = out.reshape(-1)
    noise = 0.01 * torch.randn(realizations, spec.n_params, generator=g, dtype=torch.float64)
    return (base + noise).to(dtype)


def _rates(steps: int, cpu: float, wall: float) -> dict:
    return {"env_steps": steps, "cpu_s": cpu, "wall_s": wall, "rate_cpu": steps / cpu,
            "rate_wall": steps / wall}


def negd_rate(spec: MLPSpec, params: torch.Tensor, episodes: int, seed: int) -> dict:
    env, policy = CartPole(), mlp_policy(spec)
    starts = episode_starts(env, seed, torch.arange(params.shape[0]), 0, episodes, params.dtype)
    c0, w0 = time.process_time(), time.perf_counter()
    _, lengths = rollout(env, policy, params, starts, lengths=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    steps = int(lengths.sum())
    return _rates(steps, cpu, wall)


def gymnasium_rate(spec: MLPSpec, params: torch.Tensor, episodes: int, vector_steps: int, seed: int) -> dict:
    try:
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
    except ImportError:
        raise NegdError("gymnasium: not installed; pip install gymnasium (the control bench compares "
                        "against its CartPoleVectorEnv)") from None
    n = params.shape[0] * episodes
    envs = CartPoleVectorEnv(num_envs=n)
    rows = params.repeat_interleave(episodes, dim=0)  # env i is driven by realization i // E
    obs, _ = envs.reset(seed=seed)
    done = torch.zeros(n, dtype=torch.bool)
    steps = 0
    c0, w0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        for _ in range(vector_steps):
            out = spec.forward(rows, torch.from_numpy(obs)[:, None, :])[:, 0]
            obs, _, terminated, truncated, _ = envs.step(out.argmax(dim=-1).numpy())
            steps += int((~done).sum())  # a step after done is gymnasium's autoreset: not an env step
            done = torch.from_numpy(terminated | truncated)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    envs.close()
    return _rates(steps, cpu, wall)


def measure(realizations: int = 64, episodes: int = 16, width: int = 8, vector_steps: int = 500,
            repeats: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    spec = MLPSpec(depth=1, width=width, in_features=4, out_features=2)
    params = _policies(spec, realizations, seed, dtype)
    negd_runs = [negd_rate(spec, params, episodes, seed + i) for i in range(repeats)]
    gym_runs = [gymnasium_rate(spec, params, episodes, vector_steps, seed + i) for i in range(repeats)]
    negd_cpu = statistics.median(r["rate_cpu"] for r in negd_runs)
    gym_cpu = statistics.median(r["rate_cpu"] for r in gym_runs)
    return {"workload": "control-cartpole", "realizations": realizations, "episodes": episodes,
            "policy": f"4-{width}-2 tanh MLP, greedy", "dtype": str(dtype).removeprefix("torch."),
            "vector_steps": vector_steps, "repeats": repeats, "seed": seed,
            "negd": negd_runs, "gymnasium": gym_runs,
            "negd_env_steps_per_cpu_s": negd_cpu, "gymnasium_env_steps_per_cpu_s": gym_cpu,
            "ratio_cpu": negd_cpu / gym_cpu,
            "ratio_wall": statistics.median(r["rate_wall"] for r in negd_runs)
            / statistics.median(r["rate_wall"] for r in gym_runs),
            "target_ratio": TARGET_RATIO}


def _markdown(results: list[dict], machine: dict) -> str:
    lines = ["# Control bench: batched torch CartPole (negd.envs) vs gymnasium CartPoleVectorEnv", "",
             "Environment steps (live episodes only) per CPU-second, same MLP policies on both sides, "
             "median of the repeats. `negd bench control` (src/negd/bench/control.py).", "",
             "| R x E | dtype | negd steps/CPU-s | gymnasium steps/CPU-s | ratio (CPU) | ratio (wall) | "
             f"target >= {TARGET_RATIO:g}x |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        ok = "met" if r["ratio_cpu"] >= r["target_ratio"] else "NOT met"
        lines.append(f"| {r['realizations']} x {r['episodes']} | {r['dtype']} | "
                     f"{r['negd_env_steps_per_cpu_s']:,.0f} | {r['gymnasium_env_steps_per_cpu_s']:,.0f} | "
                     f"{r['ratio_cpu']:.1f}x | {r['ratio_wall']:.1f}x | {ok} |")
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="negd bench control", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="16x16,64x16,256x16",
                   help="comma-separated RxE (realizations x episodes per realization)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vector-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of both sides (default 1)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-control"),
                   help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        if any(len(s) != 2 or min(s) < 1 for s in sizes):
            raise ValueError
    except ValueError:
        raise NegdError(f"--sizes: must be comma-separated RxE with R, E >= 1, got {args.sizes!r}") from None
    for name in ("threads", "repeats", "vector_steps", "width"):
        if getattr(args, name) < 1:
            raise NegdError(f"--{name.replace('_', '-')}: must be an integer >= 1, got {getattr(args, name)}")
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    results = []
    try:
        for r, e in sizes:
            res = measure(r, e, args.width, args.vector_steps, args.repeats, args.seed, dtype)
            print(f"R x E = {r} x {e}: negd {res['negd_env_steps_per_cpu_s']:,.0f} env-steps/CPU-s, "
                  f"gymnasium {res['gymnasium_env_steps_per_cpu_s']:,.0f}: {res['ratio_cpu']:.1f}x "
                  f"(wall {res['ratio_wall']:.1f}x)", flush=True)
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
