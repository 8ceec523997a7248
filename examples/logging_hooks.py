"""Logging hooks: a JSONL log of negd.advance, of the optimizer, and (optionally) TensorBoard.

    python examples/logging_hooks.py [--steps N] [--out DIR] [--tensorboard]

One callback protocol (negd.callbacks.Event) for negd.advance, the experiment runner and the
optimizers; JSONLLogger is built in, TensorBoard/MLflow/W&B loggers are optional extras.
"""

import argparse
import math
import tempfile
from pathlib import Path

import torch
from torch import nn

import negd
from negd.callbacks import JSONLLogger
from negd.callbacks.jsonl import read_jsonl


def main(steps: int, out: Path, tensorboard: bool) -> None:
    loggers = [JSONLLogger(out / "metrics.jsonl", append=False)]
    if tensorboard:  # pip install 'negd[tensorboard]'; then: tensorboard --logdir DIR/tb
        from negd.callbacks.tensorboard import TensorBoardLogger

        loggers.append(TensorBoardLogger(out / "tb"))

    # An ensemble of 100 realizations: an event every steps/4 steps.
    spec = negd.MLPSpec(depth=1, width=30, output_bias=False)
    task = negd.get_task("sin2pi")
    loss = negd.MLPLoss(spec, task.inputs, task.targets)
    rule = negd.Neuroevolution(sigma=1e-3, beta=math.inf)
    state = rule.init(negd.paper_init(spec.n_params, 1e-2, seed=0), loss, realizations=100, seed=1)
    negd.advance(rule, state, loss, steps, callbacks=loggers, log_every=max(1, steps // 4))

    # One model with the optimizer: an event every steps/4 steps too.
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.linspace(-1, 1, 200)[:, None]
    opt = negd.optim.Neuroevolution(model.parameters(), sigma=1e-2, callbacks=loggers,
                                    log_every=max(1, steps // 4))
    for _ in range(steps):
        opt.step(lambda: nn.functional.mse_loss(model(x), torch.sin(math.pi * x)))

    for logger in loggers:
        logger.close()
    for record in read_jsonl(out / "metrics.jsonl"):
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["metrics"].items()))
        print(f"{record['source']:8s} step {record['step']:6d}: {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps of each part (default 2000)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the logs (default: a temporary)")
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(args.steps, Path(tmp), args.tensorboard)
    else:
        main(args.steps, args.out, args.tensorboard)
