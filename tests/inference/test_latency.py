"""cnnbench.inference.latency: latency at batch 1 and throughput at batch 256, in PyTorch and
ONNX Runtime, for a model, a run (latency.json) and `cnnbench models --latency`."""

from __future__ import annotations

import json

import pytest
from torch import nn

from cnnbench.cli import main
from cnnbench.inference import latency
from engine_fixtures import _tiny_folder_files, quick_options, tiny_folder  # noqa: F401


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(latency, "MIN_TIME_S", 0.01)


def test_timed_takes_the_median_of_at_least_three_calls_after_two_warm_ups():
    calls = []
    durations = iter([0, 0, 0.03, 0.01, 0.02])

    def call():
        import time
        time.sleep(next(durations))
        calls.append(1)

    seconds = latency._timed(call, min_time_s=0.0)
    assert len(calls) == 5 and seconds == pytest.approx(0.02, abs=0.008)


def test_measure_in_pytorch_and_onnx_runtime():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).train()
    result = latency.measure(model, (1, 8, 8))
    assert model.training is False and result["input"] == [1, 8, 8] and result["threads"] >= 1
    for engine in ("eager", "onnxruntime"):
        assert result[engine]["batch1_ms"] > 0 and result[engine]["batch256_images_per_s"] > 0


def test_without_onnx_runtime_it_says_why(monkeypatch):
    import cnnbench.inference.export as export

    def broken(*_args, **_kw):
        raise RuntimeError("no onnxruntime here\nmore")

    monkeypatch.setattr(export, "write_onnx", broken)
    result = latency.measure(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2))
    assert result["onnxruntime_error"] == "no onnxruntime here" and "eager" in result


@pytest.fixture
def no_onnx_export(monkeypatch):
    """ONNX Runtime's numbers without its export (seconds each; tested once above)."""
    monkeypatch.setattr(latency, "_onnx_rates", lambda model, shape, min_time_s: {
        "batch1_ms": 1.0, "batch256_images_per_s": 256.0})


def test_models_latency_lists_each_models_numbers(capsys, no_onnx_export):
    assert main(["models", "--pattern", "lenet5", "--dataset", "mnist", "--latency", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["models"]
    assert row["name"] == "lenet5" and row["latency"]["input"] == [1, 28, 28]
    assert row["latency"]["eager"]["batch1_ms"] > 0 and row["latency"]["onnxruntime"]["batch1_ms"] == 1.0


def test_a_run_gets_latency_json_and_eval_takes_one_mode(tiny_folder, capsys, no_onnx_export):
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    out = tiny_folder.out / "timed"
    train_run(resolve_config(quick_options(tiny_folder, epochs=1)), out_dir=out, progress=False)
    assert main(["eval", "--checkpoint", str(out), "--latency"]) == 0
    assert "ms per image at batch 1" in capsys.readouterr().out
    written = json.loads((out / "latency.json").read_text())
    assert written["model"] == "lenet5" and written["eager"]["batch1_ms"] > 0
    assert main(["eval", "--checkpoint", str(out), "--latency", "--corruptions"]) == 2
    assert "only one of --corruptions, --latency" in capsys.readouterr().err
