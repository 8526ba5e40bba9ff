"""train_run end to end: the run directory, summary keys, best/last checkpoints, what is evaluated
when, failures, techniques and progressive resizing. Resuming: test_resume.py and
test_resume_rules.py; evaluating a saved run: test_evaluation.py."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn
import yaml

from cnnbench.training import checkpoint as ckpt
from cnnbench.config import TrainConfig
from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import evaluate_checkpoint, train_run
from engine_fixtures import (_tiny_folder_files, quick_options, read_jsonl,  # noqa: F401
                             tensorboard_scalars, tiny_folder, train_tiny)

SUMMARY_KEYS = (
    "name model dataset stem params macs flops input_size seed device epochs epochs_completed "
    "train_time_s eval_time_s train_images_per_s best_val_acc best_epoch test_acc test_loss "
    "per_class_test_acc confusion_matrix classes split limited limit_train limit_eval recipe "
    "profile tta torch_version torchvision_version cnnbench_version git_commit command status "
    "started_at finished_at hostname cpu num_threads").split()
METRIC_KEYS = ("epoch train_loss train_acc val_loss val_acc lr batch_size epoch_time_s "
               "train_images_per_s images_seen").split()


def test_run_directory_and_summary(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=3, limit_eval=30)
    for name in ("config.yaml", "metrics.jsonl", "train_steps.jsonl", "summary.json", "last.ckpt", "train.log",
                 "best.ckpt", "test_predictions.json"):
        assert (out / name).exists(), name
    assert list(out.glob("events.out.tfevents.*"))
    assert not (out / "error.txt").exists()
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert set(SUMMARY_KEYS) <= set(saved)
    assert saved["status"] == "finished" and saved["epochs_completed"] == 3
    assert saved["limited"] is True and saved["limit_eval"] == 30 and saved["limit_train"] is None
    assert saved["split"] == {"train": 120, "val": 30, "test": 30}
    assert saved["classes"] == ["bottom", "left", "right", "top"]
    assert saved["params"] > 0 and saved["macs"] > 0 and saved["flops"] == 2 * saved["macs"]
    assert saved["command"] == "cnnbench test" and saved["tested_weights"] == "best"
    for key in ("test_acc", "best_val_acc"):
        assert 0.0 <= saved[key] <= 1.0
    assert sum(map(sum, saved["confusion_matrix"])) == 30
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert all(set(METRIC_KEYS) <= set(m) for m in metrics)
    assert saved["best_val_acc"] == max(m["val_acc"] for m in metrics)
    assert metrics[saved["best_epoch"] - 1]["val_acc"] == saved["best_val_acc"]
    steps = read_jsonl(out / "train_steps.jsonl")
    assert [s["step"] for s in steps] == list(range(5, 24, 5))  # 8 steps/epoch, every 5
    assert steps[0]["images_seen"] == 80
    config = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert config == resolve_config(quick_options(tiny_folder, epochs=3, limit_eval=30))
    assert ckpt.load_checkpoint(out / "best.ckpt")["epoch"] == saved["best_epoch"]
    assert ckpt.load_checkpoint(out / "last.ckpt")["epoch"] == 3

    # TensorBoard: the event files hold the same numbers as metrics.jsonl and the summary
    scalars = tensorboard_scalars(out)
    epoch_steps = [8, 16, 24]  # 120 training images, batch 16: 8 steps per epoch
    for tag, key in (("train/loss", "train_loss"), ("train/acc", "train_acc"),
                     ("val/loss", "val_loss"), ("val/acc", "val_acc"), ("train/lr", "lr")):
        assert [s for s, _ in scalars[tag]] == epoch_steps, tag
        assert [v for _, v in scalars[tag]] == pytest.approx([m[key] for m in metrics], rel=1e-6), tag
    assert scalars["test/acc"] == [(24, pytest.approx(saved["test_acc"], rel=1e-6))]
    assert scalars["test/loss"] == [(24, pytest.approx(saved["test_loss"], rel=1e-6))]
    # the step log: the same numbers in train_steps.jsonl and TensorBoard's step curves
    assert all(set(s) == {"step", "images_seen", "train_loss", "lr"} for s in steps)
    for tag, key in (("train/loss_steps", "train_loss"), ("train/lr_steps", "lr")):
        assert scalars[tag] == [(s["step"], pytest.approx(s[key], rel=1e-6)) for s in steps], tag


def test_no_validation_tests_the_final_weights(tiny_folder):
    summary, out = train_tiny(tiny_folder, val_split=0.0, epochs=2)
    assert summary["tested_weights"] == "final" and summary["best_val_acc"] is None
    best_state, last_state = ckpt.load_checkpoint(out / "best.ckpt"), ckpt.load_checkpoint(out / "last.ckpt")
    assert (best_state["epoch"], best_state["step"]) == (2, last_state["step"]) and last_state["step"] > 0
    last, best = last_state["model"], best_state["model"]
    assert all(torch.equal(last[k], best[k]) for k in last)
    assert all(m["val_acc"] is None for m in read_jsonl(out / "metrics.jsonl"))
    assert evaluate_checkpoint(out / "best.ckpt")["acc"] == summary["test_acc"]
    with pytest.raises(UserError, match="no validation split"):
        evaluate_checkpoint(out / "best.ckpt", split="val")


class NanAfter(torch.nn.Module):
    """Wraps a model; its training outputs become NaN after ``steps`` forward passes."""

    def __init__(self, inner, steps):
        super().__init__()
        self.inner, self.steps, self.calls = inner, steps, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.steps:
                out = out * float("nan")
        return out


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_folder, monkeypatch):
    import cnnbench.training.setup as setup_module

    build = setup_module.create_model_for
    monkeypatch.setattr(setup_module, "create_model_for", lambda c, s, i: NanAfter(build(c, s, i), 10))
    # 8 steps per epoch: epoch 1 is clean, epoch 2 turns NaN at its third step
    with pytest.raises(UserError, match=r"training loss became nan.*last good checkpoint.*epoch 1"):
        train_tiny(tiny_folder, epochs=3, log_every=1000)
    out = tiny_folder.out / "run"
    assert "training loss became" in (out / "error.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_completed"] == 1
    # the summary says why (the message's last line) and when it ended
    assert summary["error"].startswith("training loss became nan") and "epoch 1" in summary["error"]
    assert summary["error"] == (out / "error.txt").read_text().strip().splitlines()[-1]
    assert summary["finished_at"] >= summary["started_at"]
    last = ckpt.load_checkpoint(out / "last.ckpt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert len(read_jsonl(out / "metrics.jsonl")) == 1


def test_early_stop_batch_schedule_and_staged_metrics(tiny_folder):
    summary, out = train_tiny(tiny_folder, batch_schedule="8:1,32:2", epochs=None)
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["batch_size"] for m in metrics] == [8, 32, 32]
    assert summary["epochs"] == 3
    summary, out = train_tiny(tiny_folder, "stop", epochs=6, early_stop=1, lr=1e-6, scheduler="none",
                       optimizer="sgd", momentum=0.0)
    assert summary["stopped_early"] is True and summary["epochs_completed"] < 6


def test_init_from_another_run(tiny_folder):
    first, first_dir = train_tiny(tiny_folder, "first", epochs=1)
    _, second_dir = train_tiny(tiny_folder, "second", epochs=1, lr=1e-12, scheduler="none",
                        optimizer="sgd", momentum=0.0, weight_decay=0.0, init=str(first_dir))
    a = ckpt.load_checkpoint(first_dir / "best.ckpt")["model"]
    b = ckpt.load_checkpoint(second_dir / "best.ckpt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a if "running" not in k)
    with pytest.raises(UserError, match="does not fit resnet18 .*cnnbench checkpoint of lenet5"):
        train_tiny(tiny_folder, "third", epochs=1, model="resnet18", init=str(first_dir / "best.ckpt"))


def test_techniques_run_end_to_end(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=2, ema=0.9, ema_every=2, whiten_init=True,
                       tta="mirror", label_smoothing=0.1, optimizer="sgd", nesterov=True,
                       lr=0.05, scheduler="linear", warmup_epochs=0.5, decouple_wd=True,
                       no_decay_bn_bias=True, bn_lr_scale=4.0, model="simple_cnn",
                       resize=16, augment="altflip+translate", grad_clip=5.0)
    assert summary["tta"] == "mirror" and summary["status"] == "finished"
    # the whitening's time is training time: added to the epochs'
    assert summary["train_time_s"] > sum(m["epoch_time_s"] for m in read_jsonl(out / "metrics.jsonl"))
    last = ckpt.load_checkpoint(out / "last.ckpt")
    assert last["training"]["ema"] is not None and last["training"]["model"] is not None
    assert evaluate_checkpoint(out / "best.ckpt")["acc"] == summary["test_acc"]


def test_the_training_loss_is_smoothed_as_asked(tiny_folder):
    """``label_smoothing`` reaches the loss the loop minimises (the evaluation loss stays plain
    cross-entropy): a loss built without it is the plain one, ~0.9 nats away on confident logits."""
    from cnnbench.training import build_training

    training = build_training(resolve_config(quick_options(tiny_folder, label_smoothing=0.3)))
    logits, targets = torch.randn(16, 10) * 5, torch.arange(16) % 10
    smoothed = nn.functional.cross_entropy(logits, targets, label_smoothing=0.3)
    assert float(training.criterion(logits, targets)) == pytest.approx(float(smoothed))
    assert abs(float(smoothed) - float(nn.functional.cross_entropy(logits, targets))) > 0.1


def test_lowres_epochs_train_on_downscaled_images(tiny_folder, monkeypatch):
    import cnnbench.training.loop as loop_module

    seen = []
    original = loop_module.train_one_epoch

    def recording(model, loader, *args, **kwargs):
        seen.append(tuple(next(iter(loader))[0].shape[-2:]))
        return original(model, loader, *args, **kwargs)

    monkeypatch.setattr(loop_module, "train_one_epoch", recording)
    summary, _ = train_tiny(tiny_folder, epochs=3, model="fastnet", resize=16, lowres_size=12,
                     lowres_epochs=2, model_kwargs={"widths": [8, 8, 8]})
    assert seen == [(12, 12), (12, 12), (16, 16)]
    assert summary["input_size"][1:] == [16, 16]  # evaluation at the full size


def test_lowres_size_that_does_not_fit_the_model_is_one_line(tiny_folder):
    # The simple CNN's feature map shrinks to nothing on 8 px images.
    with pytest.raises(UserError, match="--lowres-size 8 does not fit simple_cnn") as err:
        train_tiny(tiny_folder, epochs=2, model="simple_cnn", resize=16, lowres_size=8, lowres_epochs=1)
    assert "\n" not in str(err.value)
    assert not (tiny_folder.out / "run").exists()
    with pytest.raises(UserError, match="not smaller than the training images"):
        train_tiny(tiny_folder, epochs=2, model="simple_cnn", resize=16, lowres_size=16, lowres_epochs=1)


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("Kernel size can't be greater than actual input size\n  (details)"),
     "(Kernel size can't be greater than actual input size)"),
    (RuntimeError("  "), "(RuntimeError)"),  # no text: the error's kind
    (UserError("the feature map is empty"), "(the feature map is empty)"),
])
def test_lowres_size_that_does_not_fit_says_why_in_one_line(monkeypatch, error, reason):
    from types import SimpleNamespace

    from cnnbench.training import setup

    shapes = []

    def probe(x):
        shapes.append(tuple(x.shape))
        raise error

    monkeypatch.setattr(setup, "create_model_for", lambda config, spec, size: probe)
    inputs = SimpleNamespace(spec=SimpleNamespace(channels=3), input_size=(32, 32))
    config = TrainConfig(model="simple_cnn", lowres_size=12, lowres_epochs=1)
    with pytest.raises(UserError) as err:
        setup.check_lowres(config, inputs)
    assert str(err.value) == (f"--lowres-size 12 does not fit simple_cnn built for 32x32 inputs "
                              f"{reason}; choose a larger --lowres-size, or a model that pools "
                              f"globally (e.g. fastnet, resnet18)")
    assert shapes[0][1:] == (3, 12, 12)


@pytest.mark.parametrize("options, message", [
    ({"lowres_size": 24}, "both --lowres-size"),
    ({"lowres_epochs": 2}, "both --lowres-size"),
    ({"lowres_size": 24, "lowres_epochs": 5}, "lowres_epochs must be in"),
    ({"lowres_size": 24, "lowres_epochs": 3}, "the last epochs train at the full size"),
    ({"whiten_bias_epochs": 3}, "needs whiten_init"),
    ({"whiten_bias_epochs": -2, "whiten_init": True}, "whiten_bias_epochs must be"),
])
def test_progressive_resizing_and_whitening_options_are_checked(tiny_folder, options, message):
    with pytest.raises(UserError, match=message):
        resolve_config(quick_options(tiny_folder, epochs=3, **options))


def test_the_test_set_is_evaluated_once_at_the_end_with_the_best_weights(tiny_folder, monkeypatch):
    """Guards against evaluating (or selecting on) the test set during training: over 3 epochs
    the 40 validation images are evaluated once per epoch, the 48 test images exactly once,
    after the last epoch, with the weights of the epoch of best validation accuracy."""
    import cnnbench.training.setup as build_module

    calls = []
    real_evaluate = build_module.evaluate

    def recording(model, loader, **kw):
        result = real_evaluate(model, loader, **kw)
        weights = {k: v.detach().clone() for k, v in ckpt.unwrap(model).state_dict().items()}
        calls.append((result["n"], weights))
        return result

    monkeypatch.setattr(build_module, "evaluate", recording)
    summary, out = train_tiny(tiny_folder, epochs=3, val_split=0.25)
    assert summary["split"] == {"train": 120, "val": 40, "test": 48}
    # then, with the tested weights, the validation images once more (the calibration's
    # temperature is fitted on them) and the test images once
    assert [n for n, _ in calls] == [40, 40, 40, 40, 48]
    metrics = read_jsonl(out / "metrics.jsonl")
    val_accs = [m["val_acc"] for m in metrics]
    best_epoch = val_accs.index(max(val_accs)) + 1  # the first epoch of the best accuracy
    assert summary["best_epoch"] == best_epoch and summary["tested_weights"] == "best"
    best = ckpt.load_checkpoint(out / "best.ckpt")
    assert best["epoch"] == best_epoch
    tested = calls[-1][1]
    assert all(torch.equal(tested[k], best["model"][k]) for k in best["model"])
    assert all(torch.equal(calls[-2][1][k], best["model"][k]) for k in best["model"])
    assert summary["test_acc"] == evaluate_checkpoint(out / "best.ckpt")["acc"]


def test_test_weights_last_tests_the_last_epoch_and_records_the_best_beside_it(tiny_folder,
                                                                              monkeypatch):
    """A report that tested after its last epoch (000) is reproduced with `test_weights: last`:
    the headline test accuracy and the saved predictions are the last epoch's weights', and the
    best validation epoch's test accuracy is recorded beside it; nothing selects on the test
    set."""
    import cnnbench.training.setup as build_module

    calls = []
    real_evaluate = build_module.evaluate

    def recording(model, loader, **kw):
        result = real_evaluate(model, loader, **kw)
        weights = {k: v.detach().clone() for k, v in ckpt.unwrap(model).state_dict().items()}
        calls.append((result["n"], weights, result["acc"]))
        return result

    monkeypatch.setattr(build_module, "evaluate", recording)
    summary, out = train_tiny(tiny_folder, epochs=3, val_split=0.25, test_weights="last")
    # best's test, then the last's validation (its temperature) and test
    assert [n for n, _, _ in calls] == [40, 40, 40, 48, 40, 48]
    assert summary["tested_weights"] == "last"
    last = ckpt.load_checkpoint(out / "last.ckpt")
    best = ckpt.load_checkpoint(out / "best.ckpt")
    assert last["epoch"] == 3
    tested = calls[-1][1]
    assert all(torch.equal(tested[k], last["model"][k]) for k in last["model"])
    assert summary["test_acc"] == calls[-1][2]
    assert summary["best_val_test_acc"] == calls[-3][2]
    assert all(torch.equal(calls[-3][1][k], best["model"][k]) for k in best["model"])
    assert all(torch.equal(calls[-2][1][k], last["model"][k]) for k in last["model"])
    predictions = json.loads((out / "test_predictions.json").read_text())
    assert predictions["tested_weights"] == "last"


def test_monitor_test_logs_each_epochs_test_accuracy_but_selects_on_validation(tiny_folder, monkeypatch):
    """``monitor_test`` (a lab report's "best test accuracy over epochs") evaluates the test set
    after every epoch with that epoch's weights; the tested weights are still the best
    validation epoch's and ``max_epoch_test_acc`` is the maximum of the logged values."""
    import cnnbench.training.setup as build_module

    sizes = []
    real_evaluate = build_module.evaluate

    def recording(model, loader, **kw):
        result = real_evaluate(model, loader, **kw)
        sizes.append(result["n"])
        return result

    monkeypatch.setattr(build_module, "evaluate", recording)
    summary, out = train_tiny(tiny_folder, epochs=3, val_split=0.25, monitor_test=True)
    # val then test each epoch, then the temperature's val and the final test
    assert sizes == [40, 48] * 3 + [40, 48]
    metrics = read_jsonl(out / "metrics.jsonl")
    tests = [m["epoch_test_acc"] for m in metrics]
    assert summary["max_epoch_test_acc"] == max(tests)
    assert summary["max_epoch_test_epoch"] == tests.index(max(tests)) + 1
    val_accs = [m["val_acc"] for m in metrics]
    assert summary["best_epoch"] == val_accs.index(max(val_accs)) + 1
    assert summary["test_acc"] == tests[summary["best_epoch"] - 1]  # same weights, same images
    assert len(tensorboard_scalars(out)["test_monitor/acc"]) == 3


def test_the_logged_learning_rate_is_the_epochs_peak_and_every_steps(tiny_folder):
    """A two-epoch one-cycle run warms up from lr/25 to lr and decays again inside epoch 1:
    the epoch's record shows the peak (not the value at the start of the epoch), and every
    logged step carries the rate it trained with, in train_steps.jsonl and TensorBoard. A
    per-step schedule is stepped by the steps only (none more at an epoch's end)."""
    from cnnbench.training.optim import lr_factor_fn

    options = dict(epochs=2, scheduler="onecycle", lr=4e-3, log_every=1, warmup_epochs=0.5)
    summary, out = train_tiny(tiny_folder, **options)
    factor = lr_factor_fn(resolve_config(quick_options(tiny_folder, **options)), [8, 8])
    expected = [4e-3 * factor(step) for step in range(16)]  # 120 images, batch 16: 8 steps an epoch
    first, second = read_jsonl(out / "metrics.jsonl")
    assert first["lr"] == pytest.approx(max(expected[:8])) == pytest.approx(4e-3)
    assert first["lr_mean"] == pytest.approx(sum(expected[:8]) / 8)
    assert second["lr"] == pytest.approx(expected[8]) and second["lr"] < 4e-3
    steps = read_jsonl(out / "train_steps.jsonl")
    assert [s["lr"] for s in steps] == pytest.approx(expected)
    assert [v for _, v in tensorboard_scalars(out)["train/lr_steps"]] == pytest.approx(expected)


def test_freezing_the_backbone_leaves_layers_new_from_init_trainable(tiny_folder, tmp_path):
    """``--init`` of a torchvision ResNet-18 file on small images leaves the small stem's
    ``conv1.weight`` new (7x7 RGB in the file, 3x3 gray here); ``--freeze backbone`` must not
    freeze it at its random initialisation (only the head would train, near chance)."""
    from cnnbench.models import create_model
    from cnnbench.training import build_training

    torch.manual_seed(0)
    torch.save(create_model("resnet18").state_dict(), tmp_path / "resnet18-imagenet.pth")
    config = resolve_config(quick_options(tiny_folder, model="resnet18", resize=32, freeze="backbone",
                                          init=str(tmp_path / "resnet18-imagenet.pth")))
    training = build_training(config)
    assert "conv1.weight" in training.init_report.new
    assert training.keep_trainable == ("conv1.weight",)
    line = training.start_epoch(0)
    model = training.model
    assert model.conv1.weight.requires_grad and model.fc.weight.requires_grad
    assert not model.layer1[0].conv1.weight.requires_grad and not model.bn1.weight.requires_grad
    assert "1 tensors left new by --init train too (conv1.weight)" in line
    # a resumed run (no --init loaded again, maybe no summary after a SIGKILL) keeps them
    state = training.training_state()
    resumed = build_training(config, load_init_weights=False)
    assert resumed.keep_trainable == ()
    resumed.load_training_state(training.weights_to_save(), state)
    assert resumed.keep_trainable == ("conv1.weight",)
    resumed.start_epoch(0)
    assert resumed.model.conv1.weight.requires_grad and not resumed.model.bn1.weight.requires_grad


def test_gallery_heat_maps_are_for_the_classes_given_at_the_stored_images_size(tiny_folder, tmp_path,
                                                                              monkeypatch):
    """The misclassified gallery's Grad-CAM maps: one per row, for the class asked (the gallery
    asks for the predicted one, which under TTA need not be the plain forward's), at the stored
    test images' height x width (here 12 x 16, not square, and not the model's input size)."""
    from PIL import Image

    from cnnbench.training.evaluation import open_for_evaluation

    folder = tmp_path / "wide"
    for png in (tiny_folder.root / "bars").rglob("*.png"):
        target = folder / png.relative_to(tiny_folder.root / "bars")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(png) as image:
            wide = Image.new(image.mode, (16, 12), 0)
            wide.paste(image, (2, 0))
            wide.save(target)
    # trained on them resized to 24 x 24: the maps are scaled back to the stored size
    _, out = train_tiny(tiny_folder, epochs=1, dataset=f"imagefolder:{folder}", resize=24)
    saved = open_for_evaluation(out / "best.ckpt")
    rows = torch.tensor([0, 5, 9])
    asked = saved.gallery_heat(rows, torch.tensor([0, 1, 2]))
    elsewhere = saved.gallery_heat(rows, torch.tensor([3, 3, 3]))
    assert asked["heat"].shape == (3, 12, 16) and asked["heat"].dtype == torch.uint8
    assert asked["cam_layer"] == "features" and asked["cam_method"] == "grad-cam"  # lenet5's
    assert not torch.equal(asked["heat"], elsewhere["heat"])  # the class asked, not the argmax
    # at the layer the registry names for the model, whichever it is
    from types import SimpleNamespace

    from cnnbench.models import registry

    monkeypatch.setattr(registry, "model_info", lambda name: SimpleNamespace(cam_layer="features.c3"))
    assert saved.gallery_heat(rows, torch.tensor([0, 1, 2]))["cam_layer"] == "features.c3"


def test_progress_shows_accuracy_in_percent_like_the_epoch_lines():
    from cnnbench.training.console import Console

    assert Console._shown({"loss": 0.5, "acc": 0.9123}) == {"loss": "0.5000", "acc": "91.23%"}


def test_the_best_epoch_on_the_test_set_is_the_first_of_equals(tiny_folder):
    """With lr 1e-12 the weights do not move in float32, so every epoch has the same test
    accuracy: the report's "best test accuracy over epochs" names the first epoch that reached
    it, not the last."""
    summary, _ = train_tiny(tiny_folder, epochs=3, lr=1e-12, monitor_test=True, name="still")
    assert summary["max_epoch_test_epoch"] == 1


def test_init_from_a_run_on_another_dataset_gets_a_fresh_head_unless_kept(tiny_folder):
    """`--init` of a run trained on another dataset (same class count): the head is new (its
    classes are another dataset's), unless `--init-head keep`."""
    _, first_dir = train_tiny(tiny_folder, "on-bars", epochs=1)
    fresh, _ = train_tiny(tiny_folder, "on-long", epochs=1, dataset=tiny_folder.long_dataset,
                   init=str(first_dir))
    assert fresh["init_report"]["replaced"], fresh["init_report"]
    assert fresh["init_report"]["source_dataset"] == tiny_folder.dataset
    kept, _ = train_tiny(tiny_folder, "kept", epochs=1, dataset=tiny_folder.long_dataset,
                  init=str(first_dir), init_head="keep")
    assert not kept["init_report"]["replaced"] and not kept["init_report"]["new"]


def test_the_gallery_holds_grad_cam_heat_maps_of_the_tested_weights(tiny_folder):
    """misclassified.pt carries the heat maps the report draws over its gallery: Grad-CAM of
    the tested weights (here the last epoch's, not the best) for each image's predicted class
    at the layer the registry names, the same maps `predict --explain` draws from that
    checkpoint."""
    from cnnbench.inference.explain import explain_images
    from cnnbench.inference.model import load_trained_model
    from cnnbench.models.registry import model_info

    summary, out = train_tiny(tiny_folder, epochs=3, lr=1e-2, test_weights="last")
    assert summary["best_epoch"] < 3  # the tested weights are not the best ones
    gallery = torch.load(out / "misclassified.pt", weights_only=True)
    n = len(gallery["images"])
    assert n > 0, "the run made no mistakes to show"
    heat = gallery["heat"]
    assert heat.dtype == torch.uint8 and heat.shape == (n, *gallery["images"].shape[-2:])
    assert gallery["cam_layer"] == model_info(summary["model"]).cam_layer
    assert gallery["cam_method"] == "grad-cam"
    again = explain_images(load_trained_model(out / "last.ckpt"), gallery["images"])
    assert again["classes"].tolist() == gallery["pred"].tolist()
    expected = (again["maps"] * 255).round().to(torch.uint8)
    assert (heat.int() - expected.int()).abs().max() <= 1

    # a gallery saved before heat maps were: explain_gallery (`eval --explain`) adds the same
    # ones, from the tested (last) weights
    from cnnbench.cli import main
    from cnnbench.training.evaluation import explain_gallery

    without = {k: v for k, v in gallery.items() if not k.startswith(("heat", "cam_"))}
    torch.save(without, out / "misclassified.pt")
    assert explain_gallery(out) == {
        "images": n, "cam_layer": gallery["cam_layer"], "cam_method": "grad-cam",
        "checkpoint": str(out / "last.ckpt"), "written_to": str(out / "misclassified.pt")}
    added = torch.load(out / "misclassified.pt", weights_only=True)
    assert torch.equal(added["heat"], heat) and added["cam_layer"] == gallery["cam_layer"]
    torch.save(without, out / "misclassified.pt")
    assert main(["eval", "--checkpoint", str(out), "--explain"]) == 0
    assert torch.equal(torch.load(out / "misclassified.pt", weights_only=True)["heat"], heat)

    # the best weights tested (the default), not the last ones the model holds at the end
    summary, out = train_tiny(tiny_folder, name="best", epochs=3, lr=1e-2)
    assert summary["best_epoch"] < 3
    gallery = torch.load(out / "misclassified.pt", weights_only=True)
    again = explain_images(load_trained_model(out / "best.ckpt"), gallery["images"])
    assert again["classes"].tolist() == gallery["pred"].tolist()
    expected = (again["maps"] * 255).round().to(torch.uint8)
    assert (gallery["heat"].int() - expected.int()).abs().max() <= 1


def test_on_epoch_returning_true_prunes_the_run_untested(tiny_folder):
    config = resolve_config(quick_options(tiny_folder, epochs=3))
    summary = train_run(config, out_dir=tiny_folder.out / "pruned", progress=False,
                        on_epoch=lambda m: m["epoch"] == 1)
    assert summary["status"] == "pruned" and summary["epochs_completed"] == 1
    assert summary["test_acc"] is None
    assert len(read_jsonl(tiny_folder.out / "pruned" / "metrics.jsonl")) == 1


def test_tensorboard_hparams_hold_the_recipe_and_the_results(tiny_folder):
    """TensorBoard's HParams view reads the run's options and final figures from its events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    summary, out = train_tiny(tiny_folder, epochs=2, lr=2e-3, seed=3)
    events = EventAccumulator(str(out), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                 for c in content.values()
                 if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("session_start_info"))
    options = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in start.hparams.items()}
    assert options["lr"] == pytest.approx(2e-3) and options["model"] == "lenet5"
    assert options["seed"] == 3 and options["epochs"] == 2 and options["batch_size"] == 16
    assert "device" not in options and "out" not in options  # the machine and bookkeeping: not the recipe
    scalars = tensorboard_scalars(out)
    for key in ("test_acc", "best_val_acc", "test_loss"):
        assert scalars[f"hparam/{key}"][-1][1] == pytest.approx(summary[key], rel=1e-6), key


def test_the_summary_counts_what_the_run_did(tiny_folder):
    import time

    start = time.perf_counter()
    summary, out = train_tiny(tiny_folder, epochs=2, limit_eval=30)
    wall = time.perf_counter() - start
    assert summary["steps"] == 16 and summary["images_seen"] == 240  # 120 images, batch 16
    # the training time is the epochs' (no whitening here), and both clocks start at zero
    epochs = read_jsonl(out / "metrics.jsonl")
    assert summary["train_time_s"] == pytest.approx(sum(m["epoch_time_s"] for m in epochs), rel=1e-9)
    assert summary["train_time_s"] + summary["eval_time_s"] <= wall
    assert summary["train_images_per_s"] == pytest.approx(240 / summary["train_time_s"])
    assert summary["eval_time_s"] > 0 and 0 < summary["test_time_s"] <= summary["eval_time_s"]
    matrix = summary["confusion_matrix"]
    assert summary["per_class_test_acc"] == pytest.approx(
        [row[i] / sum(row) if sum(row) else None for i, row in enumerate(matrix)])


def test_a_run_shows_progress_by_default_and_nothing_when_asked_and_joins_with_its_settings(
        tiny_folder, capsys, monkeypatch):
    """``train_run``'s console: on unless ``progress=False`` (then silent); the torchrun job
    it would join is asked for with the run's device and backend (here: none, one process)."""
    from cnnbench.training import distributed

    asked = []
    signature = inspect.signature(distributed.setup)
    monkeypatch.setattr(distributed, "setup",
                        lambda *a, **kw: asked.append(tuple(signature.bind(*a, **kw).arguments.values())))
    config = resolve_config(quick_options(tiny_folder, epochs=1, device="cpu", dist_backend="gloo"))
    train_run(config, out_dir=tiny_folder.out / "shown", argv=["cnnbench"])
    shown = capsys.readouterr()
    assert "epoch 1" in shown.err + shown.out
    assert asked == [("cpu", "gloo")]
    train_run(config, out_dir=tiny_folder.out / "silent", argv=["cnnbench"], progress=False)
    silent = capsys.readouterr()
    assert silent.err + silent.out == ""
