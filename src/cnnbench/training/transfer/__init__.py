"""Fine-tuning and transfer learning: start from other weights, find the head, freeze, unfreeze.

::

    report = load_init_weights(model, "resnet18-f37072fd.pth", dataset="cifar10")
    print(report.text())                  # one line for the log; report.to_dict() for summary.json
    path = pretrained_weights_path("resnet18")   # torchvision's ImageNet file (cache or download)
    freeze(model, "backbone")             # the head trains, the rest is fixed (BatchNorm too)
    unfreeze(model)                       # or, per epoch: apply_freeze_schedule(...)

``weights`` reads and matches weights (what is loaded, replaced, adapted or left new),
``heads`` finds a model's classifier head and freezes the rest, ``pretrained`` finds or
downloads torchvision's ImageNet weights. Separate learning rates for the head and the backbone
are parameter groups of the optimizer (:func:`cnnbench.training.optim.param_groups`).
"""

from cnnbench.training.transfer.heads import (apply_freeze_schedule, first_conv_name, freeze,
                                              head_module_names, head_parameter_names, is_frozen,
                                              unfreeze)
from cnnbench.training.transfer.pretrained import (pretrained_models, pretrained_source,
                                                   pretrained_weights_path)
from cnnbench.training.transfer.weights import (LoadReport, guess_architecture, load_init_weights,
                                                read_weights)

__all__ = ["LoadReport", "apply_freeze_schedule", "first_conv_name", "freeze",
           "guess_architecture", "head_module_names", "head_parameter_names", "is_frozen",
           "load_init_weights", "pretrained_models", "pretrained_source", "pretrained_weights_path",
           "read_weights", "unfreeze"]
