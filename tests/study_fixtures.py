"""A tiny study file and a stub trainer for the study tests (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from report_fixtures import write_fake_run

TINY = {
    "name": "tiny",
    "description": "a test study",
    "report": "what the lab report did",
    "defaults": {"model": "lenet5", "dataset": "mnist", "epochs": 3, "seed": 42,
                 "scheduler": "none"},
    "profiles": {"quick": {"epochs": 1, "limit_train": 64, "limit_eval": 64},
                 "cpu": {"cap": {"epochs": 2, "limit_train": 100}}},
    "runs": [
        {"name": "a", "step": "baseline"},
        {"name": "b", "init": "c", "step": "+ b", "lr": 1e-4},
        {"name": "c", "step": "+ c", "epochs": 5,
         "reference": {"value": 50, "metric": "test_acc", "wording": "c reached 50%"}},
    ],
}


def write_study(tmp_path: Path, study: dict = TINY, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


class StubTrainer:
    """Stands in for cnnbench.training.train_run: records calls, writes a fake run directory."""

    def __init__(self, fail: tuple[str, ...] = ()):
        self.calls: list[tuple[str, object, bool]] = []
        self.fail = fail

    def __call__(self, config, out_dir, resume=False, argv=None, progress=True):
        name = Path(out_dir).name
        self.calls.append((name, config, resume))
        if name in self.fail:
            raise RuntimeError(f"deliberate failure of {name}")
        write_fake_run(out_dir, model=config.model, dataset=config.dataset, seed=config.seed,
                       test_acc=0.5 + 0.01 * (config.seed - 42), profile=config.profile,
                       config=config.to_dict(),
                       limited=bool(config.limit_train or config.limit_eval))
        return json.loads((Path(out_dir) / "summary.json").read_text())
