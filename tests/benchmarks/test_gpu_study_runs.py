"""benchmarks/gpu_study_runs.py on the CPU with tiny sizes: chunks that stop at their budget,
resume on the next call, and send back only small files."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

from engine_fixtures import _tiny_folder_files, tiny_folder  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_study_runs",
                                                  ROOT / "benchmarks" / "gpu_study_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow(seconds=8)  # started first, so that two workers end together
def test_chunks_resume_and_send_back_no_checkpoints(tiny_folder, tmp_path, capsys):
    script = _script()
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--out", str(out), "--work", str(work), "--device", "cpu", "--amp", "off",
            "--profile", "quick", "--studies", "mnist-five", "--dataset", tiny_folder.dataset,
            "--set", "limit_train=32",
            "--set", "limit_eval=16", "--set", "num_threads=1",
            # one small run of the plan's mnist-five (its alexnet_large, 58M parameters, spends
            # seconds writing checkpoints that test nothing here)
            "--runs", "resnet18-28px"]
    # stopped early (the run's start-up alone takes longer than 1 s): a chunk
    assert script.main(args + ["--budget-s", "1"]) == 0
    first = json.loads((out / "gpu_study_runs.json").read_text())
    assert first["chunks"][0]["status"].startswith("stopped at the chunk budget")
    assert first["chunk_seconds"] < 30
    assert script.main(args + ["--budget-s", "600"]) == 0  # the next call finishes the plan
    result = json.loads((out / "gpu_study_runs.json").read_text())
    assert result["chunks"] == [dict(result["chunks"][0], status="done")]
    assert sorted(result["runs"]) == ["mnist-five/resnet18-28px"]
    assert {r["status"] for r in result["runs"].values()} == {"finished"}
    assert result["device"] == "cpu" and result["git_commit"] and result["date"]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_study_runs.json", "mnist-five.tar.gz"]
    with tarfile.open(out / "mnist-five.tar.gz") as tar:
        names = tar.getnames()
    assert "mnist-five/report.md" in names and "mnist-five/resnet18-28px/summary.json" in names
    assert not [n for n in names if n.endswith(".ckpt") or "tfevents" in n]
    assert any((work / "mnist-five" / "resnet18-28px").glob("*.ckpt"))  # kept there, to resume


def _finished_run(work: Path) -> None:
    (work / "mnist-five" / "a").mkdir(parents=True)
    (work / "mnist-five" / "a" / "summary.json").write_text('{"status": "finished"}')


def _intercept_cnnbench(monkeypatch, script, name: str, seen: list) -> None:
    """``script.subprocess.<name>`` records ``cnnbench`` commands (from ``cnnbench`` on) instead
    of starting them; any other command (git, for the environment) runs."""
    real = getattr(script.subprocess, name)
    monkeypatch.setattr(script.subprocess, name, lambda cmd, **kw: seen.append(cmd[3:])
                        if cmd[1:3] == ["-m", "cnnbench"] else real(cmd, **kw))


def _plan(script, tmp_path: Path, work: Path, budget_s: float) -> dict:
    return script.run_plan(tmp_path / "out", work, budget_s=budget_s, device="cpu", amp="off",
                           profile="quick", data_dir=None, overrides=[], studies=["mnist-five"])


@pytest.mark.parametrize("ended", [0, None, 1], ids=["chunk-ended", "chunk-stopped", "chunk-failed"])
def test_a_stopped_chunks_study_is_reported_separately(tmp_path, monkeypatch, ended):
    """A chunk that ends has written its study's report (`study run` writes it); one stopped at
    the budget, or whose process failed, may not have, so the script runs `cnnbench report` on
    what finished (the study's process is a stand-in)."""
    script = _script()
    work, reports = tmp_path / "work", []

    class Study:  # the `study run` process: one run finished, then it ends or is stopped
        def __init__(self, cmd, **kwargs):
            assert "--no-report" not in cmd
            _finished_run(work)
            self.pid = 0

        def wait(self, timeout=None):
            if ended is not None or timeout is None:  # None: waited for after the kill
                return ended or 0
            raise script.subprocess.TimeoutExpired("study", timeout)

    monkeypatch.setattr(script.subprocess, "Popen", Study)
    monkeypatch.setattr(script.os, "killpg", lambda *args: None)
    _intercept_cnnbench(monkeypatch, script, "run", reports)
    result = _plan(script, tmp_path, work, budget_s=60)
    assert result["chunks"][0]["status"] == {
        0: "done", 1: "exit 1", None: "stopped at the chunk budget (resumes on the next call)"}[ended]
    assert reports == ([] if ended == 0 else [["report", str(work / "mnist-five")]])
    assert result["runs"] == {"mnist-five/a": dict.fromkeys(result["runs"]["mnist-five/a"], None)
                              | {"status": "finished"}}


def test_a_study_not_started_keeps_its_report(tmp_path, monkeypatch):
    """No budget left for a study: no process for it, and no second report of the runs an
    earlier call finished (that call wrote one)."""
    script = _script()
    work, started = tmp_path / "work", []
    _finished_run(work)
    _intercept_cnnbench(monkeypatch, script, "Popen", started)
    _intercept_cnnbench(monkeypatch, script, "run", started)
    result = _plan(script, tmp_path, work, budget_s=0)
    assert result["chunks"] == [{"study": "mnist-five", "status": "not started: chunk budget used"}]
    assert started == [] and list(result["runs"]) == ["mnist-five/a"]
