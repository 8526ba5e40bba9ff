"""`cnnbench search`'s Ray options. The search on a Ray cluster (two trials at a time, each
reporting its epochs to the storage) is tested with the study on the same cluster:
tests/studies/test_study_ray.py."""

from __future__ import annotations

import pytest

pytest.importorskip("optuna")  # the `search` extra, installed by ./test.sh


def test_ray_options_without_the_ray_executor_are_one_line(tmp_path, capsys):
    from cnnbench.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 1.0e-4, high: 0.1, log: true}\n")
    assert main(["search", "--space", str(space), "--cpus-per-run", "2",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--cpus-per-run apply to --executor ray; add it or leave them out")
    assert len(err.splitlines()) == 1
