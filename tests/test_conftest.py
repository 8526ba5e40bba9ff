"""The test suite's own start: pytest-xdist's controller process loads ``tests/conftest.py``
before it starts the workers and runs no test itself, so the file must not import torch (it
took ~4 s of every ``./test.sh`` before the first test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

TESTS = Path(__file__).resolve().parent

_PROBE = """
import json, sys
from types import SimpleNamespace
sys.path.insert(0, {tests!r})
import conftest
plugins = []
manager = SimpleNamespace(import_plugin=plugins.append)
config = SimpleNamespace(option=SimpleNamespace(dist={dist!r}, tx={tx!r}), pluginmanager=manager)
if {worker!r}:
    config.workerinput = {{}}
conftest.pytest_configure(config)
print(json.dumps({{"plugins": plugins,
                  "heavy": [m for m in ("torch", "torchvision", "numpy", "PIL") if m in sys.modules]}}))
"""


def _configure(dist: str, worker: bool, tx: list[str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(tests=str(TESTS), dist=dist, worker=worker,
                                                                tx=tx or [])],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_controller_imports_no_torch_and_the_workers_get_every_fixture():
    controller = _configure("worksteal", worker=False, tx=["popen", "popen"])  # -n 2
    assert controller == {"plugins": [], "heavy": []}
    # a worker, and pytest without workers (-n 0, -p no:xdist, or --dist without -n), register
    # the inference fixtures
    assert _configure("worksteal", worker=True, tx=["popen", "popen"])["plugins"] == ["inference_fixtures"]
    assert _configure("no", worker=False)["plugins"] == ["inference_fixtures"]
    assert _configure("load", worker=False)["plugins"] == ["inference_fixtures"]


def test_slow_tests_come_first_the_longest_first_the_rest_in_their_order():
    import conftest

    class Item:
        def __init__(self, name, seconds=None, slow=False):
            self.name = name
            self.marker = (SimpleNamespace(kwargs={} if seconds is None else {"seconds": seconds})
                           if slow else None)

        def get_closest_marker(self, name):
            return self.marker if name == "slow" else None

    items = [Item("a"), Item("ray", 28, True), Item("b"), Item("entry", 2, True),
             Item("unsized", None, True), Item("c"), Item("killed", 20, True)]
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.name for i in items] == ["ray", "killed", "unsized", "entry", "a", "b", "c"]
