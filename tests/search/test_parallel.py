"""`cnnbench search --executor ray`: trials as Ray tasks, two at a time on 2 CPUs, each
reporting its epochs to the search's storage itself (cnnbench.search.parallel)."""

from __future__ import annotations

import pytest

from cnnbench.search import parse_space, run_search
from cnnbench.training.rundir import read_json, read_jsonl
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401

ray = pytest.importorskip("ray")  # the `cluster` extra, installed by ./test.sh
pytest.importorskip("optuna")


@pytest.mark.slow  # a Ray instance: started first
def test_trials_run_two_at_a_time_as_ray_tasks(tiny_folder):
    from cnnbench.studies.cluster import keep_sigterm

    options = quick_options(tiny_folder, epochs=2, batch_size=32, lr=3e-3)
    options.pop("log_every")
    out, lines = tiny_folder.out / "search", []
    with keep_sigterm():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = run_search(options, parse_space({"lr": {"low": 1e-4, "high": 3e-2, "log": True}}),
                            out, trials=3, log=lines.append, executor="ray", cpus_per_run=1)
    finally:
        ray.shutdown()
    assert "Ray: 2 trials at a time" in lines
    trials = result["trials"]
    assert len(trials) == 3 and {t["state"] for t in trials} <= {"complete", "pruned"}
    assert trials[0]["baseline"] and trials[0]["params"] == {"lr": 3e-3}
    for t in trials:  # what each task reported to the storage is its run's validation curve
        metrics = read_jsonl(f"{t['run_dir']}/metrics.jsonl")
        assert t["val_acc_by_epoch"] == {m["epoch"]: m["val_acc"] for m in metrics}
        summary = read_json(f"{t['run_dir']}/summary.json")
        assert (summary.get("test_acc") is not None) == (t["number"] == result["best"]["trial"])
    # the first two trials were out at the same time: each began before the other ended
    import optuna

    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search.db'}")
    first, second = stored.get_trials()[:2]
    assert first.datetime_start < second.datetime_complete
    assert second.datetime_start < first.datetime_complete


def test_ray_options_without_the_ray_executor_are_one_line(tmp_path, capsys):
    from cnnbench.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 1.0e-4, high: 0.1, log: true}\n")
    assert main(["search", "--space", str(space), "--cpus-per-run", "2",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--cpus-per-run apply to --executor ray; add it or leave them out")
    assert len(err.splitlines()) == 1
