"""MNIST-1D: ten one-dimensional digit templates, randomly transformed (Greydanus 2020).

S. Greydanus, "Scaling down deep learning", arXiv:2011.14439 (2020), github.com/greydanus/mnist1d.
Each example is one of ten hand-made 12-point templates, whitened, pushed through the original
``transform`` with its default arguments, in this order:

1. pad with p zeros, p uniform in [36, 60] (the template gets a 1e-8 offset so it stays non-zero);
2. interpolate linearly to 72 points (a random dilation: 12 + p points stretched to 72);
3. scale by 1 + 0.4 (u - 1/2);
4. translate (circular shift to the right) by k, uniform in 0..47;
5. where the signal is zero, correlated noise: 0.25 N(0, 1) smoothed by a Gaussian filter of
   standard deviation 2 (radius 8, edges reflected as scipy's ``gaussian_filter`` mode "reflect");
6. add 0.02 N(0, 1) everywhere;
7. shear: subtract c * linspace(-1/2, 1/2, 72), c = 0.75 (u - 1/2);
8. interpolate linearly to the final 40 points.

5000 examples, 500 of each digit; 1000 of them form the test split, as in the original.

Deviations from the original generator (so the numbers are not the published data set): every
random number comes from :mod:`negd.rng` (example i is "realization" i, each random quantity its
own counter step, stream :data:`negd.tasks.base.STREAM_DATA`) instead of NumPy's global Mersenne
Twister, which makes the data a pure function of the seed and lets it be generated in one
vectorized pass; and the examples are split into train and test by
:func:`negd.tasks.base.split_indices` rather than by shuffling and cutting at 80%.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from negd import rng
from negd.tasks.base import STREAM_DATA, Task, split_indices
from negd.validation import check_int

__all__ = ["mnist1d", "templates"]

_TEMPLATES = [
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]
TEMPLATE_LEN, PADDING, DILATED_LEN, FINAL_LEN = 12, (36, 60), 72, 40
SCALE_COEFF, MAX_TRANSLATION, CORR_NOISE, IID_NOISE, SHEAR_SCALE = 0.4, 48, 0.25, 2e-2, 0.75
FILTER_SIGMA, FILTER_RADIUS = 2.0, 8  # scipy: radius = int(truncate (4) * sigma + 0.5)
N_SAMPLES, N_TEST, EPS = 5000, 1000, 1e-8
# Counter steps of the random quantities of one example (module docstring).
_PAD, _SCALE, _SHIFT, _CORR, _IID, _SHEAR = range(6)


def templates() -> Tensor:
    """The ten templates [10, 12], whitened (zero mean, unit std), starting at 0, divided by 6."""
    x = torch.tensor(_TEMPLATES, dtype=torch.float64)
    x = x - x.mean(dim=1, keepdim=True)
    x = x / x.std(dim=1, unbiased=False, keepdim=True)
    return (x - x[:, :1]) / 6.0


def _interpolate(x: Tensor, lengths: Tensor, n_out: int) -> Tensor:
    """Linear interpolation of the first ``lengths[i]`` points of row i onto ``n_out`` points
    (np.interp on linspace(0, 1, length) -> linspace(0, 1, n_out), as scipy's interp1d)."""
    j = torch.arange(n_out, dtype=torch.float64)
    q = j[None, :] * (lengths[:, None].double() - 1) / (n_out - 1)
    lo = q.floor().long().clamp(max=x.shape[1] - 1)
    hi = (lo + 1).minimum(lengths[:, None] - 1)
    frac = q - lo
    return x.gather(1, lo) * (1 - frac) + x.gather(1, hi) * frac


def _gaussian_filter(x: Tensor) -> Tensor:
    """scipy.ndimage.gaussian_filter1d(x, 2) along rows, mode "reflect" (d c b a | a b c d | d c b a)."""
    k = torch.arange(-FILTER_RADIUS, FILTER_RADIUS + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / FILTER_SIGMA) ** 2)
    w = w / w.sum()
    r = FILTER_RADIUS
    padded = torch.cat((x[:, :r].flip(1), x, x[:, -r:].flip(1)), dim=1)
    return torch.nn.functional.conv1d(padded[:, None, :], w[None, None, :])[:, 0, :]


def mnist1d(samples: int = N_SAMPLES, seed: int = 0) -> Task:
    samples = check_int("samples", samples, 20)
    n = samples - samples % 10
    labels = torch.arange(10).repeat_interleave(n // 10)
    ids = torch.arange(n)
    uniform = lambda step: rng.uniform(seed, ids, step, stream=STREAM_DATA)  # noqa: E731
    normal = lambda step: rng.normal(seed, ids, step, DILATED_LEN, stream=STREAM_DATA).double()  # noqa: E731

    # 1-2: pad by p zeros and dilate the 12 + p points to 72.
    pad = PADDING[0] + (uniform(_PAD) * (PADDING[1] - PADDING[0] + 1)).floor().long()
    signal = torch.zeros(n, DILATED_LEN, dtype=torch.float64)
    signal[:, :TEMPLATE_LEN] = templates()[labels] + EPS
    x = _interpolate(signal, TEMPLATE_LEN + pad, DILATED_LEN)
    # 3-4: scale, then shift right circularly by k (np.concatenate([x[-k:], x[:-k]])).
    x = x * (1 + SCALE_COEFF * (uniform(_SCALE)[:, None] - 0.5))
    shift = (uniform(_SHIFT) * MAX_TRANSLATION).floor().long()
    source = (torch.arange(DILATED_LEN)[None, :] - shift[:, None]) % DILATED_LEN
    x = x.gather(1, source)
    # 5-6: correlated noise where the signal is zero, white noise everywhere.
    corr = _gaussian_filter(CORR_NOISE * normal(_CORR))
    x = torch.where(x != 0, x, corr) + IID_NOISE * normal(_IID)
    # 7-8: shear, subsample to 40 points.
    coeff = SHEAR_SCALE * (uniform(_SHEAR) - 0.5)
    x = x - coeff[:, None] * torch.linspace(-0.5, 0.5, DILATED_LEN, dtype=torch.float64)[None, :]
    x = _interpolate(x, torch.full((n,), DILATED_LEN), FINAL_LEN).float()
    n_test = max(1, round(n * N_TEST / N_SAMPLES))
    train, test = split_indices(n, n_test, seed)
    return Task("mnist1d", x[train], labels[train], x[test], labels[test], n_classes=10,
                input_shape=(1, FINAL_LEN))


assert math.isclose(sum(map(len, _TEMPLATES)), 10 * TEMPLATE_LEN)
