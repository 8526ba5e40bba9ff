"""Export a trained model to ONNX or TorchScript, checked against PyTorch before it is kept.

``export_model(checkpoint, "onnx", "lenet5.onnx")`` writes the model (in eval mode, float32,
batch size dynamic) to a temporary file next to ``out``, runs it (ONNX: onnxruntime on the CPU;
TorchScript: ``torch.jit.load``) on the checkpoint's own test images (its dataset's test split,
read from the cache or data root, never downloaded) at the full batch and at batch size 1, and
keeps the file only when every logit is within :data:`TOLERANCE` of PyTorch's. Without the
dataset, random images stand in and the result says so.

The exported model takes what the PyTorch model takes: float32 ``N x C x H x W``, pixels / 255
normalised with the run's mean/std (and resized, with ``resize``), and returns the logits. That
contract, the class names and the statistics are written into the file (ONNX metadata
``cnnbench``; TorchScript extra file ``cnnbench.json``). Test-time augmentation is not part of
the exported model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import warnings
from pathlib import Path

import torch

from cnnbench import data
from cnnbench.errors import UserError
from cnnbench.extras import require
from cnnbench.inference.model import TrainedModel, load_trained_model

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4      # largest allowed |exported logit - PyTorch logit|
CHECK_IMAGES = 64     # test images run through both


@dataclasses.dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    images: int                 # images compared
    batch_sizes: tuple[int, ...]
    inputs: str                 # where they came from, in words
    real_images: bool           # the test split (True) or random stand-ins (False)
    notes: list[str]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "path": str(self.path), "tolerance": TOLERANCE}


def check_images(trained: TrainedModel, data_dir: str | None = None,
                 n: int = CHECK_IMAGES) -> tuple[torch.Tensor, str, bool]:
    """Up to ``n`` uint8 test images of the checkpoint's dataset, the words that say so, and
    whether they are real; random images (seeded) when the test split cannot be read."""
    prep, config = trained.preprocessing, trained.config
    reason = None
    try:
        ds = data.load_dataset(config.dataset, data_dir=data_dir or config.data_dir, download=False)
        images = ds.test_x[:n]
        if tuple(images.shape[1:]) == (prep.channels, *prep.image_size) and len(images):
            return images.contiguous(), f"{len(images)} test images of {config.dataset}", True
        reason = (f"its test images are {'x'.join(map(str, images.shape[1:]))}, not the "
                  f"checkpoint's {prep.channels}x{prep.image_size[0]}x{prep.image_size[1]}")
    except UserError as exc:
        reason = str(exc).split(";")[0]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, prep.channels, *prep.image_size), dtype=torch.uint8,
                           generator=g)
    return images, (f"{n} RANDOM images, not test images: the {config.dataset} test split "
                     f"could not be read ({reason})"), False


def _metadata(trained: TrainedModel) -> str:
    prep = trained.preprocessing
    return json.dumps({
        "model": trained.config.model, "dataset": trained.config.dataset,
        "classes": list(prep.classes), "checkpoint": str(trained.path), "epoch": trained.epoch,
        "input": f"float32 N x {prep.channels} x {prep.input_size[0]} x {prep.input_size[1]}: "
                 f"pixels / 255, minus mean, divided by std (per channel)",
        "mean": list(prep.mean), "std": list(prep.std), "image_size": list(prep.image_size),
        "input_size": list(prep.input_size), "output": "logits N x num_classes",
    })


def write_onnx(model, example: torch.Tensor, path: Path, metadata: str):
    """``model`` as an ONNX file at ``path`` (dynamic batch, ``metadata`` kept in it) and a
    function running it in ONNX Runtime (CPU): ``logits = run(images)``."""
    onnx, ort, _ = require("export")
    # the exporter reports its progress on stdout, and warns about what it decomposes
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          dynamo=True, external_data=False, verbose=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cnnbench", metadata
    onnx.save(proto, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _write_torchscript(model, example: torch.Tensor, path: Path, metadata: str):
    # tracing records the operations of one call; the batch size stays symbolic (checked
    # below at two batch sizes). torch.jit is deprecated in favour of torch.export, but
    # TorchScript files are still what C++ (libtorch) and older runtimes load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"cnnbench.json": metadata})
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x)


def export_model(checkpoint: str | Path, fmt: str, out: str | Path, *,
                 data_dir: str | None = None) -> ExportResult:
    """Export the model of ``checkpoint`` (a file or run directory) as ``fmt`` (onnx or
    torchscript) to ``out``; the file is kept only when it matches PyTorch within
    :data:`TOLERANCE` on test images (see the module docstring), else one-line UserError."""
    if fmt not in FORMATS:
        raise UserError(f"unsupported export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "onnx":
        require("export")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out}/model.{fmt}")
    if not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    trained = load_trained_model(checkpoint, device="cpu")
    images, source, real = check_images(trained, data_dir)
    inputs = torch.cat(list(trained.inputs(images)))
    model = trained.model
    with torch.inference_mode():
        expected = model(inputs).float()
    notes = []
    if trained.config.tta != "none":
        notes.append(f"the run evaluates with test-time augmentation {trained.config.tta}; the "
                     f"exported model is the plain model (one view)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        writer = write_onnx if fmt == "onnx" else _write_torchscript
        try:
            run = writer(model, inputs[:2].clone(), tmp, _metadata(trained))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any exporter failure is one line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{fmt} export of {trained.config.model} failed: {first}") from None
        with torch.inference_mode():
            diffs = [(run(inputs).float() - expected).abs().max().item(),
                     (run(inputs[:1]).float() - expected[:1]).abs().max().item()]
        diff = max(diffs)
        if not diff < TOLERANCE:
            raise UserError(f"the exported {fmt} model differs from PyTorch by up to {diff:.3g} "
                            f"in the logits (allowed: {TOLERANCE:g}) on {source}; {out} was not "
                            f"written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path=out, format=fmt, max_abs_diff=diff, images=len(images),
                        batch_sizes=(len(images), 1), inputs=source, real_images=real, notes=notes)
