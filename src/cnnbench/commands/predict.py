"""``cnnbench predict --checkpoint CKPT|RUN_DIR IMAGE|FOLDER ...``: classify image files."""

from __future__ import annotations

import argparse
import json
import sys

from cnnbench.commands import examples
from cnnbench.config import DEVICES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify image files with a trained model",
        description="Classify image files with a trained model. Any image PIL reads (PNG, JPEG, "
                    "greyscale, colour, transparent, any size) is converted to the model's "
                    "channels, size and normalisation as recorded in its checkpoint; a folder "
                    "means every image in it. For MNIST models a photo or drawing of a digit "
                    "(dark ink on light paper) is inverted, cropped and centred the way MNIST "
                    "digits are (Fashion-MNIST models: a light background is inverted), and the "
                    "output says what was done to each image. An image whose top probability is "
                    "lower than on 99% of the model's held-out images is marked unfamiliar. A "
                    "file that cannot be read is listed and skipped (exit status 1).",
        epilog=examples("cnnbench predict --checkpoint runs/my-run digit.png",
                        "cnnbench predict --checkpoint runs/my-run/best.ckpt photos/ --topk 5",
                        "cnnbench predict --checkpoint runs/my-run digit.png --json"))
    parser.add_argument("inputs", nargs="+", metavar="IMAGE",
                        help="image files, or folders of them")
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a best.ckpt or last.ckpt (a run directory: its best.ckpt, else last.ckpt)")
    parser.add_argument("--topk", type=int, default=3, metavar="K",
                        help="how many classes to show per image (default 3)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64,
                        metavar="N", help="images per forward pass (default 64)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="device (default cpu)")
    parser.add_argument("--no-digit-style", dest="digit_style", action="store_false",
                        help="MNIST models: do not invert, crop or centre; only convert and resize")
    parser.add_argument("--explain", nargs="?", const="explanations", metavar="DIR",
                        help="draw each image's Grad-CAM heat map for its answer into DIR "
                             "(default ./explanations) as <image>.gradcam.png")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.inference import predict_files

    result = predict_files(args.checkpoint, args.inputs, topk=args.topk, device=args.device,
                           batch_size=args.batch_size, digit_style=args.digit_style,
                           explain=args.explain)
    failed = result["failed"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if failed else 0
    print(result["description"])
    for record in result["predictions"]:
        top = ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in record["top"])
        print(f"{record['file']}: {top}" + ("  [unfamiliar]" if record["unfamiliar"] else "")
              + (f"  -> {record['explanation']}" if "explanation" in record else ""))
        if record["notes"]:
            print(f"  ({'; '.join(record['notes'])})")
    if failed:
        for bad in failed:
            print(f"cnnbench: not classified: {bad['error']}", file=sys.stderr)
        print(f"cnnbench: {len(failed)} of {len(failed) + len(result['predictions'])} images "
              f"could not be read (listed above)", file=sys.stderr)
        return 1
    return 0
