"""Using trained models: predictions on image files, export, and a local web page.

``model`` (:func:`load_trained_model`: a checkpoint or run directory -> the model in eval mode
with its preprocessing), ``images`` (reading user images safely; making them look like the
dataset's, MNIST-style for digit photos), ``predict`` (:func:`predict_files`, ``cnnbench
predict``), ``export`` (:func:`export_model`: ONNX / TorchScript, checked against PyTorch,
``cnnbench export``), ``server`` (FastAPI + uvicorn, ``cnnbench serve``; needs the ``serve``
extra) and ``extras`` (one-line errors for missing optional packages). It sits above
``training`` (checkpoints, the model builder, test-time augmentation) and ``data``.
"""

from cnnbench.inference.model import Preprocessing, TrainedModel, load_trained_model
from cnnbench.inference.predict import predict_files

__all__ = ["Preprocessing", "TrainedModel", "load_trained_model", "predict_files"]
