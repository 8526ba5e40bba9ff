"""The lab reports' GPU-sized runs in their ``full`` profile, on one CUDA device, in chunks.

The shipped studies' runs whose full recipe does not fit a 2-core CPU (224 px ImageNet networks
on MNIST, CIFAR ResNet-18 / VGG-16, the 50-epoch AlexNet ladder, ...) are listed in
:data:`PLAN`. Each call trains for at most ``--budget-s`` seconds (default 470: one call of a
lent GPU allows 10 minutes, of which start-up and the copy back take some), then stops; the
study runner resumes an interrupted run from its ``last.ckpt`` and skips finished ones, so
calling the script again with the same ``--work`` folder continues where it stopped. The work
folder (checkpoints included) stays on the machine between calls while it is kept warm.

What comes back: ``--out`` gets one ``gpu_study_runs.json`` (device, commit, date, the status of
every planned run, the seconds of this chunk) and one ``<study>.tar.gz`` per study holding its
reports and each run's ``summary.json``, ``metrics.jsonl``, ``config.yaml``, ``study.json`` and
``train_steps.jsonl`` (no checkpoints, no TensorBoard events): at most 8 files.

On a lent GPU (no pip there; run from the repository root)::

    # here: pack the data it needs into an ignored folder that travels with `carry`
    mkdir -p gpu-carry && tar czf gpu-carry/data.tar.gz -C ../shared/datasets MNIST CIFAR10-JPEG
    # there:
    mkdir -p gpu-data && tar xzf gpu-carry/data.tar.gz -C gpu-data
    PYTHONPATH=src python benchmarks/gpu_study_runs.py --data-dir gpu-data --out $OUT

Tested on the CPU with tiny sizes (``--device cpu --profile quick --set limit_train=...``):
tests/benchmarks/test_gpu_study_runs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment  # noqa: E402

# (study, run patterns, dataset override): cheapest first, so a short chunk finishes whole runs.
# Left out: the runs whose full recipe was trained on the 2-core CPU (results/: every LeNet, the
# simple-CNN ladder, all five networks of mnist-five) and cifar10-tricks' vgg16_bn-tuned, which
# starts from torchvision's ImageNet vgg16_bn features: put vgg16_bn-6c64b313.pth into the torch
# hub cache of the GPU machine (it has no network) and add it to the plan.
PLAN: list[tuple[str, list[str], str | None]] = [
    ("mnist-five", ["resnet18-28px", "alexnet_large"], None),
    ("alexnet-ablation", ["plain", "bn", "bn-dropout", "bn-dropout-flip", "staged-batches",
                          "tuned-lr", "sigmoid-plain", "sigmoid-bn"], "cifar10_jpeg"),
    ("cifar10-tricks", ["resnet18", "resnet18-tuned", "resnet18-tuned-continued", "vgg16_bn",
                        "vgg16_bn-tuned-continued"], "cifar10_jpeg"),
    ("optimizers", ["alexnet-*", "resnet18-*", "mobilenet_v1-*", "vgg16-*"], None),
    ("mnist-classics", ["alexnet", "mobilenet_v2", "resnet34", "vgg16"], None),
]
KEPT = ("summary.json", "metrics.jsonl", "config.yaml", "study.json", "train_steps.jsonl",
        "error.txt")


def run_plan(out: Path, work: Path, *, budget_s: float, device: str, amp: str, profile: str,
             data_dir: str | None, overrides: list[str], studies: list[str] | None,
             dataset: str | None = None, runs: list[str] | None = None) -> dict:
    started = time.monotonic()
    plan = [(study, runs or patterns, plan_dataset) for study, patterns, plan_dataset in PLAN
            if not studies or study in studies]
    chunks = []
    for study, patterns, plan_dataset in plan:
        left = budget_s - (time.monotonic() - started)
        if left < min(5.0, budget_s / 2):  # a study starts with 5 s left (half, if less is given)
            chunks.append({"study": study, "status": "not started: chunk budget used"})
            continue
        cmd = [sys.executable, "-m", "cnnbench", "study", "run", study, "--profile", profile,
               "--out", str(work / study), "--only", *patterns, "--quiet",
               "--set", f"device={device}", "--set", f"amp={amp}", *sum((["--set", s] for s in overrides), [])]
        if dataset or plan_dataset:
            cmd += ["--dataset", dataset or plan_dataset]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        print(f"[{time.monotonic() - started:6.0f} s] {' '.join(cmd[3:])} (at most {left:.0f} s)",
              flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            rc = proc.wait(timeout=left)
            status = "done" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # last.ckpt holds the last finished epoch
            proc.wait()
            status = "stopped at the chunk budget (resumes on the next call)"
        chunks.append({"study": study, "status": status, "seconds": time.monotonic() - t0})
    runs = {}
    for study, patterns, _ in plan:
        study_dir = work / study
        if not study_dir.is_dir():
            continue
        # a chunk that ended wrote its study's report, and a study not started this call kept
        # the last call's; one stopped at the budget (or that failed) has none of its own
        status = next(c["status"] for c in chunks if c["study"] == study)
        if status != "done" and not status.startswith("not started") \
                and any(study_dir.glob("*/summary.json")):
            subprocess.run([sys.executable, "-m", "cnnbench", "report", str(study_dir)],
                           check=False)
        for summary_path in sorted(study_dir.glob("*/summary.json")):
            summary = json.loads(summary_path.read_text())
            runs[f"{study}/{summary_path.parent.name}"] = {
                k: summary.get(k) for k in ("status", "profile", "model", "dataset",
                                            "epochs_completed", "epochs", "test_acc",
                                            "max_epoch_test_acc", "train_time_s", "device_name",
                                            "amp")}
        _pack(study_dir, out / f"{study}.tar.gz")
    result = {"benchmark": "gpu_study_runs", **environment(device), "profile": profile,
              "amp": amp, "budget_s": budget_s, "chunk_seconds": time.monotonic() - started,
              "chunks": chunks, "runs": runs,
              "note": "one chunk of the lab reports' GPU-sized runs; the machine ran nothing else"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_study_runs.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _pack(study_dir: Path, archive: Path) -> None:
    """The study's reports and each run's small files, without checkpoints or events."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(study_dir.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(study_dir)
            top_level = len(rel.parts) == 1
            if (top_level and path.suffix in (".md", ".html", ".csv")) or rel.parts[0] == "figures" \
                    or (len(rel.parts) == 2 and path.name in KEPT):
                tar.add(path, arcname=str(Path(study_dir.name) / rel))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="where the JSON and the archives go ($OUT)")
    ap.add_argument("--work", default="gpu-work",
                    help="run folders with checkpoints; keep it to resume (default gpu-work)")
    ap.add_argument("--budget-s", type=float, default=470.0,
                    help="stop training after this many seconds (default 470)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", default="bf16", help="autocast dtype (default bf16; 'off' for fp32)")
    ap.add_argument("--profile", default="full", help="study profile (default full; tests: quick)")
    ap.add_argument("--data-dir", help="data root holding MNIST and CIFAR10-JPEG")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra train option for every run (tests: limit_train=64)")
    ap.add_argument("--studies", nargs="+", help="only these studies of the plan")
    ap.add_argument("--runs", nargs="+", metavar="PATTERN",
                    help="these runs of each planned study instead of the plan's (tests: a small one)")
    ap.add_argument("--dataset", help="train every run on this dataset instead (tests: a tiny "
                                      "imagefolder:PATH)")
    args = ap.parse_args(argv)
    result = run_plan(Path(args.out), Path(args.work), budget_s=args.budget_s, device=args.device,
                      amp=args.amp, profile=args.profile, data_dir=args.data_dir,
                      overrides=args.overrides, studies=args.studies, dataset=args.dataset,
                      runs=args.runs)
    finished = sum(r["status"] == "finished" for r in result["runs"].values())
    print(f"{finished} of {len(result['runs'])} started runs finished; "
          f"chunk {result['chunk_seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
