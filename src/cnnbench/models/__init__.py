"""The model zoo: one module per family, each registering its variants in
:mod:`cnnbench.models.registry`. Importing this package loads every family, so its
``list_models``/``create_model`` see the whole zoo.

>>> from cnnbench.models import create_model, list_models, model_info
>>> model = create_model("resnet18", num_classes=10, in_chans=3, input_size=32)  # CIFAR stem
>>> model.stem
'small'

Every builder takes ``num_classes``, ``in_chans``, ``input_size``, ``drop_rate`` and ``stem``
(``"auto"``, ``"small"``, ``"imagenet"``) plus its family's own keywords; see
``docs/architecture.md`` and each family's docstring (``model_info(name).doc``).
"""

from cnnbench.models.profile import model_cost
from cnnbench.models.registry import (FAMILY_DEFAULTS, ModelInfo, create_model, create_model_for,
                                      list_models, model_info, register_model, resolve_model_name)

# Importing the family modules registers their models.
from cnnbench.models import alexnet, fastnet, googlenet, lenet, mobilenet, resnet, vgg  # noqa: E402,F401

__all__ = ["create_model", "create_model_for", "model_cost", "list_models", "model_info", "resolve_model_name", "register_model",
           "ModelInfo", "FAMILY_DEFAULTS"]
