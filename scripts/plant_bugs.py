"""Plant, one at a time, the six one-line bugs the suite once let through (issue #29), run the
test written for each and say whether it caught it; every file is restored afterwards.

    .venv/bin/python scripts/plant_bugs.py       # exit 1 if a planted bug passes its test

Not part of CI (it edits the source tree while it runs; about a minute).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (file, the correct line(s), the bug, the test that must fail with the bug)
BUGS = [
    ("src/cnnbench/training/muon.py", 'if not group["muon"] and wd:', "if wd:",
     "tests/training/test_optim.py::test_muon_filters_take_only_decoupled_decay_never_coupled_l2"),
    ("src/cnnbench/config/resolve.py",
     'device = flags.get("device", file_values.get("device", DEFAULTS["device"]))',
     'device = flags.get("device", DEFAULTS["device"])',
     "tests/config/test_recipes.py::test_the_recipes_device_is_read_from_a_config_file_as_from_a_flag"),
    ("src/cnnbench/inference/images.py", "if grey.shape == (28, 28) and dark:",
     "if grey.shape == (28, 28):",
     "tests/inference/test_predict.py::test_a_28x28_dark_digit_on_white_is_inverted_not_taken_as_mnist"),
    ("src/cnnbench/report/records.py", 'return "limited" if any(r.limited and not',
     'return "limited" if all(r.limited and not',
     "tests/report/test_report_comparable.py::test_a_group_with_one_limited_seed_is_capped_and_gets_no_difference"),
    ("src/cnnbench/training/loop.py",
     "            objective.backward()\n            if grad_clip > 0:\n"
     "                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)",
     "            objective.backward()",
     "tests/training/test_loop.py::test_gradient_clipping_bounds_the_fp32_step"),
    ("src/cnnbench/training/setup.py", "nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)",
     "nn.CrossEntropyLoss()", "tests/training/test_run.py::test_the_training_loss_is_smoothed_as_asked"),
]


def main() -> int:
    missed = 0
    for path, good, bug, test in BUGS:
        file = REPO / path
        text = file.read_text()
        if text.count(good) != 1:
            print(f"{path}: the line to break is not there once; update {Path(__file__).name}")
            missed += 1
            continue
        file.write_text(text.replace(good, bug))
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                                  cwd=REPO, capture_output=True, text=True)
        finally:
            file.write_text(text)
        caught = done.returncode != 0
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}: {path}: {bug.strip().splitlines()[0]!r} -> {test}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
