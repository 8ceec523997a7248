"""R realizations of an ``nn.Sequential`` evaluated layer by layer on batched weights.

The fast path of :class:`negd.losses.module.ModuleLoss` for sequential models built from layers whose
batched form is known: for flat parameters [R, N] and inputs [P, ...] every layer maps the
activations of all R realizations at once, [R, P, ...] -> [R, P, ...]:

* ``Linear``: one batched matrix product, computed as W [R, o, i] x h^T [R, i, P] (the output
  dimension of a classifier is small, and this orientation gives the GEMM library long rows);
  the first layer, whose input is shared, is one product of all R weight matrices stacked;
* ``Conv1d``/``Conv2d``: the R realizations as the R groups of one grouped convolution: the
  activations [R, P, C, ...] become [P, R*C, ...] and the weights [R*O, C, ...] with
  ``groups = R``; on a shared input (a first layer) the R filter banks are one convolution with
  R*O output channels;
* layers without parameters that act on each example alone (activations, ``Flatten``,
  pooling): applied to the [R*P, ...] view.

Anything else (BatchNorm, Dropout, custom modules, a layer with unusual options, parameters not
laid out as (weight, bias) of each layer in order: :func:`negd.losses.layout.plain_layout`) makes
:func:`compile_sequential` return None and ModuleLoss uses ``torch.func.vmap`` instead.
The outputs are those of ``functional_call`` of the model to float tolerance (test_sequential.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negd.losses.layout import plain_layout

__all__ = ["compile_sequential", "BatchedSequential", "PER_EXAMPLE_LAYERS"]

# Parameter-free layers that act on every example independently (safe on an [R*P, ...] view).
PER_EXAMPLE_LAYERS = (nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid, nn.SiLU, nn.ELU, nn.LeakyReLU,
                      nn.Softplus, nn.Identity, nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d,
                      nn.AvgPool1d, nn.AvgPool2d)

# (params [R, N], h, shared) -> h [R, P, ...]; shared: h is still the one input [P, ...] of all R.
Layer = Callable[[Tensor, Tensor, bool], Tensor]


def _kernel_tanh(h: Tensor) -> Tensor | None:
    """The C kernel's float32 tanh (5x torch's here) where it applies, else None."""
    if h.dtype != torch.float32 or h.device.type != "cpu" or (h.requires_grad and torch.is_grad_enabled()):
        return None
    from negd import kernels  # late import: built on first use

    return kernels.tanh(h) if kernels.available() else None


def _linear(w: slice, b: slice | None, out_f: int, in_f: int) -> Layer:
    def apply(params: Tensor, h: Tensor, shared: bool) -> Tensor:
        r = params.shape[0]
        weight = params[:, w].reshape(r, out_f, in_f)
        bias = params[:, b].reshape(r, out_f, 1) if b is not None else None
        if shared:  # h [P, ..., in]: all R weight matrices stacked, one product [R*o, in] x [in, P...]
            stacked = weight.reshape(r * out_f, in_f)
            flat = h.reshape(-1, in_f).t()
            out = torch.mm(stacked, flat) if bias is None else torch.addmm(bias.reshape(-1, 1), stacked, flat)
            return out.reshape(r, out_f, -1).transpose(1, 2).reshape(r, *h.shape[:-1], out_f)
        flat = h.reshape(r, -1, in_f).transpose(1, 2)  # [R, in, P...]
        out = torch.bmm(weight, flat) if bias is None else torch.baddbmm(bias, weight, flat)
        return out.transpose(1, 2).reshape(r, *h.shape[1:-1], out_f)  # [R, P, ..., o] (a view for 3-D h)
    return apply


def _conv(module: nn.Conv1d | nn.Conv2d, w: slice, b: slice | None) -> Layer:
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    wshape = module.weight.shape  # [O, C/groups, k...]
    groups = module.groups
    columns = _SharedColumns(module)

    def apply(params: Tensor, h: Tensor, shared: bool) -> Tensor:
        r = params.shape[0]
        weight = params[:, w].reshape(r * wshape[0], *wshape[1:])
        bias = params[:, b].reshape(-1) if b is not None else None
        if shared and groups == 1:  # h [P, C, ...]: im2col of the shared input, one matrix product
            return columns.apply(h, weight.reshape(r, wshape[0], -1), bias)
        if shared:  # R filter banks as one grouped convolution of the repeated input
            out = conv(h.repeat(1, r, *([1] * (h.dim() - 2))), weight, bias, groups=groups * r, **kw)
        else:  # h [R, P, C, ...] -> [P, R*C, ...], one group per realization
            p = h.shape[1]
            grouped = h.transpose(0, 1).reshape(p, -1, *h.shape[3:])
            out = conv(grouped, weight, bias, groups=groups * r, **kw)
        p = out.shape[0]
        return out.reshape(p, r, wshape[0], *out.shape[2:]).transpose(0, 1)  # [R, P, O, ...]
    return apply


class _SharedColumns:
    """A convolution of one shared input by R filter banks as a matrix product (im2col).

    The columns of the input, U [C*k*k, P*L] (``F.unfold``; a Conv1d is a Conv2d of height 1) and a
    row of ones, are computed once per input tensor and kept; the outputs of all R realizations are
    one product [R*O, C*k*k + 1] x [U; 1] (the last weight column the bias), laid out
    [R, O, P, L] and returned as the view [R, P, O, L] (the next layer's copy, e.g. the kernel
    tanh's, makes it contiguous). On 8x8 digit images this is
    several times faster than one convolution with R*O output channels (measured, R = 32), whose
    direct algorithm is inefficient for few input channels; of the two orientations of the
    product this one, followed by the layout change, was 1.5-2x faster (measured, chunks of 4).
    """

    def __init__(self, module: nn.Conv1d | nn.Conv2d) -> None:
        two_d = lambda v: (1, v[0]) if len(v) == 1 else tuple(v)  # noqa: E731
        self.one_d = isinstance(module, nn.Conv1d)
        self.kw = dict(kernel_size=two_d(module.kernel_size), dilation=two_d(module.dilation),
                       padding=(0, module.padding[0]) if self.one_d else tuple(module.padding),
                       stride=two_d(module.stride))
        self.key: tuple | None = None
        self.columns: Tensor | None = None
        self.spatial: tuple[int, ...] = ()

    def _columns(self, h: Tensor) -> Tensor:
        key = (h.data_ptr(), h.shape, h.dtype, h.device, h._version)
        if key != self.key or self.columns is None:
            x = h.unsqueeze(2) if self.one_d else h
            cols = F.unfold(x, **self.kw)  # [P, C*k*k, L]
            columns = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # [C*k*k, P*L]
            # A row of ones: the bias becomes one more column of the weights, so the product adds
            # it (a separate broadcast of the bias into the output cost as much as the product).
            columns = torch.cat((columns, torch.ones_like(columns[:1])))
            kh, pad, dil, stride = (self.kw[k][0] for k in ("kernel_size", "padding", "dilation", "stride"))
            height = (x.shape[2] + 2 * pad - dil * (kh - 1) - 1) // stride + 1
            self.spatial = (cols.shape[2],) if self.one_d else (height, cols.shape[2] // height)
            if h.requires_grad:  # never keep a graph alive between calls
                return columns
            self.key, self.columns = key, columns
        return self.columns

    def channel_major(self, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """h [P, C, ...], weight [R, O, C*k*k], bias [R*O] -> contiguous [R, O, P, L]."""
        cols = self._columns(h)
        r, o = weight.shape[:2]
        flat = weight.reshape(r * o, -1)
        if bias is None:
            out = torch.mm(flat, cols[:-1])  # [R*O, P*L]
        else:
            out = torch.mm(torch.cat((flat, bias[:, None]), dim=1), cols)
        return out.view(r, o, h.shape[0], -1)

    def apply(self, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """h [P, C, ...], weight [R, O, C*k*k], bias [R*O] -> [R, P, O, ...] (a strided view)."""
        return self.channel_major(h, weight, bias).transpose(1, 2).unflatten(-1, self.spatial)


ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Identity)


def _conv_head(modules: list[nn.Module]) -> tuple[Layer, int] | None:
    """The fused form of a first convolution, elementwise activations, Flatten and Linear, or None.

    The convolution's output stays channel-major, [R, O, P, L] (:meth:`_SharedColumns.channel_major`),
    the activations act on it in place of layout, and the Linear layer reads it as it is:
    out_r = sum_o W_r[:, o, :] x a_r[o]^T, one batched product per output channel o, since the
    flattened index of (o, l) is o*L + l. This skips the copy to [R, P, O, L] that the layer-by-layer
    path makes (one full pass over the largest activation).
    """
    k = 1
    while k < len(modules) and type(modules[k]) in ELEMENTWISE:
        k += 1
    if len(modules) < k + 2 or type(modules[0]) not in (nn.Conv1d, nn.Conv2d):
        return None
    conv, flatten, linear = modules[0], modules[k], modules[k + 1]
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    if type(flatten) is not nn.Flatten or (flatten.start_dim, flatten.end_dim) != (1, -1):
        return None
    if type(linear) is not nn.Linear or linear.in_features % conv.out_channels:
        return None
    acts = [_per_example(m) for m in modules[1:k]]
    o_ch, n_w = conv.out_channels, conv.weight.numel()
    w_conv = slice(0, n_w)
    b_conv = slice(n_w, n_w + o_ch) if conv.bias is not None else None
    pos = n_w + (o_ch if conv.bias is not None else 0)
    outs, ins = linear.out_features, linear.in_features
    w_lin = slice(pos, pos + outs * ins)
    b_lin = slice(pos + outs * ins, pos + outs * ins + outs) if linear.bias is not None else None
    columns = _SharedColumns(conv)

    def apply(params: Tensor, h: Tensor, shared: bool) -> Tensor:
        r, p = params.shape[0], h.shape[0]
        a = columns.channel_major(h, params[:, w_conv].reshape(r, o_ch, -1),
                                  params[:, b_conv].reshape(-1) if b_conv is not None else None)
        for act in acts:  # elementwise: any layout; [R*O, P, L] keeps the tanh fast path contiguous
            a = act(params, a, False)
        length = a.shape[-1]
        if ins != o_ch * length:
            raise RuntimeError(f"Linear expects {ins} features, the convolution gives {o_ch * length}")
        weight = params[:, w_lin].reshape(r, outs, o_ch, length)
        out = (params[:, b_lin].reshape(r, outs, 1).expand(r, outs, p).contiguous() if b_lin is not None
               else torch.zeros(r, outs, p, dtype=a.dtype, device=a.device))
        for o in range(o_ch):
            out = torch.baddbmm(out, weight[:, :, o, :], a[:, o].transpose(1, 2))
        return out.transpose(1, 2)  # [R, P, outs], a view of [R, outs, P]
    return apply, k + 2


def _per_example(module: nn.Module) -> Layer:
    is_tanh = type(module) is nn.Tanh

    def apply(params: Tensor, h: Tensor, shared: bool) -> Tensor:
        if shared:  # no realization dimension yet: one evaluation serves all of them
            return module(h)
        r, p = h.shape[:2]
        if is_tanh:
            fast = _kernel_tanh(h)
            if fast is not None:
                return fast
        out = module(h.reshape(r * p, *h.shape[2:]))
        return out.reshape(r, p, *out.shape[1:])
    return apply


def _acts_per_example(module: nn.Module) -> bool:
    """Flatten/Unflatten must leave the example dimension (0) alone."""
    if isinstance(module, nn.Flatten):
        return module.start_dim >= 1
    if isinstance(module, nn.Unflatten):
        return isinstance(module.dim, int) and module.dim >= 1
    return True


class BatchedSequential:
    """Outputs [R, P, ...] of R flat parameter vectors [R, N] of a sequential model (module docstring)."""

    def __init__(self, layers: list[tuple[Layer, bool]]) -> None:
        self.layers = layers  # (layer, has parameters)

    def __call__(self, params: Tensor, inputs: Tensor) -> Tensor:
        h, shared = inputs.to(params.dtype), True
        for layer, has_params in self.layers:
            h = layer(params, h, shared)
            shared = shared and not has_params  # a parameter-free layer keeps the input shared
        if shared:  # a model without parameters: every realization has the same output
            h = h.unsqueeze(0).expand(params.shape[0], *h.shape)
        return h


def compile_sequential(model: nn.Module) -> BatchedSequential | None:
    """The batched form of ``model`` if every layer is supported (module docstring), else None."""
    if not plain_layout(model, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return None  # parametrized, hooked, shared or re-registered parameters: the general path
    modules = list(model)
    head = _conv_head(modules)
    layers, pos = [], 0
    if head is not None:
        layers.append((head[0], True))
        pos = sum(p.numel() for m in modules[:head[1]] for p in m.parameters())
        modules = modules[head[1]:]
    for module in modules:
        if any(True for _ in module.buffers()):
            return None
        if type(module) is nn.Linear:
            i, o = module.in_features, module.out_features
            w = slice(pos, pos + i * o)
            pos += i * o
            b = slice(pos, pos + o) if module.bias is not None else None
            pos += o if module.bias is not None else 0
            layers.append((_linear(w, b, o, i), True))
        elif type(module) in (nn.Conv1d, nn.Conv2d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                return None
            n = module.weight.numel()
            w = slice(pos, pos + n)
            pos += n
            b = slice(pos, pos + module.out_channels) if module.bias is not None else None
            pos += module.out_channels if module.bias is not None else 0
            layers.append((_conv(module, w, b), True))
        elif type(module) in PER_EXAMPLE_LAYERS:
            if any(True for _ in module.parameters()) or not _acts_per_example(module):
                return None
            layers.append((_per_example(module), False))
        else:
            return None
    return BatchedSequential(layers)
