"""Optional packages (``pip install 'cnnbench[serve]'``, ``'cnnbench[export]'``,
``'cnnbench[search]'``), imported only by the commands that need them; a missing one is a
one-line :class:`UserError`."""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnbench.errors import UserError

# extra -> the modules it installs (import names) and what needs them
EXTRAS = {
    "serve": (("fastapi", "uvicorn", "python_multipart"), "the web page (cnnbench serve)"),
    "export": (("onnx", "onnxruntime", "onnxscript"), "ONNX export (cnnbench export --format onnx)"),
    "search": (("optuna",), "the hyper-parameter search (cnnbench search)"),
    "mlflow": (("mlflow",), "MLflow tracking (--track mlflow)"),
    "cluster": (("ray",), "running a study on Ray (cnnbench study run --executor ray)"),
}


def require(extra: str) -> list[ModuleType]:
    """Import the modules of ``extra``; any missing -> one line naming the pip command."""
    modules, purpose = EXTRAS[extra]
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise UserError(f"{purpose} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed: pip install 'cnnbench[{extra}]'")
    return loaded
