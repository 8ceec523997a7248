"""An ensemble of neuroevolution realizations next to its gradient-descent twin (the paper's shallow net).

    python examples/ensemble_and_twin.py [--steps N] [--realizations R]

For small sigma at beta = inf, the ensemble mean of neuroevolution follows normalized gradient
descent with learning rate sigma / sqrt(2 pi) (Whitelam et al., Nat. Commun. 12, 6317, 2021).
Prints both losses and Delta, the mean squared distance between the NE mean and the GD parameters.
"""

import argparse
import math

import negd


def main(steps: int, realizations: int) -> dict:
    spec = negd.MLPSpec(depth=1, width=30, output_bias=False)  # the paper's 1-30-1 tanh net
    task = negd.get_task("sin2pi")
    loss = negd.MLPLoss(spec, task.inputs, task.targets)
    x0 = negd.paper_init(spec.n_params, sigma0=1e-2, seed=0)

    ne = negd.Neuroevolution(sigma=math.sqrt(2 * math.pi) * 1e-4, beta=math.inf)
    gd = negd.gradient_twin(ne, noise=False)  # normalized GD, alpha = sigma / sqrt(2 pi)
    ne_state = negd.advance(ne, ne.init(x0, loss, realizations=realizations, seed=1), loss, steps)
    gd_state = negd.advance(gd, gd.init(x0, loss), loss, steps)

    delta = float(((ne_state.params.double().mean(0) - gd_state.params[0].double()) ** 2).mean())
    out = {"ne_loss": float(ne_state.loss.mean()), "gd_loss": float(gd_state.loss[0]), "delta": delta}
    print(f"after {steps} steps: NE mean loss {out['ne_loss']:.6f} (R = {realizations}), "
          f"GD loss {out['gd_loss']:.6f}, Delta {delta:.3e}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps of both (default 2000)")
    parser.add_argument("--realizations", type=int, default=200, help="NE realizations (default 200)")
    args = parser.parse_args()
    main(args.steps, args.realizations)
