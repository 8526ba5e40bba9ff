"""How long the commands a user types to look around take to answer (target: <= 0.5 s each).

Each command is run as a user runs it, through the installed ``cnnbench`` entry point in a new
process, ``--repeats`` times in turn; the median, min and max wall seconds are reported. One
more run under ``python -X importtime`` lists the heavy packages (torch, matplotlib, ...) it
imported, which must be none (tests/test_cli_startup.py guards that on every test run).

Run: ``.venv/bin/python benchmarks/cli_startup.py`` (seconds; on a quiet machine).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import run_main, write_result

COMMANDS = [
    "--help", "--version", "train --help", "models", "models --reports", "recipes",
    "study list", "completion bash", "train --epochz 1",
]
HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "PIL", "scipy")
TARGET_S = 0.5


def entry_point() -> list[str]:
    """The ``cnnbench`` script beside this interpreter, else ``python -m cnnbench``."""
    script = Path(sys.executable).with_name("cnnbench")
    if script.exists():
        return [str(script)]
    found = shutil.which("cnnbench")
    return [found] if found else [sys.executable, "-m", "cnnbench"]


def heavy_imports(args: list[str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnbench", *args],
                          capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    return [m for m in HEAVY if m in names]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--results-dir", help="write the JSON here instead of benchmarks/results/")
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. which code was timed, "
                                               "when PYTHONPATH points at another checkout)")
    args = ap.parse_args()

    command = entry_point()
    times: dict[str, list[float]] = {c: [] for c in COMMANDS}
    subprocess.run([*command, "--version"], capture_output=True)  # warm the file cache
    for _ in range(args.repeats):
        for c in COMMANDS:  # interleaved, so a slow moment hits every command alike
            t0 = time.perf_counter()
            subprocess.run([*command, *c.split()], capture_output=True)
            times[c].append(time.perf_counter() - t0)
    rows = []
    for c in COMMANDS:
        row = {"command": f"cnnbench {c}", "median_s": round(statistics.median(times[c]), 4),
               "min_s": round(min(times[c]), 4), "max_s": round(max(times[c]), 4),
               "heavy_imports": heavy_imports(c.split())}
        row["meets_target"] = row["median_s"] <= TARGET_S and not row["heavy_imports"]
        rows.append(row)
        print(f"{row['command']:<32} median {row['median_s']:.3f} s (min {row['min_s']:.3f}, "
              f"max {row['max_s']:.3f}); heavy imports: {', '.join(row['heavy_imports']) or 'none'}")
    ok = all(r["meets_target"] for r in rows)
    print(f"target <= {TARGET_S} s and no heavy import: {'met' if ok else 'NOT met'}")
    write_result("cli_startup", {"entry_point": " ".join(Path(p).name for p in command),
                                 "repeats": args.repeats, "target_s": TARGET_S, "note": args.note,
                                 "all_meet_target": ok, "commands": rows},
                 results_dir=args.results_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
