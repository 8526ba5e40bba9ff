"""Run every mutant mutmut left as "survived" again, directly: the tests mutmut's own stats
map to the mutated function, in the mutants/ tree, with the mutant switched on.

mutmut 3.8.1 reported mutants as survived that the tests it selected for them kill when they
are run this way (e.g. ``inference.images._flatten`` without ``"RGBA"``: the RGBA case of
``test_images_of_every_mode_and_size_become_the_models_input`` fails), so a survivor is only
counted as one when this re-run agrees. Results go to ``mutants/recheck.json``
(``{mutant: "killed" | "survived" | "no tests"}``), which ``scripts/mutation_report.py`` reads.

    .venv/bin/python scripts/mutation_recheck.py [--jobs 2] [--budget-s 1800]

A mutant not re-run before the budget ends keeps mutmut's status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUTANTS = REPO / "mutants"
RESULT = MUTANTS / "recheck.json"


def survivors() -> list[str]:
    out = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results"], cwd=REPO,
                         capture_output=True, text=True).stdout
    return [line.strip().rpartition(": ")[0] for line in out.splitlines()
            if line.strip().endswith(": survived")]


def skipped_tests() -> tuple[list[str], list[str]]:
    """The ``--ignore``/``--deselect`` arguments of pyproject's mutmut pytest arguments."""
    text = (REPO / "pyproject.toml").read_text()
    ignored = re.findall(r'--ignore=([^"]+)"', text)
    deselected = re.findall(r'--deselect=([^"]+)"', text)
    return ignored, deselected


def run_one(name: str, tests: list[str], timeout: float) -> str:
    if not tests:
        return "no tests"
    env = {**os.environ, "PYTHONPATH": "src", "MUTANT_UNDER_TEST": name, "CNNBENCH_OFFLINE": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               *tests], cwd=MUTANTS, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed"  # a mutant that hangs the tests is detected (mutmut's "timeout")
    return {0: "survived", 1: "killed"}.get(done.returncode, f"error {done.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=1800.0)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per mutant")
    args = parser.parse_args()
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    ignored, deselected = skipped_tests()
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    def tests_of(name: str) -> list[str]:
        function = re.sub(r"__mutmut_\d+$", "", name)
        return sorted(t for t in stats.get(function, ())
                      if not any(t.startswith(i) for i in ignored) and t not in deselected)

    # the mutants with the fewest tests first: most re-checks within the budget
    todo = sorted((n for n in survivors() if n not in results), key=lambda n: len(tests_of(n)))
    start = time.monotonic()

    def job(name: str) -> tuple[str, str | None]:
        if time.monotonic() - start > args.budget_s:
            return name, None
        return name, run_one(name, tests_of(name), args.timeout_s)

    with ThreadPoolExecutor(args.jobs) as pool:
        for name, status in pool.map(job, todo):
            if status is not None:
                results[name] = status
                RESULT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
                print(f"{status}: {name}", flush=True)
    left = sum(1 for n in todo if n not in results)
    print(f"re-ran {len(todo) - left} of {len(todo)} survivors; "
          f"{sum(v == 'killed' for v in results.values())} killed in all; {left} left to mutmut's status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
