"""What a network looks at: Grad-CAM heat maps, with PyTorch hooks.

Grad-CAM (Selvaraju et al., ICCV 2017): the activations ``A`` of a late convolutional layer,
weighted by the mean gradient of the class score over each channel, summed over channels and
passed through a ReLU: ``relu(sum_k mean(dy/dA_k) * A_k)``; upsampled to the input and
scaled to [0, 1] per image. The layer is the model's ``cam_layer`` when its registry entry
names one, else the last layer whose output still has a spatial extent (more than 1 x 1) in
the order the forward pass completes them (:func:`find_cam_layer`: ResNet's ``layer4``,
GoogLeNet's ``inception5b``, VGG's and LeNet-5's ``features``). For a network with no such layer, Grad-CAM has nothing to
place, and the plain gradient saliency ``max_c |dy/dx_c|`` of the input is drawn instead
(``method`` says which).

``overlay`` draws a heat map over its image as a PNG (matplotlib's ``jet`` at 45 %).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def find_cam_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """The name of the last module (in the order the forward pass completes them, blocks
    included) whose output is a 4-D map larger than 1 x 1: a whole block rather than one of
    its parts (GoogLeNet's ``inception5b``, not its last branch; ResNet's ``layer4``);
    ``None`` when there is none (then: gradient saliency)."""
    seen: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=name: seen.append((n, tuple(out.shape)))
                                     if isinstance(out, torch.Tensor) else None)
             for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    maps = [name for name, shape in seen if len(shape) == 4 and shape[2] * shape[3] > 1]
    return maps[-1] if maps else None


def _cam_layer_of(model_name: str) -> str | None:
    from cnnbench.models.registry import model_info

    try:
        return getattr(model_info(model_name), "cam_layer", None)
    except Exception:  # noqa: BLE001 - an unregistered model: the rule decides
        return None


def grad_cam(model: nn.Module, x: torch.Tensor, *, target: torch.Tensor | None = None,
             layer: str | None = None) -> dict[str, Any]:
    """Heat maps (N x H x W in [0, 1], on ``x``'s device) of ``model`` for the inputs ``x``
    (normalised, N x C x H x W) and the classes ``target`` (default: the predicted ones).
    Returns ``maps``, ``classes`` (the explained class of each image), ``layer`` (``None`` for
    gradient saliency) and ``method`` (``grad-cam`` or ``saliency``)."""
    was_training = model.training
    model.eval()
    layer = layer or find_cam_layer(model, x)
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


def explain_images(trained, images: torch.Tensor) -> dict[str, Any]:
    """:func:`grad_cam` of a :class:`cnnbench.inference.model.TrainedModel` for uint8
    ``images`` (at the dataset's image size), at the model's input size, for its predicted
    classes; the maps come back on the CPU."""
    x = torch.cat(list(trained.inputs(images, batch_size=len(images))))
    result = grad_cam(trained.model, x, layer=_cam_layer_of(trained.config.model))
    result["maps"] = result["maps"].cpu()
    result["classes"] = result["classes"].cpu()
    return result


def overlay(image: torch.Tensor, heat: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """A PNG of ``image`` (uint8 C x H x W) with ``heat`` (H' x W' in [0, 1], resized to it)
    drawn over it."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = image.shape
    heat = nn.functional.interpolate(heat[None, None].float(), size=(h, w), mode="bilinear",
                                     align_corners=False)[0, 0]
    fig = Figure(figsize=(3.2, 3.4))
    ax = fig.subplots()
    if c == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.imshow(heat.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def overlay_png(image: torch.Tensor, heat: torch.Tensor, scale: int = 4) -> bytes:
    """PNG bytes of ``image`` (uint8 C x H x W) blended with ``heat`` (in [0, 1], resized to
    it) in matplotlib's ``jet`` colours, ``scale`` times larger (nearest): for the serve page."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    c, h, w = image.shape
    heat = nn.functional.interpolate(heat[None, None].float(), size=(h, w), mode="bilinear",
                                     align_corners=False)[0, 0].clamp(0, 1)
    colour = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).float()  # H x W x 3
    base = image.float().permute(1, 2, 0).expand(h, w, 3) / 255
    blended = (0.55 * base + 0.45 * colour).clamp(0, 1)
    picture = Image.fromarray((blended * 255).round().to(torch.uint8).numpy())
    picture = picture.resize((w * scale, h * scale), Image.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()
