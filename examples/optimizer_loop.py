"""Neuroevolution as a torch.optim optimizer in an ordinary training loop (docs/optimizer.md).

    python examples/optimizer_loop.py [--steps N]

Fits sin(pi x) with a 1-40-1 tanh network: each step mutates every parameter by sigma * N(0, 1) and
keeps the mutation iff the loss did not go up (beta = inf; Whitelam et al., Nat. Commun. 12, 6317).
"""

import argparse
import math

import torch
from torch import nn

import negd


def main(steps: int) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 40), nn.Tanh(), nn.Linear(40, 1))
    x = torch.linspace(-1, 1, 1001)[:, None]
    y = torch.sin(math.pi * x)
    opt = negd.optim.Neuroevolution(model.parameters(), sigma=1e-2, beta=math.inf, seed=0)

    def closure():
        return nn.functional.mse_loss(model(x), y)  # no zero_grad, no backward

    first = float(closure())
    for step in range(steps):
        loss = opt.step(closure)
        if step % max(1, steps // 5) == 0:
            print(f"step {step:6d}  loss {loss.item():.5f}  acceptance {opt.acceptance_rate:.2f}")
    print(f"loss {first:.5f} -> {opt.loss.item():.5f} after {steps} steps")
    return opt.loss.item()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="optimizer steps (default 5000)")
    main(parser.parse_args().steps)
