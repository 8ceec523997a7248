"""The paper's multilayer perceptrons and flat-parameter utilities.

:class:`MLPSpec` describes an MLP (``depth`` hidden layers of ``width`` units with one
activation, tanh as in the paper, or relu, gelu (exact, erf form) or identity; linear output,
optional output bias). Its flat parameter vector uses PyTorch's ``named_parameters``
order of the equivalent ``nn.Sequential(Linear, Tanh, ..., Linear)``: for each layer the
weight [out, in] row-major, then its bias. That is also the order of the authors' published
trajectories (``../shared/reference/mc-gd-correspondence``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from negd import rng
from negd.dtypes import parse_dtype
from negd.losses.layout import plain_layout
from negd.validation import NegdError, check_int, check_positive

__all__ = ["MLPSpec", "ACTIVATIONS", "flat_params", "load_flat_params", "paper_init", "torch_default_init"]


# name -> (nn.Module class, elementwise torch function) of the hidden-layer activations.
ACTIVATIONS: dict[str, tuple[type[nn.Module], Callable[[Tensor], Tensor]]] = {
    "tanh": (nn.Tanh, torch.tanh),
    "relu": (nn.ReLU, torch.relu),
    "gelu": (nn.GELU, torch.nn.functional.gelu),
    "identity": (nn.Identity, lambda h: h),
}


def _activation_name(module: nn.Module) -> str | None:
    """The ACTIVATIONS name of ``module``, or None (GELU only in its exact, non-tanh form)."""
    if isinstance(module, nn.GELU) and module.approximate != "none":
        return None
    return next((name for name, (cls, _) in ACTIVATIONS.items() if type(module) is cls), None)


@dataclass(frozen=True)
class MLPSpec:
    """An MLP: in_features -> depth x width (activation) -> out_features (linear)."""

    depth: int = 1
    width: int = 30
    in_features: int = 1
    out_features: int = 1
    output_bias: bool = True
    activation: str = "tanh"

    def __post_init__(self) -> None:
        check_int("depth", self.depth, 1)
        check_int("width", self.width, 1)
        check_int("in_features", self.in_features, 1)
        check_int("out_features", self.out_features, 1)
        if self.activation not in ACTIVATIONS:
            raise NegdError(f"activation: must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def layer_sizes(self) -> list[tuple[int, int, bool]]:
        """(fan_in, fan_out, has_bias) of every linear layer."""
        sizes = [(self.in_features, self.width, True)]
        sizes += [(self.width, self.width, True)] * (self.depth - 1)
        sizes.append((self.width, self.out_features, self.output_bias))
        return sizes

    @property
    def n_params(self) -> int:
        return sum(i * o + (o if b else 0) for i, o, b in self.layer_sizes)

    def slices(self) -> list[tuple[slice, slice | None]]:
        """Positions of (weight, bias) of each layer in the flat vector."""
        out, pos = [], 0
        for i, o, b in self.layer_sizes:
            w = slice(pos, pos + i * o)
            pos += i * o
            bs = slice(pos, pos + o) if b else None
            pos += o if b else 0
            out.append((w, bs))
        return out

    def module(self) -> nn.Sequential:
        """The equivalent ``nn.Sequential`` (PyTorch default initialization)."""
        layers: list[nn.Module] = []
        for k, (i, o, b) in enumerate(self.layer_sizes):
            layers.append(nn.Linear(i, o, bias=b))
            if k < self.depth:
                layers.append(ACTIVATIONS[self.activation][0]())
        return nn.Sequential(*layers)

    def forward(self, params: Tensor, x: Tensor, act: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Outputs [R, P, out] of R parameter vectors [R, N] on inputs x [P, in] (batched matmul);
        x [R, P, in] gives each realization its own inputs (minibatches, negd.losses.minibatch).

        ``act`` replaces the activation's torch function (e.g. by the C kernel's tanh).
        """
        act = ACTIVATIONS[self.activation][1] if act is None else act
        r = params.shape[0]
        h = x.to(params.dtype) if x.dim() == 3 else x.to(params.dtype).unsqueeze(0).expand(r, -1, -1)
        for k, ((i, o, _), (ws, bs)) in enumerate(zip(self.layer_sizes, self.slices())):
            w = params[:, ws].reshape(r, o, i).transpose(1, 2)  # [R, in, out]
            if bs is not None:
                h = torch.baddbmm(params[:, bs].unsqueeze(1), h, w)
            else:
                h = torch.bmm(h, w)
            if k < self.depth:
                h = act(h)
        return h

    def forward_t(self, params: Tensor, x_t: Tensor, act: Callable[[Tensor], Tensor] | None = None
                  ) -> Tensor:
        """:meth:`forward` in the feature-major layout of the C kernel: inputs x_t [in, P] (shared by
        all realizations), outputs [R, out, P].

        The first layer is one matrix product of all R weight matrices stacked, [R*width, in] x
        [in, P]; later layers are batched products [R, o, i] x [R, i, P]. For few outputs (a
        classifier's) this is ~4x faster than the row-major [P, i] x [i, o] products (measured on the
        digits 64-32-10 MLP, R = 32), whose output dimension is too small for the GEMM library.
        """
        act = ACTIVATIONS[self.activation][1] if act is None else act
        r = params.shape[0]
        h = x_t.to(params.dtype)
        for k, ((i, o, _), (ws, bs)) in enumerate(zip(self.layer_sizes, self.slices())):
            w = params[:, ws].reshape(r, o, i)
            if k == 0:
                stacked = w.reshape(r * o, i)
                h = (torch.addmm(params[:, bs].reshape(r * o, 1), stacked, h) if bs is not None
                     else torch.mm(stacked, h)).reshape(r, o, -1)
            elif bs is not None:
                h = torch.baddbmm(params[:, bs].unsqueeze(2), w, h)
            else:
                h = torch.bmm(w, h)
            if k < self.depth:
                h = act(h)
        return h

    @staticmethod
    def from_module(model: nn.Module) -> MLPSpec | None:
        """The spec of ``model`` if it is a Sequential of this form, else None: an optional leading
        ``nn.Flatten()``, then Linear and one kind of activation (ACTIVATIONS) alternating."""
        if not plain_layout(model, (nn.Linear,)):
            return None  # parametrized, hooked, shared or re-registered parameters (layout.py)
        mods = list(model)
        if mods and isinstance(mods[0], nn.Flatten) and (mods[0].start_dim, mods[0].end_dim) == (1, -1):
            mods = mods[1:]
        if len(mods) < 3 or len(mods) % 2 == 0:
            return None
        linears, acts = mods[0::2], mods[1::2]
        if not all(type(m) is nn.Linear for m in linears):
            return None
        names = {_activation_name(m) for m in acts}
        if len(names) != 1 or None in names:
            return None
        width = linears[0].out_features
        if any(m.bias is None for m in linears[:-1]):
            return None
        if any(m.in_features != width or m.out_features != width for m in linears[1:-1]):
            return None
        if linears[-1].in_features != width:
            return None
        return MLPSpec(depth=len(acts), width=width, in_features=linears[0].in_features,
                       out_features=linears[-1].out_features,
                       output_bias=linears[-1].bias is not None, activation=names.pop())


def flat_params(model: nn.Module) -> Tensor:
    """All parameters of ``model`` as one flat vector (``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def load_flat_params(model: nn.Module, flat: Tensor) -> nn.Module:
    """Write a flat vector [N] into ``model``'s parameters (inverse of :func:`flat_params`)."""
    n = sum(p.numel() for p in model.parameters())
    if flat.dim() != 1 or flat.shape[0] != n:
        raise NegdError(f"flat: must have shape [{n}] for this model, got {list(flat.shape)}")
    pos = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[pos:pos + p.numel()].reshape(p.shape))
            pos += p.numel()
    return model


def paper_init(n_params: int, sigma0: float, *, seed: int = 0, realizations: int | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Paper-style initialization x_i ~ N(0, sigma0^2), float32 (default) or float64 ``dtype``.

    Returns one shared vector [N] when ``realizations`` is None (the paper's set-up: every
    realization starts from the same network), else independent draws [R, N] (realization r
    gets the same row whatever R). The float64 start is the float32 one, widened.
    """
    check_positive("sigma0", sigma0)
    dtype = parse_dtype("dtype", dtype)
    rows = 1 if realizations is None else check_int("realizations", realizations)
    z = rng.normal(seed, torch.arange(rows), 0, n_params, stream=rng.STREAM_INIT) * sigma0
    z = z.to(dtype)
    return z[0] if realizations is None else z


def torch_default_init(spec: MLPSpec, *, seed: int = 0, realizations: int | None = None) -> Tensor:
    """PyTorch's default ``nn.Linear`` initialization (Kaiming-uniform weights, uniform biases).

    One shared vector [N] when ``realizations`` is None, else [R, N] with row r drawn from
    torch's generator seeded by a Philox hash of (seed, r): a row does not depend on R, and
    distinct (seed, r) pairs get unrelated seeds.
    """
    if realizations is None:
        rows = [seed]
    else:
        r = torch.arange(check_int("realizations", realizations), dtype=torch.int64)
        x0, x1, _, _ = rng.philox4x32(r & 0xFFFFFFFF, r >> 32, torch.zeros_like(r),
                                      torch.full_like(r, rng.STREAM_INIT), seed)
        rows = [int(a) | (int(b) & 0x7FFFFFFF) << 32 for a, b in zip(x0, x1)]
    out = []
    with torch.random.fork_rng(devices=[]):  # leave the caller's global generator alone
        for s in rows:
            torch.manual_seed(s)
            out.append(flat_params(spec.module()))
    return out[0] if realizations is None else torch.stack(out)
