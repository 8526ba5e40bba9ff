"""What a network looks at: Grad-CAM heat maps, with PyTorch hooks.

Grad-CAM (Selvaraju et al., ICCV 2017): the activations ``A`` of a late convolutional layer,
weighted by the mean gradient of the class score over each channel, summed over channels and
passed through a ReLU: ``relu(sum_k mean(dy/dA_k) * A_k)``; upsampled to the input and
scaled to [0, 1] per image.

The layer (:func:`cam_layer`): the one the model's registry entry names
(:attr:`cnnbench.models.registry.ModelInfo.cam_layer`: ResNet's ``layer4``, GoogLeNet's
``inception5b``, VGG's, AlexNet's and LeNet-5's ``features``, ...) when its output still has a
spatial extent (more than 1 x 1) at this input size; else the last of that layer's direct
children that has one (VGG-16 on 28 px MNIST: ``features.22``); a model the registry does not
know gets the last module, in the order the forward pass completes them, whose output has one.
For a network with no such layer, Grad-CAM has nothing to place, and the plain gradient
saliency ``max_c |dy/dx_c|`` of the input is drawn instead (``method`` says which).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["cam_layer", "grad_cam"]


def _spatial(shape: tuple | None) -> bool:
    return shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1


def _output_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple]]:
    """(name, output shape) of every named module, in the order the forward pass of one
    image completes them."""
    seen: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=name: seen.append((n, tuple(out.shape)))
                                     if isinstance(out, torch.Tensor) else None)
             for name, m in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def cam_layer(model: nn.Module, x: torch.Tensor, named: str | None = None) -> str | None:
    """The layer whose map Grad-CAM weighs for inputs like ``x`` (see the module docstring):
    ``named`` (the registry's) when its output is a map larger than 1 x 1, else the last of
    its direct children with such an output, else (``named`` ``None`` or none of it spatial)
    the last module with one: a whole block rather than one of its parts when the block's own
    output is spatial. ``None`` when no module's output is (then: gradient saliency)."""
    shapes = _output_shapes(model, x)
    spatial = [name for name, shape in shapes if _spatial(shape)]
    if named is not None:
        if named in spatial:
            return named
        depth = named.count(".") + 1
        children = [n for n in spatial if n.startswith(named + ".") and n.count(".") == depth]
        if children:
            return children[-1]
    return spatial[-1] if spatial else None


def grad_cam(model: nn.Module, x: torch.Tensor, *, target: torch.Tensor | None = None,
             layer: str | None = None) -> dict[str, Any]:
    """Heat maps (N x H x W in [0, 1], on ``x``'s device) of ``model`` for the inputs ``x``
    (normalised, N x C x H x W) and the classes ``target`` (default: the predicted ones), at
    ``layer`` (default: :func:`cam_layer` without a registry name). Returns ``maps``,
    ``classes`` (the explained class of each image), ``layer`` (``None`` for gradient
    saliency) and ``method`` (``grad-cam`` or ``saliency``). The model's mode (train or eval)
    is put back as it was."""
    was_training = model.training
    model.eval()
    layer = layer or cam_layer(model, x)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(layer is None)
            store: dict[str, torch.Tensor] = {}
            hook = None
            if layer is not None:
                module = model.get_submodule(layer)
                hook = module.register_forward_hook(lambda m, i, out: store.__setitem__("a", out))
            try:
                logits = model(x)
            finally:
                if hook is not None:
                    hook.remove()
            classes = logits.argmax(1) if target is None else target.to(logits.device)
            score = logits.gather(1, classes[:, None]).sum()
            if layer is None:
                (grad,) = torch.autograd.grad(score, x)
                maps = grad.abs().amax(1)
            else:
                acts = store["a"]
                (grad,) = torch.autograd.grad(score, acts)
                weights = grad.mean((2, 3), keepdim=True)
                maps = torch.relu((weights * acts).sum(1, keepdim=True))
                maps = nn.functional.interpolate(maps, size=x.shape[-2:], mode="bilinear",
                                                 align_corners=False)[:, 0]
    finally:
        model.train(was_training)
    maps = maps.detach().float()
    peak = maps.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    return {"maps": maps / peak, "classes": classes.detach(), "layer": layer,
            "method": "saliency" if layer is None else "grad-cam"}
