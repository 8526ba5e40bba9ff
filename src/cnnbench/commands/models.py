"""``cnnbench models``: every registered model with its parameters, MACs and FLOPs (FLOPs = 2 x
MACs) at a dataset's input size, or one model's per-layer summary (``--summary NAME``). The
``study`` column names, for a network one of the lab reports trained, the study that reproduces
that report; ``--reports`` lists only those.

Models are built on PyTorch's ``meta`` device (shapes only), so the whole table takes a few
seconds and allocates no weights; the tables of the registered datasets' inputs are read from
the model catalog (:mod:`cnnbench.models.catalog`) without importing torch.
"""

from __future__ import annotations

import argparse
import json
import re


from cnnbench.commands import examples
from cnnbench.config import STEMS
from cnnbench.errors import UserError

DEFAULT_DATASET = "cifar10"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list models with parameters, MACs and FLOPs, or one's layers",
        description="List every model with its parameters, MACs and FLOPs (FLOPs = 2 x MACs) "
                    f"for a dataset's image size and number of classes (default: "
                    f"{DEFAULT_DATASET}), or, with --summary NAME, one model's per-layer table. "
                    "The study column names, for a network a lab report trained, the study "
                    "that reproduces the report (--reports lists only those). Models are built "
                    "without weights, so the whole table takes a few seconds.",
        epilog=examples("cnnbench models --reports",
                        "cnnbench models --dataset mnist --pattern 'resnet*'",
                        "cnnbench models --summary resnet18 --dataset mnist"))
    parser.add_argument("--dataset", help=f"size the models for this dataset's images and classes "
                                          f"(default: {DEFAULT_DATASET})")
    parser.add_argument("--input-size", "--input_size", metavar="C,H,W",
                        help="input shape instead of a dataset's, e.g. 3,224,224 (or H,W with the "
                             "dataset's channels, or one size for a square image)")
    parser.add_argument("--num-classes", "--num_classes", type=int,
                        help="number of classes (default: the dataset's; 10 with --input-size alone)")
    parser.add_argument("--stem", default="auto", choices=STEMS,
                        help="stem of ResNet/VGG/AlexNet/MobileNet/GoogLeNet (default auto: "
                             "imagenet from 112 px up)")
    parser.add_argument("--pattern", default="*", help="only models whose name matches this "
                                                      "shell pattern, e.g. 'resnet*'")
    parser.add_argument("--reports", action="store_true",
                        help="only the lab reports' networks (those with a study: the study that "
                             "reproduces the report), each at the input its study trains it on "
                             "(unless --dataset or --input-size is given)")
    parser.add_argument("--summary", metavar="NAME", help="print NAME's per-layer table (output shape, "
                                                          "parameters), as torchsummary")
    parser.add_argument("--latency", action="store_true",
                        help="also measure each model's inference latency at batch 1 and "
                             "throughput at batch 256 on this machine (random weights; PyTorch "
                             "and ONNX Runtime): seconds per model")
    parser.add_argument("--device", default="cpu", help="device for --latency (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _dataset_shape(name: str) -> tuple[str, tuple[int, int, int], int]:
    """(canonical name, (C, H, W), classes) of a dataset."""
    from cnnbench.data.specs import registered_spec, resolve_dataset_name

    spec = registered_spec(resolve_dataset_name(name))  # no torch for a registered dataset
    if spec is None:  # imagefolder:PATH: its classes and size are read from the folder
        from cnnbench.data import get_spec

        spec = get_spec(name)
    return spec.name, (spec.channels, *spec.image_size), spec.num_classes


def _parse_input_size(text: str, channels: int) -> tuple[int, int, int]:
    try:
        values = [int(v) for v in re.split(r"[,x]", text.strip())]
    except ValueError:
        values = []
    if len(values) == 1:
        values = [channels, values[0], values[0]]
    elif len(values) == 2:
        values = [channels, *values]
    if len(values) != 3 or min(values) < 1:
        raise UserError(f"--input-size must be C,H,W (e.g. 3,32,32), H,W or one size; got {text!r}")
    return tuple(values)


def resolve_shape(args: argparse.Namespace) -> tuple[str | None, tuple[int, int, int], int]:
    """(dataset name or None, (C, H, W), num_classes) from --dataset / --input-size / --num-classes."""
    dataset = args.dataset
    if dataset is None and args.input_size is None:
        dataset = DEFAULT_DATASET
    shape, classes = (3, 32, 32), 10
    if dataset is not None:
        dataset, shape, classes = _dataset_shape(dataset)
    if args.input_size is not None:
        shape = _parse_input_size(args.input_size, shape[0])
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise UserError(f"--num-classes must be at least 1, got {args.num_classes}")
        classes = args.num_classes
    return dataset, shape, classes


def _format_table(rows: list[dict], where: str) -> str:
    wide = any("input" in r for r in rows)
    header = (f"{'model':<22} {'family':<10} {'study':<16} " + (f"{'input':<10} " if wide else "")
              + f"{'stem':<9} {'params':>13} {'MACs':>10} {'FLOPs':>10}")
    lines = [f"models at {where}; MACs = multiply-accumulates per image, FLOPs = 2 x MACs",
             header, "-" * len(header)]
    errors = []
    for r in rows:
        start = f"{r['name']:<22} {r['family']:<10} {r['study'] or '-':<16}" + (
            f" {r['input']:<10}" if wide else "")
        if r.get("error"):
            lines.append(f"{start} {'-':<9} {'-':>13} {'-':>10} {'-':>10}")
            errors.append(f"{r['name']}: {r['error']}")
            continue
        lines.append(f"{start} {r['stem'] or '-':<9} {r['params']:>13,} "
                     f"{r['macs'] / 1e6:>9.1f}M {r['flops'] / 1e6:>9.1f}M")
    return "\n".join(lines + errors)


def _stored_rows(args: argparse.Namespace, shape, classes) -> list[dict] | None:
    """The table from the model catalog (no torch), when it holds this one."""
    from cnnbench.models import catalog

    reports = args.reports and args.dataset is None and args.input_size is None
    key = "reports" if reports else catalog.table_key(shape, classes, args.stem)
    return catalog.rows(key, args.pattern, reports=args.reports)


def run(args: argparse.Namespace) -> int:
    dataset, shape, classes = resolve_shape(args)
    where = (f"{dataset} " if dataset else "") + f"{shape[0]}x{shape[1]}x{shape[2]}, {classes} classes"
    rows = None if args.summary or args.latency else _stored_rows(args, shape, classes)
    if rows:
        return _print_rows(args, rows, dataset, shape, classes, where)

    from cnnbench.models import list_models, model_info, resolve_model_name
    from cnnbench.models.profile import format_layer_summary, layer_summary, meta_model, model_rows
    from cnnbench.studies import report_model_rows

    if args.summary:
        name = resolve_model_name(args.summary)
        model = meta_model(name, shape, classes, args.stem)
        rows = layer_summary(model, shape)
        if args.json:
            from cnnbench.models.profile import count_macs, count_params
            macs = count_macs(model, shape)
            print(json.dumps({"name": name, "dataset": dataset, "input_size": list(shape),
                              "num_classes": classes, "stem": model.stem, "params": count_params(model),
                              "macs": macs, "flops": 2 * macs,
                              "layers": [{"name": r.name, "type": r.type, "output_shape": list(r.output_shape),
                                          "params": r.params} for r in rows]}, indent=2))
        else:
            print(f"{name} at {where}, stem: {model.stem or '-'}")
            print(format_layer_summary(rows, model, shape))
        return 0

    names = list_models(args.pattern)
    if args.reports:
        names = [n for n in names if model_info(n).study]
    if not names:
        which = "lab-report model" if args.reports else "model"
        raise UserError(f"no {which} matches {args.pattern!r}; run `cnnbench models` for the list")
    if args.reports and args.dataset is None and args.input_size is None:
        rows = report_model_rows(names)
    else:
        rows = model_rows(names, shape, classes, args.stem)
    if args.latency:
        return _latency(args, rows, shape, classes, dataset, where)
    return _print_rows(args, rows, dataset, shape, classes, where)


def _latency(args: argparse.Namespace, rows: list[dict], shape, classes, dataset, where) -> int:
    """Measure each listed model (random weights) and print its latency and throughput."""
    import torch

    from cnnbench.inference.latency import measure
    from cnnbench.models import create_model

    if not args.json:
        print(f"latency at {where} on {args.device} ({torch.get_num_threads()} threads): batch 1 "
              f"in ms, batch 256 in images/s; PyTorch eager | ONNX Runtime")
    for row in rows:
        if row.get("error"):
            continue
        # a lab-report row names the input its study trains the network on ("1x28x28")
        chans, *size = (int(v) for v in row["input"].split("x")) if row.get("input") else shape
        size = tuple(size)
        with torch.random.fork_rng(devices=[]):
            model = create_model(row["name"], num_classes=classes, in_chans=chans, input_size=size,
                                 stem=args.stem)
        row["latency"] = measure(model, (chans, *size), device=args.device)
        if not args.json:
            e, o = row["latency"]["eager"], row["latency"].get("onnxruntime") or {}
            onnx = (f"{o['batch1_ms']:8.2f} ms {o['batch256_images_per_s']:>10,.0f}/s" if o
                    else f"  (ONNX Runtime: {row['latency'].get('onnxruntime_error')})")
            print(f"{row['name']:<22} {row['params']:>12,} params  {e['batch1_ms']:8.2f} ms "
                  f"{e['batch256_images_per_s']:>10,.0f}/s | {onnx}", flush=True)
    if args.json:
        print(json.dumps({"dataset": dataset, "input_size": list(shape), "num_classes": classes,
                          "stem": args.stem, "models": rows}, indent=2))
    return 0


def _print_rows(args: argparse.Namespace, rows: list[dict], dataset, shape, classes, where) -> int:
    if args.reports and args.dataset is None and args.input_size is None:
        where = "the input each study trains the network on, 10 classes"
        dataset = None
    if args.json:
        print(json.dumps({"dataset": dataset, "input_size": list(shape), "num_classes": classes,
                          "stem": args.stem, "models": rows}, indent=2))
    else:
        print(_format_table(rows, where))
    return 0
