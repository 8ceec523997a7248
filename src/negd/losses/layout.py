"""Whether a sequential model's parameters are laid out exactly as the fast paths read them.

The fast paths (:mod:`negd.losses.sequential`, :meth:`negd.losses.models.MLPSpec.from_module`)
read the flat vector [N] of ``model.parameters()`` by layer type: each ``Linear``/``Conv`` layer
holds ``weight`` then ``bias`` (if any), layers follow the Sequential's order, and the layer's
output is the plain ``F.linear``/``F.conv`` of those two tensors. Anything that breaks one of those
assumptions makes the fast path compute another function than the model (issue 19, class 2a: a
``torch.nn.utils.weight_norm`` Linear holds ``bias, weight_g, weight_v`` and a pre-hook, and the
fast path read them as ``weight, bias``). :func:`plain_layout` accepts a model only when:

* the container is a plain ``nn.Sequential`` (its own ``forward``, no hooks);
* no layer appears twice and no parameter is shared between layers (``parameters()`` would list
  it once, so the flat vector would be shorter than the layers' reading of it);
* every layer is of exactly its class, without parametrizations, hooks, an instance ``forward``,
  child modules or buffers, and its registered parameters are exactly ``weight`` then ``bias``
  (``bias`` possibly None) for the layer types in ``weighted``, and none for the other layers;
* the concatenation of those tensors, layer by layer, is ``model.parameters()`` element for element.

Anything else goes to the general path (``functional_call`` + ``vmap``), which runs the module itself.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["plain_layout"]


def _hooked(module: nn.Module) -> bool:
    names = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
             "_forward_pre_hooks_with_kwargs")
    return any(getattr(module, name, None) for name in names)


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module

    names = ("_global_forward_hooks", "_global_forward_pre_hooks")
    return any(getattr(torch_module, name, None) for name in names)


def _declared_shapes(layer: nn.Module, weight: nn.Parameter, bias: nn.Parameter | None) -> bool:
    """The fast paths size a layer by its attributes (in/out features, channels, kernel): a weight of
    another shape assigned after construction must not be read with them."""
    if isinstance(layer, nn.Linear):
        want = (layer.out_features, layer.in_features)
        out = layer.out_features
    elif isinstance(layer, nn.modules.conv._ConvNd):
        want = (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)
        out = layer.out_channels
    else:
        return True
    return tuple(weight.shape) == want and (bias is None or tuple(bias.shape) == (out,))


def plain_layout(model: nn.Module, weighted: tuple[type[nn.Module], ...]) -> bool:
    """Whether ``model`` is a Sequential whose parameters are exactly the layers' (weight, bias) in
    order, and which computes what its layer types say (module docstring)."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return False
    if _hooked(model) or _global_hooks() or "forward" in vars(model) or any(True for _ in model.buffers()):
        return False
    layers = list(model)
    if len({id(m) for m in layers}) != len(layers) or len(list(model.children())) != len(layers):
        return False
    expected = []
    for layer in layers:
        if (parametrize.is_parametrized(layer) or _hooked(layer) or "forward" in vars(layer)
                or any(True for _ in layer.children()) or any(True for _ in layer.buffers())):
            return False
        registered = list(layer._parameters.items())
        if type(layer) in weighted:
            names = [name for name, _ in registered]
            if names not in (["weight", "bias"], ["weight"]):
                return False
            weight = registered[0][1]
            bias = registered[1][1] if len(registered) == 2 else None
            if not isinstance(weight, nn.Parameter) or layer.weight is not weight:
                return False
            if not _declared_shapes(layer, weight, bias):
                return False
            if getattr(layer, "bias", None) is not bias:
                return False
            if bias is not None and not isinstance(bias, nn.Parameter):
                return False
            expected += [weight] + ([bias] if bias is not None else [])
        elif registered:
            return False
    actual = list(model.parameters())
    return len(actual) == len(expected) and all(a is e for a, e in zip(actual, expected))
