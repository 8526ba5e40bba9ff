"""scripts/pick-python.sh: the Python that .venv is made with. python3 on PATH, unless another
Python >= 3.11 runs Python code at least 10% faster; $PYTHON always wins. The candidates here are
fake interpreters (shell scripts answering the probe with a path and a time), the system's list
emptied, so the test sees only them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick-python.sh"


def fake(bin_dir: Path, name: str, seconds: float | None) -> str:
    """An interpreter that answers the probe with its path and ``seconds``, or fails it (None:
    too old, or without venv)."""
    path = bin_dir / name
    answer = f'echo "{path}"; echo {seconds}' if seconds is not None else "exit 1"
    path.write_text(f"#!/bin/sh\n{answer}\n")
    path.chmod(0o755)
    return str(path)


def pick(bin_dir: Path, **env) -> subprocess.CompletedProcess:
    tools = bin_dir.parent / "tools"  # bash and the script's helpers, nothing else
    tools.mkdir(exist_ok=True)
    for tool in ("sed", "awk", "readlink", "bash"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    base = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**base, "PATH": f"{bin_dir}:{tools}", "CNNBENCH_SYSTEM_PYTHONS": "", **env})


@pytest.fixture
def bin_dir(tmp_path):
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


def test_a_python_at_least_10_percent_faster_is_picked_and_said(bin_dir):
    fake(bin_dir, "python3", 0.020)
    faster = fake(bin_dir, "python3.12", 0.010)
    fake(bin_dir, "python3.13", 0.015)
    done = pick(bin_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        faster, f"ran a short Python probe 2.0x as fast as python3 ({bin_dir / 'python3'})"]


def test_python3_on_path_stays_unless_another_is_10_percent_faster(bin_dir):
    first = fake(bin_dir, "python3", 0.0100)
    fake(bin_dir, "python3.12", 0.0095)  # 5% faster: not worth leaving the user's python3
    done = pick(bin_dir)
    assert done.stdout.splitlines() == [first, "python3 on PATH"], done.stderr


def test_too_old_or_without_venv_is_passed_over(bin_dir):
    fake(bin_dir, "python3", None)
    only = fake(bin_dir, "python3.11", 0.5)
    fake(bin_dir, "python3.12", None)
    assert pick(bin_dir).stdout.splitlines() == [only, "python3 on PATH"]


def test_python_set_wins_and_no_python_is_one_line(bin_dir):
    fake(bin_dir, "python3", 0.02)
    fake(bin_dir, "python3.12", 0.001)
    chosen = fake(bin_dir, "python3.11", 0.5)  # its version check passes (exit 0)
    assert pick(bin_dir, PYTHON=chosen).stdout.splitlines() == [chosen, "PYTHON is set"]
    too_old = fake(bin_dir, "python3.10", None)
    done = pick(bin_dir, PYTHON=too_old)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"cnnbench needs Python >= 3.11 (PYTHON={too_old} is not); "
                           "set PYTHON=/path/to/python3.11 and retry.\n")
    (bin_dir / "python3.11").unlink()
    (bin_dir / "python3").unlink()
    (bin_dir / "python3.12").unlink()
    done = pick(bin_dir)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("cnnbench needs Python >= 3.11 with its venv module; "
                           "set PYTHON=/path/to/python3.11 and retry.\n")


def test_the_real_probe_runs_in_this_python(tmp_path):
    """The probe itself (not a fake's answer): this interpreter qualifies and answers its path."""
    bin_dir = tmp_path / "real"
    bin_dir.mkdir()
    import sys

    (bin_dir / "python3").symlink_to(sys.executable)
    done = pick(bin_dir)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.splitlines()[0]).resolve() == Path(sys.executable).resolve()
