"""What a network looks at, drawn: Grad-CAM heat maps (:mod:`cnnbench.models.cam`) of a
trained model's answers, for ``predict --explain`` and the ``serve`` page.

``overlay`` draws a heat map over its image as a PNG (matplotlib's ``jet`` at 45 %);
``overlay_png`` gives the same blend as PNG bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.models.cam import cam_layer, grad_cam
from cnnbench.models.registry import model_info


def explain_images(trained, images: torch.Tensor) -> dict[str, Any]:
    """:func:`grad_cam` of a :class:`cnnbench.inference.model.TrainedModel` for uint8
    ``images`` (at the dataset's image size), at the model's input size, for its predicted
    classes; the maps come back on the CPU."""
    x = torch.cat(list(trained.inputs(images, batch_size=len(images))))
    model = trained.model
    result = grad_cam(model, x, layer=cam_layer(model, x, model_info(trained.config.model).cam_layer))
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
