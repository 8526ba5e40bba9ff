"""Muon: momentum orthogonalised by Newton-Schulz iterations, for the convolution filters.

K. Jordan et al., "Muon: an optimizer for hidden layers in neural networks" (2024), the
optimizer of airbench94_muon: each matrix-shaped parameter (a convolution filter bank viewed as
``out x (in * kh * kw)``, a hidden linear layer's weight) is updated by its Nesterov momentum
replaced with the nearest semi-orthogonal matrix (all singular values ~1), computed by 5
Newton-Schulz iterations (``--muon-ns-steps``; in bf16 in a bf16 run, as airbench94_muon); the
update is scaled by ``sqrt(max(1, rows / cols))``. Every other parameter (biases,
normalisation layers, the classifier head) takes plain SGD with Nesterov momentum, as in
airbench94_muon.

PyTorch's own ``torch.optim.Muon`` (2.9+) takes 2-D parameters only, so it cannot see a
convolution's 4-D filters; this optimizer does the same step on their 2-D view (a reshape, no
copy of the weights). Weight decay is decoupled for the Muon parameters (``w *= 1 - lr * wd``,
as ``torch.optim.Muon``) and coupled (added to the gradient) for the SGD ones. A group with
``normalize=True`` (``--muon-normalize``) first rescales each of its matrices to a Frobenius norm
of ``sqrt(rows)`` (its output channels) on every step, as airbench94_muon does: with all singular
values of the update ~1, its norm is ~``sqrt(rows)`` too, so the learning rate becomes the
step's size relative to the weights, which no longer grow or shrink.
"""

from __future__ import annotations

import torch

# Coefficients of the quintic Newton-Schulz iteration (Jordan et al.): fast convergence of the
# singular values towards ~1 (to within about [0.7, 1.2], which is all the update needs).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The semi-orthogonal matrix nearest ``matrix`` (its ``U V^T``), approximately, by
    ``steps`` quintic Newton-Schulz iterations in ``dtype`` (float32, or bfloat16 as
    airbench94_muon: the iteration only needs the singular values near 1)."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.float()
    x = (x / (x.norm() + eps)).to(dtype)  # singular values <= 1, where the iteration converges
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for groups with ``muon=True`` (matrix-shaped parameters), Nesterov SGD for the rest.

    Each group has ``lr``, ``weight_decay`` and ``muon``; ``momentum`` (default 0.95 for Muon
    groups), ``nesterov`` (default True), ``normalize`` (default False: see the module's
    docstring), ``ns_steps`` (default 5) and ``ns_bf16`` (default False: the Newton-Schulz
    iterations in bfloat16, which a run with bf16 autocast sets) may be set per group.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, normalize: bool = False,
                 ns_bf16: bool = False):
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"invalid Muon settings: lr {lr}, momentum {momentum}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        ns_steps=ns_steps, muon=True, normalize=normalize, ns_bf16=ns_bf16)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups take matrix-shaped parameters only (ndim >= 2)")

    def __setstate__(self, state):
        """Also what ``load_state_dict`` calls (PyTorch's optimizers give new options their
        defaults here): groups saved before ``normalize`` or ``ns_bf16`` existed take ``False``."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("normalize", False)
            group.setdefault("ns_bf16", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and wd:
                    grad = grad.add(p, alpha=wd)  # coupled L2, as torch.optim.SGD
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(grad)
                update = grad.add(buf, alpha=mu) if group["nesterov"] else buf
                if group["muon"]:
                    if group["normalize"]:  # a zero matrix stays zero
                        p.mul_(p.shape[0] ** 0.5 / p.norm().clamp_min(1e-12))
                    matrix = update.reshape(update.shape[0], -1)
                    scale = max(1.0, matrix.shape[0] / matrix.shape[1]) ** 0.5
                    dtype = torch.bfloat16 if group["ns_bf16"] else torch.float32
                    update = orthogonalize(matrix, group["ns_steps"], dtype=dtype).view_as(p) * scale
                    if wd:
                        p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr)
        return loss
