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
                        "cnnbench eval --checkpoint runs/my-run --split val --json",
                        "cnnbench eval --checkpoint runs/my-run --corruptions"))
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
    parser.add_argument("--corruptions", nargs="*", metavar="NAME",
                        help="the test accuracy under common corruptions at 5 severities each "
                             f"instead (all by default, or these: {', '.join(CORRUPTION_NAMES)}); "
                             "written to the run directory's corruptions.json")
    parser.add_argument("--latency", action="store_true",
                        help="measure the model's inference latency (batch 1) and throughput "
                             "(batch 256) on this machine instead, in PyTorch and ONNX Runtime; "
                             "written to the run directory's latency.json")
    parser.add_argument("--explain", action="store_true",
                        help="add Grad-CAM heat maps to the run's gallery of misclassified test "
                             "images (misclassified.pt; runs save them since they were added), "
                             "from the weights the run tested, instead")
    parser.add_argument("--images", type=int, metavar="N",
                        help="with --corruptions: only N of the test images, drawn at random under --seed "
                             "(coarser, faster)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the corruptions' noise and elastic fields (default 0)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


# the names of cnnbench.training.corruptions.CORRUPTIONS (not imported here: it loads torch;
# tests/training/test_corruptions.py checks they agree)
CORRUPTION_NAMES = ("gaussian_noise", "gaussian_blur", "contrast", "brightness", "rotation",
                    "translation", "jpeg", "elastic", "pixelate")


def _corruptions(args: argparse.Namespace) -> int:
    from cnnbench.training.corruptions import check_names, evaluate_corruptions

    check_names(args.corruptions)

    if args.split != "test":
        from cnnbench.errors import UserError

        raise UserError("--corruptions evaluates the test split; leave out --split val")
    said: list[str] = []

    def say(line: str) -> None:  # the header with the first result: a mistake stays one line
        if not said:
            print("accuracy (%) at severities 1-5:", flush=True)
        said.append(line)
        print(f"  {line}", flush=True)

    result = evaluate_corruptions(args.checkpoint, names=args.corruptions or None, seed=args.seed,
                                  data_dir=args.data_dir, device=args.device,
                                  batch_size=args.batch_size, images=args.images,
                                  progress=None if args.json else say)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    drop = result["relative_drop"]
    print(f"{result['model']} on {result['dataset']} (test, {result['n']} images): clean "
          f"{100 * result['clean_acc']:.2f}%, mean under corruption {100 * result['mean_corruption_acc']:.2f}%"
          + (f" (relative drop {100 * drop:.1f}%)" if drop is not None else "")
          + f"; {result['seconds']:.1f} s"
          + (f"; written to {result['written_to']}" if "written_to" in result else ""))
    return 0


def _latency(args: argparse.Namespace) -> int:
    from cnnbench.inference.latency import measure_checkpoint

    result = measure_checkpoint(args.checkpoint, device=args.device or "cpu")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    e, o = result["eager"], result.get("onnxruntime")
    print(f"{result['model']} on {result['dataset']}, input {'x'.join(map(str, result['input']))}, "
          f"{result['device_name']} ({result['threads']} threads): PyTorch {e['batch1_ms']:.2f} ms "
          f"per image at batch 1, {e['batch256_images_per_s']:,.0f} images/s at batch 256"
          + (f"; ONNX Runtime {o['batch1_ms']:.2f} ms, {o['batch256_images_per_s']:,.0f} images/s"
             if o else f"; ONNX Runtime: {result.get('onnxruntime_error')}")
          + (f"; written to {result['written_to']}" if "written_to" in result else ""))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from cnnbench.training.evaluation import explain_gallery

    result = explain_gallery(args.checkpoint, data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    how = (f"Grad-CAM at {result['cam_layer']}" if result["cam_method"] == "grad-cam"
           else "gradient saliency")
    print(f"{how} of {result['images']} misclassified test images ({result['checkpoint']}); "
          f"written to {result['written_to']}" if result["images"]
          else f"no misclassified test images in {result['written_to']}: nothing to explain")
    return 0


def run(args: argparse.Namespace) -> int:
    chosen = [flag for flag, on in (("--corruptions", args.corruptions is not None),
                                    ("--latency", args.latency), ("--explain", args.explain)) if on]
    if len(chosen) > 1:
        from cnnbench.errors import UserError

        raise UserError(f"give only one of {', '.join(chosen)} (run eval once for each)")
    if args.corruptions is not None:
        return _corruptions(args)
    if args.latency:
        return _latency(args)
    if args.explain:
        return _explain(args)
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
