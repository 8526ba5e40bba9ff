"""``cnnbench eval``: evaluate a checkpoint on its run's test (or validation) split."""

from __future__ import annotations

import argparse
import json

from cnnbench.commands import examples
from cnnbench.config import DEVICES, TTA_MODES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (reproduces the run's test accuracy)",
        description="Evaluate a checkpoint on the split of the run that wrote it, rebuilt from "
                    "the config stored in the checkpoint (same split seed, limits, "
                    "normalisation and test-time augmentation); best.ckpt reproduces the run "
                    "summary's test accuracy exactly.",
        epilog=examples("cnnbench eval --checkpoint runs/my-run/best.ckpt",
                        "cnnbench eval --checkpoint runs/my-run --split val --json"))
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a last.ckpt or best.ckpt (a run directory means its best.ckpt)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", metavar="DIR",
                        help="data root (default: the run's, else $CNNBENCH_DATA, else ./data then "
                             "shared/datasets beside the checkout)")
    parser.add_argument("--device", choices=DEVICES, help="device (default: the run's)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int,
                        metavar="N", help="evaluation batch size (default: the run's)")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the run's)")
    parser.add_argument("--allow-changed-data", action="store_true",
                        help="evaluate even if the test set changed since the run (the accuracy "
                             "is then not the run's)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.training import evaluate_checkpoint
    from cnnbench.training.calibration import calibration_line

    result = evaluate_checkpoint(args.checkpoint, args.split, data_dir=args.data_dir, device=args.device,
                                 batch_size=args.batch_size, tta=args.tta,
                                 allow_changed_data=args.allow_changed_data)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']} on {result['dataset']} ({args.split}, epoch {result['epoch']}, "
              f"tta {result['tta']}): accuracy {100 * result['acc']:.2f}% "
              f"({result['correct']}/{result['n']}), loss {result['loss']:.4f}")
        print(calibration_line(result))
    return 0
