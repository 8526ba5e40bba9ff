"""The time estimate of a study run (cnnbench.studies.estimate)."""

from __future__ import annotations

import pytest

from cnnbench.studies import CostEstimate, duration_text, estimate_seconds, load_study


def test_estimate_counts_images_views_and_macs():
    from cnnbench.models.profile import count_macs
    from cnnbench.models import create_model

    options = dict(model="lenet5", dataset="mnist", epochs=2, val_split=0.1, limit_train=1000,
                   limit_eval=500, tta="mirror")
    cost = estimate_seconds(options, gflops=10.0, overhead_s=3e-4, measured=False)
    assert cost.train_images == 2 * 1000
    assert cost.eval_images == (2 * 500 + 500) * 2  # validation every epoch + test, 2 TTA views
    macs = count_macs(create_model("lenet5", num_classes=10, in_chans=1, input_size=28), (1, 28, 28))
    assert cost.macs == macs
    expected = 2000 * (6 * macs / 10e9 + 3e-4) + 3000 * (2 * macs / 10e9 + 1e-4)
    assert cost.seconds == pytest.approx(expected)
    # the full MNIST split without limits: 54,000 training and 6,000 validation images
    full = estimate_seconds(dict(model="lenet5", dataset="mnist", epochs=1, val_split=0.1))
    assert (full.train_images, full.eval_images) == (54000, 6000 + 10000)
    assert estimate_seconds(dict(model="lenet5", dataset="imagefolder:/nonexistent")) is None


def test_macs_are_counted_for_each_model_input_and_model_option():
    """The MACs are counted once per model, input and model options (a study's seeds share
    them), never taken from another input or width."""
    from cnnbench.models import create_model
    from cnnbench.models.profile import count_macs

    def macs(**options):
        return estimate_seconds(dict(model="fastnet", dataset="cifar10", epochs=1, **options)).macs

    def counted(size, **kwargs):
        model = create_model("fastnet", num_classes=10, in_chans=3, input_size=size, **kwargs)
        return count_macs(model, (3, size, size))

    narrow = {"widths": [16, 32, 32]}
    assert macs() == macs(seed=1) == counted(32)
    assert macs(model_kwargs=narrow) == counted(32, **narrow) < macs()
    assert macs(resize=40) == counted(40) > macs()
    assert macs(model_kwargs=narrow, seed=2) == counted(32, **narrow)

def test_a_measured_model_is_estimated_at_its_measured_speed_in_its_precision():
    from cnnbench.studies import throughput

    rows = throughput.table()["rows"]
    options = dict(model="resnet18", dataset="cifar10_jpeg", epochs=2, val_split=0.1,
                   limit_train=1000, limit_eval=500)
    for amp, kind in (("off", "fp32"), ("auto", "bf16"), ("bf16", "bf16")):
        cost = estimate_seconds({**options, "amp": amp})
        row = rows[f"resnet18|3x32x32|{kind}"]
        assert cost.seconds == pytest.approx(2000 / row["train_images_per_s"]
                                             + 1500 / row["infer_images_per_s"])
        assert f"measured for resnet18 at 3x32x32 in {kind}" in cost.text()
    # 64 px inputs: the 32 px speed, scaled by the multiply-adds
    bigger = estimate_seconds({**options, "amp": "off", "resize": 64})
    row = rows["resnet18|3x32x32|fp32"]
    assert bigger.macs == pytest.approx(4 * row["macs"], rel=0.05)
    assert bigger.seconds == pytest.approx(bigger.macs / row["macs"] * (
        2000 / row["train_images_per_s"] + 1500 / row["infer_images_per_s"]))
    assert "scaled by MACs" in bigger.text()
    # a model nobody measured: from its MACs
    assert throughput.lookup("no-such-model", 3, (32, 32), "off") is None


def test_the_shipped_speed_table_is_the_committed_benchmark_results():
    from cnnbench.studies import throughput

    table = throughput.build_table()
    assert [s["precision"] for s in table["sources"]] == ["fp32", "bf16"]
    assert all(s["threads"] == 2 for s in table["sources"])
    assert throughput.table() == table, "python -m cnnbench.studies.throughput"


@pytest.mark.parametrize("name", ["mnist-classics", "mnist-five", "optimizers", "cifar10-tricks",
                                  "alexnet-ablation", "cross-dataset", "transfer", "families"])
def test_cpu_profiles_fit_about_half_an_hour(name):
    # Issue 11: the cpu profile caps each study to about 30 minutes on 2 cores (estimated).
    study = load_study(name, profile="cpu", dataset="cifar10_jpeg"
                       if name in ("cifar10-tricks", "alexnet-ablation") else None)
    total = sum(estimate_seconds(run.options).seconds for run in study.runs)
    assert 60 < total <= 32 * 60, f"{name}: {total / 60:.0f} min"


def test_estimates_below_a_minute_are_shown_in_seconds():
    assert [duration_text(s) for s in (0.2, 0.6, 20, 59.4, 59.6, 90, 1800)] == [
        "<1 s", "~1 s", "~20 s", "~59 s", "~1 min", "~2 min", "~30 min"]
    cost = CostEstimate(train_images=256, eval_images=512, macs=400_000, seconds=20.0)
    assert cost.text().startswith("~20 s on 2 CPU cores (estimate: 256 training images")
