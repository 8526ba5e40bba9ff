"""Regenerate the README's Performance tables from benchmarks/results/*.json.

The tables sit between ``<!-- perf:NAME:start -->`` and ``<!-- perf:NAME:end -->`` markers;
nothing between them is typed by hand. Run: ``.venv/bin/python benchmarks/render_readme.py``.
``--check`` writes nothing and exits 1 when the README's tables differ from the results;
``--results-dir`` and ``--readme`` render other files (e.g. a smoke run's results).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str, results: Path = RESULTS) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in sorted(Path(results).glob(f"{name}-*.json"))]


def _source(path: Path, rec: dict) -> str:
    env = rec["environment"]
    rel = path.relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    load = env.get("machine_load") or {}
    idle = ("" if load.get("other_cpu_share") is None else
            f" Other processes used {100 * load['other_cpu_share']:.1f}% of the CPU meanwhile "
            f"({'otherwise idle' if load['otherwise_idle'] else 'NOT idle: times are pessimistic'}).")
    return (f"Device: {env['device_name']}; torch {env['torch_version']}; commit {env['git_commit']}; "
            f"{env['date']}.{idle} Source: [`{rel}`]({rel}).")


def _limited(rec: dict) -> str:
    return "**Smoke run on limited data (not a measurement).** " if rec.get("limited") else ""


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_mnist_time_to_acc(results: Path = RESULTS) -> str:
    parts = []
    for path, rec in _load("mnist_time_to_acc", results):
        rows = [[r["seed"], f"{r['reached_at_epoch'] or '-'}", f"{r['train_time_to_target_s']:.1f}" if r["train_time_to_target_s"] else "not reached",
                 f"{r['total_train_time_s']:.1f}", f"{r['final_test_acc']*100:.2f}%", f"{r['eval_time_s']:.1f}"]
                for r in rec["runs"]]
        median = rec["median_time_to_target_s"]
        reached = (f"median time until an epoch first reaches it {median:.1f} s" if median is not None
                   else "not every seed reached it at an epoch's end")
        if "met" in rec:
            headline = (f"Whole recipe: mean final test accuracy **{rec['mean_final_test_acc']*100:.2f}%**, "
                        f"training **{rec['mean_total_train_time_s']:.1f} s** on average "
                        f"({rec['max_total_train_time_s']:.1f} s at most); target >= {rec['target']*100:.1f}% "
                        f"mean in <= {rec['goal_s']:g} s "
                        f"{'on average' if rec.get('goal_on') == 'mean' else 'per seed'}: "
                        f"**{'met' if rec['met'] else 'missed'}**; {reached}.{_yardstick(rec)}")
        else:  # results written before the whole-recipe target existed
            headline = f"Median time to target: **{median:.1f} s**." if median is not None else f"Target {reached}."
        text = (_limited(rec) + f"Recipe `{rec['recipe']}` (model `{rec['model']}`, {rec['config']['epochs']} epochs), "
                f"target {rec['target']*100:.1f}% MNIST test accuracy, {rec['num_threads']} threads. {headline} "
                f"The test set is evaluated after every epoch only to time the target; the recipe "
                f"itself selects nothing on the test set.\n\n"
                + table(["seed", "epoch reached", "train s to target", "train s, whole recipe", "final test acc",
                         "eval s (excluded)"], rows))
        ref = rec.get("reference")
        if ref:
            reached = (f"reaches {rec['target']*100:.1f}% after {ref['train_time_to_target_s']:.1f} s (epoch {ref['reached_at_epoch']})"
                       if ref["train_time_to_target_s"] else f"does not reach {rec['target']*100:.1f}% in {len(ref['epochs'])} epochs")
            text += (f"\n\nReference point ({ref['pipeline']}): {ref['median_epoch_s']:.1f} s per epoch; {reached}; "
                     f"best test accuracy {ref['best_test_acc']*100:.2f}%.")
        parts.append(text + "\n\n" + _source(path, rec))
    return "\n\n".join(parts) or "_not run yet_"


def render_loader_vs_dataloader(results: Path = RESULTS) -> str:
    parts = []
    for path, rec in _load("loader_vs_dataloader", results):
        rows = [[r["pipeline"], f"{r['epoch_time_s']:.2f}", f"{r['images_per_s']:.0f}", f"{r['speedup_of_cnnbench']:.2f}x"] for r in rec["rows"]]
        parts.append(f"`{rec['model']}` on MNIST, batch {rec['batch_size']}, {rec['num_threads']} threads, one training epoch each "
                     f"(median of {rec['repeats']}).\n\n"
                     + table(["pipeline", "epoch s", "img/s", "cnnbench speed-up"], rows) + "\n\n" + _source(path, rec))
    return "\n\n".join(parts) or "_not run yet_"


def render_model_throughput(results: Path = RESULTS) -> str:
    parts = []
    for path, rec in _load("model_throughput", results):
        rows = []
        for r in rec["rows"]:
            rows.append([r["model"], r["input"], f"{r['params']/1e6:.2f}M", f"{r['macs']/1e6:.1f}M",
                         f"{r['train_images_per_s']:.0f}", f"{r['infer_images_per_s']:.0f}",
                         f"{r['train_gflops_per_s']:.1f}", f"{r['infer_gflops_per_s']:.1f}",
                         f"{r['ratio_vs_plain']*100:.0f}%" if r.get("ratio_vs_plain") else "-"])
        text = (f"Batch {rec['batch_size']}, {rec['settings']}. Training FLOPs counted as 3 x forward (6 x MACs), "
                f"inference as 2 x MACs. \"vs plain PyTorch\": cnnbench's training path (TensorLoader + "
                f"`loop.train_one_epoch`) as a percentage of a bare PyTorch loop on the same model (target >= "
                f"{rec.get('target_ratio_vs_plain', 0.7) * 100:.0f}% for compute-bound models).\n\n"
                + table(["model", "input", "params", "MACs", "train img/s", "infer img/s", "train GFLOP/s",
                         "infer GFLOP/s", "vs plain PyTorch"], rows))
        if rec.get("skipped"):
            text += "\n\nNot measured: " + "; ".join(f"`{r['model']}` {r['input']} ({r['error']})" for r in rec["skipped"]) + "."
        parts.append(text + "\n\n" + _source(path, rec))
    return "\n\n".join(parts) or "_not run yet_"


def _yardstick(rec: dict) -> str:
    """The MNIST result's training time in airbench94-length runs, when its run timed one."""
    ratio, stick = rec.get("mean_total_train_time_in_airbench94_runs"), rec.get("airbench94_yardstick")
    if ratio is None or not stick:
        return ""
    return (f" In the same run one epoch of airbench94's network and batch took {stick['epoch_s']:.1f} s "
            f"here (fp32, `benchmarks/yardstick.py`): the mean training is {ratio:.5f} of an "
            f"airbench94-length run ({stick['airbench94_run_s']:.0f} s at that speed).")


def _budget_label(b: dict) -> str:
    """A budget's name; a variant's with what it changes (``--name`` runs)."""
    if not b.get("variant_of"):
        return b["budget"]
    changes = ", ".join(f"{k}={v}" for k, v in b.get("overrides", {}).items())
    return f"{b['budget']} ({b['variant_of']} with {changes or 'no change'})"


def _measured_on(b: dict, rec: dict) -> str:
    """The CPU and day of one budget (budgets merged from several runs may differ)."""
    env = b.get("environment") or rec["environment"]
    name = env["device_name"].removeprefix("CPU: ").split(" (")[0]
    return f"{name}, {env['date'][:10]}"


def _in_yardsticks(budget: dict) -> str:
    """A budget's mean training as a fraction of an airbench94-length run of the yardstick
    timed in the same invocation (its epoch in brackets): fp32, and bf16 where it was timed."""
    cells = [f"{label}{budget[f'train_time_in_airbench94_runs{suffix}']:.3f} "
             f"({budget[f'airbench94_yardstick{suffix}']['epoch_s']:.0f} s)"
             for suffix, label in (("", ""), ("_bf16", "bf16: "))
             if budget.get(f"train_time_in_airbench94_runs{suffix}") is not None]
    return "; ".join(cells) or "-"


def render_cifar_cpu_time_to_acc(results: Path = RESULTS) -> str:
    parts = []
    for path, rec in _load("cifar_cpu_time_to_acc", results):
        rows = [[_budget_label(b), b["epochs"],
                 (f"{b['test_acc_mean']*100:.2f} ± {b['test_acc_std']*100:.2f}%" if b["seeds"] > 1
                  else f"{b['test_acc_mean']*100:.2f}% (1 seed)"),
                 ", ".join(f"{r['test_acc']*100:.2f}" for r in b["runs"]),
                 f"{b['train_time_s_mean']:.0f} ({max(r['train_time_s'] for r in b['runs']):.0f})",
                 f"{b['images_per_s_mean']:.0f}", f"{b['gflops_per_s_mean']:.1f}", b["seeds"],
                 _in_yardsticks(b),
                 (f"{b['target_acc']*100:.1f}% in {b['target_train_s']:.0f} s"
                  f"{' (mean)' if b.get('target_on') == 'mean' else ''}: {'met' if b['met'] else 'missed'}"
                  + (f" ({b['seeds']} of the 3 seeds asked)" if b["seeds"] < 3 else "")
                  if "met" in b else "-"),
                 _measured_on(b, rec)]
                for b in rec["budgets"]]
        parts.append(_limited(rec) + f"`{rec['recipe']}` recipe on `{rec['dataset']}`"
                     + (" (lossy JPEG mirror of CIFAR-10)" if rec["dataset"] == "cifar10_jpeg" else "")
                     + f", {rec['num_threads']} threads, "
                     f"all training images (val_split 0), evaluated once after training with TTA `{rec['tta']}`; training seconds "
                     f"include the whitening initialisation and exclude evaluation.\n\n"
                     + table(["budget", "epochs", "test acc (mean ± std)", "per seed (%)", "train s, mean (max)",
                              "img/s", "GFLOP/s (nominal)", "seeds",
                              "train / airbench94-length run (its epoch here; fp32, and bf16 where trained in it)",
                              "target", "measured on"], rows)
                     + "\n\n" + _source(path, rec))
    return "\n\n".join(parts) or "_not run yet_"


def render_ddp_scaling(results: Path = RESULTS) -> str:
    parts = []
    for path, rec in _load("ddp_scaling", results):
        rows = [[r["config"], r["threads_per_process"],
                 ", ".join(f"{run['train_time_s']:.1f}" for run in r["runs"]),
                 f"{r['median_train_time_s']:.1f}", f"{r['median_train_images_per_s']:.0f}",
                 f"{r['median_wall_s']:.1f}",
                 ", ".join(f"{run['load_average_before']:.1f}" for run in r["runs"]),
                 ", ".join(f"{100 * a:.2f}%" for a in r["test_acc"])]
                for r in rec["rows"]]
        per = rec["threads_in_all"] // rec["nproc"]
        text = (f"`cnnbench {rec['command']}`: one process with {rec['threads_in_all']} threads vs "
                f"`torchrun --nproc_per_node={rec['nproc']}` ({rec['backend']}) with {per} thread"
                f"{'s' if per > 1 else ''} per process: the same cores, the same global batches. "
                f"{rec['repeats']} runs each, taken in alternation. Training seconds count the "
                f"training loops only; wall seconds the whole command (starting the processes, "
                f"loading the data, evaluation, checkpoints).\n\n"
                + table(["configuration", "threads per process", "train s per run",
                         "median train s", "median train img/s", "median wall s",
                         "load average before each run", "test acc per run"], rows))
        if rec.get("note"):
            text += f"\n\n{rec['note']}"
        parts.append(text + "\n\n" + _source(path, rec))
    return "\n\n".join(parts) or "_not run yet_"


def _pct(x) -> str:
    return f"{x * 100:.2f}%" if x is not None else "-"


def _secs(x) -> str:
    return f"{x:.1f}" if x is not None else "-"


def render_gpu_speed(results: Path = RESULTS) -> str:
    """The device script's results (benchmarks/gpu_speed.py), GPU files only: a CPU file is
    a smoke run of the script, never a result."""
    parts = []
    for path, rec in _load("gpu_speed", results):
        if rec["environment"]["device"] == "cpu":
            continue
        p = rec["parts"]
        rows = []
        cifar = p.get("cifar", {})
        for r in cifar.get("runs", []):
            rows.append([f"`fast` {cifar['dataset']}, warm", r["seed"], _pct(r["test_acc"]), _secs(r["train_time_s"]), "-"])
        cold = cifar.get("cold", {})
        if cold.get("test_acc") is not None:
            rows.append([f"`fast` {cifar['dataset']}, cold start", 0, _pct(cold["test_acc"]),
                         _secs(cold["train_time_s"]), f"process {_secs(cold['process_wall_s'])} s"])
        comp = p.get("cifar_compile", {})
        if comp.get("test_acc") is not None:
            rows.append([f"`fast --compile` {comp['dataset']}", 0, _pct(comp["test_acc"]), _secs(comp["train_time_s"]),
                         f"compilation ~{_secs(comp.get('compile_time_s'))} s"])
        mnist = p.get("mnist", {})
        for r in mnist.get("runs", []):
            rows.append([f"`fast` {mnist['dataset']}", r["seed"], _pct(r["test_acc"]), _secs(r["train_time_s"]), "-"])
        text = _limited(rec) + (f"`benchmarks/gpu_speed.py` (one prepared script, deadline {rec['deadline_s']:.0f} s). "
                                f"Training seconds exclude evaluation; cold start = the first run in a fresh process.\n\n"
                                + table(["run", "seed", "test acc", "train s", "note"], rows))
        if "met" in cifar:
            text += (f"\n\nFast CIFAR recipe: {_pct(cifar.get('test_acc_mean'))} mean over {cifar['seeds']} warm seeds, "
                     f"target >= {cifar['target_acc']*100:.1f}% in <= {cifar['target_train_s']:.1f} s of training "
                     f"({cifar['reference']}): **{'met' if cifar['met'] else 'missed'}**.")
        statuses = "; ".join(f"{k}: {v.get('status')}" for k, v in p.items())
        parts.append(text + f"\n\nParts: {statuses}.\n\n" + _source(path, rec))
    return "\n\n".join(parts) or (
        "_No GPU measurement is committed yet._ The sessions that built the GPU path had no GPU; "
        "`benchmarks/gpu_speed.py` (one command, at most 8 minutes on one GPU; its docstring says how) "
        "measures the fast recipes cold and warm, with `--compile`, and every model's throughput "
        "against plain PyTorch, and its JSON renders here. No GPU number appears in this README "
        "until a run produced it.")


RENDERERS = {
    "gpu_speed": render_gpu_speed,
    "mnist_time_to_acc": render_mnist_time_to_acc,
    "loader_vs_dataloader": render_loader_vs_dataloader,
    "model_throughput": render_model_throughput,
    "cifar_cpu_time_to_acc": render_cifar_cpu_time_to_acc,
    "ddp_scaling": render_ddp_scaling,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="default: benchmarks/results")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="default: the README")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when the README's tables are not the rendered ones")
    args = ap.parse_args(argv)
    readme = args.readme
    old = readme.read_text()
    text = old
    for name, fn in RENDERERS.items():
        pattern = re.compile(rf"(<!-- perf:{name}:start -->\n).*?(\n<!-- perf:{name}:end -->)", re.S)
        if not pattern.search(text):
            print(f"README has no markers for {name}", file=sys.stderr)
            continue
        text = pattern.sub(lambda m: m.group(1) + fn(args.results_dir) + m.group(2), text)
    if args.check:
        print(f"{readme} is {'up to date' if text == old else 'OUT OF DATE: run benchmarks/render_readme.py'}")
        return 0 if text == old else 1
    readme.write_text(text)
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
