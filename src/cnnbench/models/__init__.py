"""The model zoo: one module per family, each registering its variants in
:mod:`cnnbench.models.registry`. The families are imported on the first lookup
(``list_models``, ``create_model``, ...), which then sees the whole zoo; importing the package
itself costs nothing.

>>> from cnnbench.models import create_model, list_models, model_info
>>> model = create_model("resnet18", num_classes=10, in_chans=3, input_size=32)  # CIFAR stem
>>> model.stem
'small'

Every builder takes ``num_classes``, ``in_chans``, ``input_size``, ``drop_rate`` and ``stem``
(``"auto"``, ``"small"``, ``"imagenet"``) plus its family's own keywords; see
``docs/architecture.md`` and each family's docstring (``model_info(name).doc``).
"""

from __future__ import annotations

from cnnbench.lazy import lazy_names

# Loaded on first use (PEP 562), so `cnnbench.models.catalog` (the command line's listing)
# imports no torch; a lookup in the registry imports the families.
_WHERE = {"model_cost": "profile", **{name: "registry" for name in (
    "FAMILY_DEFAULTS", "ModelInfo", "create_model", "create_model_for", "list_models",
    "model_info", "register_model", "resolve_model_name")}}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
