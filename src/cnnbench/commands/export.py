"""``cnnbench export --checkpoint CKPT --format onnx|torchscript --out FILE``."""

from __future__ import annotations

import argparse
import json

from cnnbench.commands import examples

FORMATS = ("onnx", "torchscript")  # cnnbench.inference.export.FORMATS (not imported: no torch for --help)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model to ONNX or TorchScript, checked against PyTorch",
        description="Export a trained model to ONNX or TorchScript with a dynamic batch size. "
                    "Before the file is kept, the exported model runs on the checkpoint's own "
                    "test images (random ones, said so, when the dataset is not at hand) and "
                    "its logits must match PyTorch's within 1e-4; the largest difference is "
                    "printed. ONNX is checked with onnxruntime (pip install 'cnnbench[export]').",
        epilog=examples("cnnbench export --checkpoint runs/my-run --format onnx --out lenet5.onnx",
                        "cnnbench export --checkpoint runs/my-run/best.ckpt --format torchscript "
                        "--out lenet5.pt"))
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a best.ckpt or last.ckpt (a run directory: its best.ckpt, else last.ckpt)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the file format")
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", metavar="DIR",
                        help="data root for the test images (default: the run's, else "
                             "$CNNBENCH_DATA, else ./data then shared/datasets beside the checkout)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.inference.export import TOLERANCE, export_model

    result = export_model(args.checkpoint, args.format, args.out, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    print(f"checked on {result.inputs}, batch sizes {' and '.join(map(str, result.batch_sizes))}: "
          f"largest logit difference to PyTorch {result.max_abs_diff:.2e} (< {TOLERANCE:g})")
    print(f"wrote {result.path} ({result.format}, dynamic batch size)")
    return 0
