"""The commands a user types to look around answer without importing torch or matplotlib
(issue #30: `cnnbench --help` took 4-6 s, each typo 4-5 s; `eval "$(cnnbench completion bash)"`
paid it in every new shell). benchmarks/cli_startup.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "PIL", "scipy")

# Runs the command line in a fresh interpreter, then prints which heavy packages it imported.
_PROBE = """
import json, sys
sys.argv = ["cnnbench", *sys.argv[1:]]
from cnnbench.cli import main
try:
    code = main()
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("\\nHEAVY " + json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
sys.exit(code or 0)
"""

FAST_COMMANDS = [
    ["--help"], ["--version"], ["train", "--help"], ["study", "--help"],
    ["models"], ["models", "--reports"], ["models", "--dataset", "mnist", "--pattern", "resnet*"],
    ["models", "--dataset", "fashion-mnist", "--json"],
    ["recipes"], ["recipes", "fast"], ["study", "list"],
    ["completion", "bash"], ["completion", "zsh"],
    ["train", "--epochz", "1"],  # a typo is answered as fast
]


def _heavy_imports(args: list[str]) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
                          capture_output=True, text=True, timeout=120)
    line = [l for l in proc.stderr.splitlines() if l.startswith("HEAVY ")][-1]
    return proc.returncode, json.loads(line[len("HEAVY "):]), proc.stdout


@pytest.mark.parametrize("args", FAST_COMMANDS, ids=" ".join)
def test_looking_around_imports_no_torch(args):
    code, heavy, out = _heavy_imports(args)
    assert code == (2 if "--epochz" in args else 0)
    assert heavy == [], f"`cnnbench {' '.join(args)}` imported {heavy}"
    if args[0] == "models":
        assert "resnet18" in out or "lenet5_five" in out  # a real table, not an empty one


def test_the_listing_read_from_the_catalog_equals_the_one_computed_with_torch(monkeypatch, capsys):
    """`cnnbench models` prints the same table from the catalog as from the models themselves."""
    from cnnbench.cli import main
    from cnnbench.models import catalog

    # a few models each (building every one at every input takes 15 s); the filters are the
    # catalog's own, the rows are computed by the same function that wrote it
    for args in (["models", "--pattern", "*net*1*"], ["models", "--reports", "--json", "--pattern", "lenet*"],
                 ["models", "--dataset", "fashion_mnist", "--pattern", "mobilenet*"]):
        assert catalog.load() is not None
        assert main(args) == 0
        stored = capsys.readouterr().out
        monkeypatch.setattr(catalog, "load", lambda: None)  # as if the catalog were stale
        assert main(args) == 0
        assert capsys.readouterr().out == stored
        monkeypatch.undo()
