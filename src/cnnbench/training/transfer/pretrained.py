"""torchvision's ImageNet weights for ``--pretrained``: found in the torch hub cache, or
downloaded there (hash-checked) when a network is reachable; offline, one line says what to do.

A model is either torchvision's own (same name and layout: the whole file loads) or a lab
report's variant registered with ``pretrained_from=(torchvision model, modules)`` (only those
modules load, e.g. ``vgg16_bn_tricks`` takes ``features`` from ``vgg16_bn``;
:func:`pretrained_source`)."""

from __future__ import annotations

import re
import socket
import urllib.error
from pathlib import Path

import torch

from cnnbench.data.sources import network_available
from cnnbench.errors import UserError
from cnnbench.models import list_models, model_info, resolve_model_name

PROBE_TIMEOUT_S = 2.0                       # connectivity check before a download
DOWNLOAD_TIMEOUT_S = 60.0                   # socket timeout while downloading (no hang)


def _has_weights(name: str) -> bool:
    import torchvision.models as tvm

    if name not in tvm.list_models():
        return False
    try:
        tvm.get_model_weights(name)
    except (ValueError, KeyError):
        return False
    return True


def pretrained_models() -> list[str]:
    """cnnbench models for which torchvision has ImageNet weights: its own models (same names
    and layouts) and the variants registered with ``pretrained_from`` (part of the model)."""
    out = []
    for name in list_models():
        source = model_info(name).pretrained_from
        if _has_weights(source[0] if source else name):
            out.append(name)
    return out


def pretrained_source(model_name: str) -> tuple[str, tuple[str, ...] | None]:
    """``(torchvision model, modules)`` whose ImageNet weights ``--pretrained`` starts
    ``model_name`` from: the model itself and ``None`` (every tensor), or for a variant
    registered with ``pretrained_from`` that model and the modules to take
    (``vgg16_bn_tricks`` -> ``("vgg16_bn", ("features",))``)."""
    info = model_info(model_name)
    if info.pretrained_from is not None:
        return info.pretrained_from
    return info.name, None


def _network_available(url: str, timeout: float) -> bool:
    return network_available(url, timeout)


def pretrained_weights_path(model_name: str, *, download: bool = True,
                            timeout: float = PROBE_TIMEOUT_S) -> Path:
    """The file of torchvision's default ImageNet weights for ``model_name``, in the torch hub
    cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``).

    A file already there is used as is. Otherwise it is downloaded (hash-checked, as torchvision
    does) when ``download`` and the host answers a TCP probe within ``timeout`` seconds
    (``$CNNBENCH_OFFLINE=1``: no probe, offline). Offline, or for a model torchvision has no
    weights for, a one-line :class:`UserError` says where to put the file and that
    ``--init PATH`` takes a downloaded file. For a variant registered with ``pretrained_from``
    it is the file of that torchvision model (:func:`pretrained_source`).
    """
    import torchvision.models as tvm

    name = resolve_model_name(model_name)
    source, modules = pretrained_source(name)
    try:
        weights = tvm.get_model_weights(source).DEFAULT
    except (ValueError, KeyError):
        raise UserError(f"--pretrained: torchvision has no ImageNet weights for {name}; it has "
                        f"them for {', '.join(pretrained_models())} (or pass --init PATH with "
                        f"weights of your own)") from None
    url = weights.url
    filename = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / filename
    if path.is_file():
        return path
    if not download or not _network_available(url, timeout):
        if modules is None:
            whose, hint = name, "put it there, or pass --init PATH with the downloaded file"
        else:  # --init would load every tensor that fits, not only these modules
            whose, hint = f"{source}, whose {', '.join(modules)} {name} starts from", "put it there"
        raise UserError(f"--pretrained: {filename} (torchvision's ImageNet weights for {whose}) "
                        f"is not in {folder} and {url} cannot be reached; download it elsewhere "
                        f"and {hint}")
    return _download(url, path)


def _download(url: str, path: Path) -> Path:
    """``torch.hub.download_url_to_file`` (temp file, then rename; sha256 prefix checked),
    with a socket timeout so that a stalled connection fails instead of hanging."""
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path),
                                       hash_prefix=match.group(1) if match else None)
    except (OSError, RuntimeError, urllib.error.URLError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--pretrained: downloading {url} failed ({first}); put the file into "
                        f"{path.parent} by hand, or pass --init PATH with a downloaded file"
                        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return path
