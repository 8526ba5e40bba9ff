"""Parameter and multiply-accumulate counts, and a per-layer summary as torchsummary prints.

All three run the model on the ``meta`` device (shapes only: no compute, no memory), so they
take milliseconds even for VGG-19 at 224 px and work on models built with
``with torch.device("meta"):``. Counts are for one image in eval mode (auxiliary heads off).

MACs are multiply-accumulates of convolutions and linear layers (matrix products), as
``torch.utils.flop_counter.FlopCounterMode`` counts them; FLOPs = 2 x MACs. torchvision's
"GFLOPS" column and most papers' "FLOPs" or "mult-adds" are MACs in this sense (ResNet-50:
4.09 GMACs). BatchNorm, activations, pooling and additions are not counted.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbench.models.common import shapes_only

__all__ = ["count_params", "count_macs", "layer_summary", "LayerRow", "format_layer_summary"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _input_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {input_shape}")
    return shape


@contextmanager
def _on_meta(model: nn.Module):
    """Yield a callable running ``model`` in eval mode with meta copies of its parameters and
    buffers (``torch.func.functional_call``: the model itself is not touched)."""
    tensors = {name: torch.empty_like(t, device="meta")
               for name, t in (*model.named_parameters(), *model.named_buffers())}
    was_training = model.training
    model.eval()
    try:
        with shapes_only():  # BatchNorm: no MACs, and 90% of a meta pass's CPU
            yield lambda x: torch.func.functional_call(model, tensors, (x,))
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass for an input of ``(C, H, W)`` (one image) or
    ``(N, C, H, W)``. FLOPs are ``2 * count_macs(...)``."""
    shape = _input_shape(input_shape)
    with _on_meta(model) as run, FlopCounterMode(display=False) as counter:
        run(torch.empty(shape, device="meta"))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class LayerRow:
    """One row of :func:`layer_summary`: the module's qualified name, its class name, its
    output shape with the batch dimension as -1, and its own (not its children's) parameters."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int


def layer_summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerRow]:
    """One :class:`LayerRow` per module that has no children or holds parameters itself, in
    the order they run, for an input of ``(C, H, W)``: the table torchsummary prints. A module
    that runs twice appears twice; containers do not appear (their layers do)."""
    shape = _input_shape(input_shape)
    rows: list[LayerRow] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _inputs, output) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        own = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(LayerRow(names[module] or type(model).__name__, type(module).__name__,
                             (-1, *out.shape[1:]), own))

    hooks = [m.register_forward_hook(record) for m in model.modules()
             if m is not model and (not any(True for _ in m.children())
                                    or any(True for _ in m.parameters(recurse=False)))]
    try:
        with _on_meta(model) as run:
            run(torch.empty(shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def format_layer_summary(rows: list[LayerRow], model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """``rows`` as a text table (layer, output shape, parameters) with totals, MACs and FLOPs."""
    header = f"{'Layer (type)':<44} {'Output Shape':>22} {'Param #':>12}"
    lines = [header, "=" * len(header)]
    for row in rows:
        label = f"{row.name} ({row.type})"
        lines.append(f"{label:<44} {str(list(row.output_shape)):>22} {row.params:>12,}")
    total, trainable = count_params(model), count_params(model, trainable_only=True)
    macs = count_macs(model, input_shape)
    lines += ["=" * len(header),
              f"Total params: {total:,}",
              f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}",
              f"MACs per image: {macs:,} ({macs / 1e6:,.1f} M); FLOPs = 2 x MACs: {2 * macs:,}"]
    return "\n".join(lines)


def model_cost(model: nn.Module, in_chans: int, input_size: tuple[int, int]) -> tuple[int, int | None]:
    """Parameters and forward MACs per image (``None``, with a warning, if they cannot be
    counted: the count is informative, never fatal)."""
    import warnings

    params = count_params(model)
    try:
        macs = int(count_macs(model, (in_chans, *input_size)))
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"cnnbench: could not count MACs of {type(model).__name__}: {exc}")
        macs = None
    return params, macs


def meta_model(name: str, shape: tuple[int, int, int], classes: int, stem: str = "auto") -> nn.Module:
    """Model ``name`` for ``(C, H, W)`` inputs and ``classes`` classes, without weights (the
    ``meta`` device: counting needs shapes only)."""
    from cnnbench.models.registry import create_model

    with torch.device("meta"):
        return create_model(name, num_classes=classes, in_chans=shape[0], input_size=shape[1:],
                            stem=stem)


def model_rows(names: list[str], shape: tuple[int, int, int], classes: int,
               stem: str = "auto") -> list[dict]:
    """One dict per model (``cnnbench models``): name, family, study, stem, params, macs, flops
    (or ``error``, if the input does not fit the model)."""
    from cnnbench.errors import UserError
    from cnnbench.models.registry import model_info

    rows = []
    for name in names:
        info = model_info(name)
        row = {"name": name, "family": info.family, "study": info.study}
        try:
            model = meta_model(name, shape, classes, stem)
        except UserError as exc:
            rows.append({**row, "stem": None, "params": None, "macs": None, "flops": None,
                         "error": str(exc)})
            continue
        macs = count_macs(model, shape)
        rows.append({**row, "stem": model.stem, "params": count_params(model), "macs": macs,
                     "flops": 2 * macs})
    return rows
