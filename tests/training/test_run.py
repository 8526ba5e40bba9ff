"""train_run: the run directory, summary keys, best/last checkpoints, eval = summary, failures."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn
import yaml

from cnnbench.training import checkpoint as ckpt
from cnnbench.config import TrainConfig
from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import evaluate_checkpoint, train_run
from cnnbench.training.machine import git_commit
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


def test_eval_reproduces_the_summary(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=2, lr=1e-3)
    result = evaluate_checkpoint(out / "best.ckpt")
    assert result["acc"] == summary["test_acc"] and result["loss"] == summary["test_loss"]
    assert result["confusion_matrix"] == summary["confusion_matrix"]
    val = evaluate_checkpoint(out / "best.ckpt", split="val")
    assert val["acc"] == summary["best_val_acc"]
    predictions = json.loads((out / "test_predictions.json").read_text())
    correct = sum(p == t for p, t in zip(predictions["predictions"], predictions["targets"]))
    assert correct / len(predictions["targets"]) == summary["test_acc"]


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


def test_a_resumed_run_does_not_load_its_init_weights_again(tiny_folder, tmp_path):
    """--init weights start a run; a resume continues from last.ckpt and needs the file no more."""
    _, first_dir = train_tiny(tiny_folder, "first", epochs=1)
    init = tmp_path / "init.ckpt"
    init.write_bytes((first_dir / "best.ckpt").read_bytes())
    summary, out = train_tiny(tiny_folder, "second", epochs=1, init=str(init))
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))  # killed after epoch 1
    init.unlink()
    resumed = train_run(None, out_dir=out, resume=True, progress=False)
    assert resumed["status"] == summary["status"] and resumed["init"] == str(init)
    assert resumed["test_acc"] == summary["test_acc"]


def test_a_run_started_with_amp_auto_resumes_only_where_auto_means_the_same(tiny_folder):
    from cnnbench.devices import resolve_amp

    summary, out = train_tiny(tiny_folder, epochs=1, amp="auto")
    here = summary["amp"]  # what --amp auto is on this machine: resolved before training
    assert here == resolve_amp("auto", torch.device("cpu")) and here in ("off", "bf16")
    other = "off" if here != "off" else "bf16"
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running", "amp": other}))
    with pytest.raises(UserError, match=rf"^{re.escape(str(out))} trained in {other} so far .*resolves "
                                        rf"--amp auto to {here}; resume it on a machine like the first"):
        train_run(None, out_dir=out, resume=True, progress=False)


def test_existing_run_needs_resume_and_resume_needs_a_run(tiny_folder, tmp_path):
    train_tiny(tiny_folder, "done", epochs=1)
    with pytest.raises(UserError, match="already holds a run.*--resume"):
        train_tiny(tiny_folder, "done", epochs=1)
    with pytest.raises(UserError, match="does not exist"):
        train_run(None, out_dir=tmp_path / "empty", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no run to resume"):
        train_run(None, out_dir=tmp_path / "empty", resume=True)
    config = resolve_config(quick_options(tiny_folder, epochs=1))
    finished = train_run(config, out_dir=tiny_folder.out / "done", resume=True, progress=False)
    assert finished["status"] == "finished"  # a finished run is returned, not retrained
    with pytest.raises(UserError, match="options differ: lr"):
        train_run(config.replace(lr=0.5), out_dir=tiny_folder.out / "done", resume=True)


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


def _whitened_first_conv(tiny_folder, **overrides):
    """The whitening filters a run with ``overrides`` starts from (computed here, not read
    from the run: the whitening depends only on the training images)."""
    from cnnbench.training import build_training
    from cnnbench.training.whitening import find_whitening_conv

    training = build_training(resolve_config(quick_options(tiny_folder, whiten_init=True, **overrides)))
    training.whiten()
    return find_whitening_conv(training.model)


def test_whiten_bias_epochs_zero_keeps_the_whitening_layer_frozen(tiny_folder):
    # lenet5's first conv (6 filters of 1x5x5) is fully set by the whitening: top-6 eigenvectors.
    summary, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=0)
    assert summary["status"] == "finished"
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    start = _whitened_first_conv(tiny_folder)
    torch.testing.assert_close(weights["features.c1.weight"], start.weight.detach(), rtol=0, atol=0)
    assert torch.count_nonzero(weights["features.c1.bias"]) == 0  # zeroed by the whitening, frozen


def test_whiten_bias_epochs_trains_only_the_bias(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=1)
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    start = _whitened_first_conv(tiny_folder)
    torch.testing.assert_close(weights["features.c1.weight"], start.weight.detach(), rtol=0, atol=0)
    assert torch.count_nonzero(weights["features.c1.bias"]) > 0  # trained in epoch 1


def test_whitening_bias_stays_frozen_under_a_backbone_freeze(tiny_folder):
    _, out = train_tiny(tiny_folder, epochs=2, whiten_init=True, whiten_bias_epochs=2, freeze="backbone")
    weights = ckpt.load_checkpoint(out / "last.ckpt")["model"]
    assert torch.count_nonzero(weights["features.c1.bias"]) == 0  # the freeze wins


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


def test_git_commit_names_the_checkout_and_says_when_it_is_modified():
    import cnnbench

    src = Path(cnnbench.__file__).resolve().parent
    inside = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True,
                            text=True)
    if inside.returncode != 0:
        assert git_commit() is None  # an installed copy outside a checkout
        return
    commit = git_commit()
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", commit)
    assert commit.startswith(inside.stdout.strip())


def test_cnnbench_asks_git_for_its_own_commit_once_per_process(monkeypatch):
    """Every run records the commit: asked git each time, a test suite or a study of hundreds
    of runs started hundreds of git processes. An ask that failed (a timeout on a busy
    machine) is not kept; another checkout is asked every time."""
    import subprocess

    from cnnbench.training import machine

    asked, answers = [], [subprocess.TimeoutExpired("git", 5), "abc1234"]

    def ask(here):
        asked.append(here)
        answer = answers.pop(0) if answers else "abc1234"
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(machine, "_ask_git", ask)
    machine._own_commit.cache_clear()
    try:
        assert git_commit() is None  # git timed out: no commit, and nothing kept
        assert [git_commit() for _ in range(3)] == ["abc1234"] * 3
        assert len(asked) == 2
        git_commit("/somewhere/else")
        git_commit("/somewhere/else")
        assert len(asked) == 4
    finally:
        machine._own_commit.cache_clear()  # the real answer again for the tests after this one


def test_git_commit_is_dirty_for_code_changes_only(tmp_path):
    """A modified result file keeps the commit clean (a benchmark writes one result, then
    measures the next with the same code); a modified code file makes it -dirty."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "r-cpu.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = git("rev-parse", "--short", "HEAD").stdout.strip()
    assert git_commit(tmp_path / "src") == head
    (tmp_path / "benchmarks" / "results" / "r-cpu.json").write_text('{"acc": 1}\n')
    assert git_commit(tmp_path / "src") == head  # a result changed, not the code
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "src") == head + "-dirty"


def _numbered_dataset(monkeypatch, n_train=20, n_test=8):
    """A fake MNIST whose image ``i`` has every pixel equal to ``i``: a tensor says which images
    it holds. ``load_dataset`` is replaced, so no file is read."""
    from cnnbench import data

    def numbered(n):
        return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28).clone()

    fake = data.LoadedDataset(spec=data.get_spec("mnist"), train_x=numbered(n_train),
                              train_y=torch.arange(n_train) % 10, test_x=numbered(n_test),
                              test_y=torch.arange(n_test) % 10)
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: fake)


def _held(images):
    return images[:, 0, 0, 0].tolist()


def test_limits_take_a_seeded_random_subset_not_the_first_images(monkeypatch):
    """Guards against ``--limit-train N`` / ``--limit-eval N`` taking the first N images (a
    single-class subset for data stored in class order) or ignoring ``split_seed``. The
    indices are written out: 20 images, 25% validation, 6 training and 3 evaluation images."""
    from cnnbench.training.inputs import prepare_data

    _numbered_dataset(monkeypatch)
    base = dict(dataset="mnist", val_split=0.25, limit_train=6, limit_eval=3)
    first = prepare_data(resolve_config({**base, "split_seed": 0}))
    assert _held(first.train[0]) == [0, 2, 3, 6, 16, 18]     # of train [0..3, 6, 8..12, 14..18]
    assert _held(first.val[0]) == [4, 7, 19]                 # of val [4, 5, 7, 13, 19]
    assert _held(first.test[0]) == [0, 4, 7]                 # of the 8 test images
    assert first.train[1].tolist() == [0, 2, 3, 6, 6, 8]     # labels follow their images
    other = prepare_data(resolve_config({**base, "split_seed": 1}))
    assert _held(other.train[0]) == [6, 7, 9, 10, 14, 15]
    assert _held(other.val[0]) == [5, 13, 19] and _held(other.test[0]) == [2, 3, 4]
    whole = prepare_data(resolve_config({**base, "limit_train": None, "limit_eval": None}))
    assert _held(whole.train[0]) == [0, 1, 2, 3, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18]
    assert len(whole.test[0]) == 8


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


def test_eval_of_a_bf16_run_evaluates_in_bf16_as_the_run_did(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=1, amp="bf16", channels_last=True)
    assert summary["amp"] == "bf16"
    assert "; cpu, bf16 autocast, 1 thread; 1 epoch -> " in (out / "train.log").read_text().splitlines()[0]
    again = evaluate_checkpoint(out)
    assert again["acc"] == summary["test_acc"]
    assert again["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)  # in fp32 it differs


def test_a_run_with_amp_auto_keeps_the_precision_it_trained_in_for_evaluation(tiny_folder, monkeypatch):
    """``--amp auto`` is decided once, when the run starts; its checkpoints say what it became,
    and evaluating them uses that, not what the machine would decide now."""
    from cnnbench import devices
    from cnnbench.training import record

    for module in (devices, record):
        monkeypatch.setattr(module, "native_bf16", lambda device: True)
        monkeypatch.setattr(module, "cpu_bf16_speedup", lambda: 1.6)
    summary, out = train_tiny(tiny_folder, epochs=1, amp="auto", channels_last=True)
    assert summary["amp"] == "bf16" and ckpt.load_checkpoint(out / "best.ckpt")["amp"] == "bf16"
    assert "; cpu, bf16 autocast (--amp auto: bf16 trains 1.60x as fast as fp32 on this CPU, measured)" in (
        (out / "train.log").read_text().splitlines()[0])
    monkeypatch.setattr(devices, "cpu_bf16_speedup", lambda: 0.5)  # the machine would say fp32 now
    again = evaluate_checkpoint(out)
    assert again["acc"] == summary["test_acc"]
    assert again["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)  # in fp32 it differs
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    fp32 = train_tiny(tiny_folder, name="fp32", epochs=1, amp="auto", channels_last=True)[0]
    assert fp32["amp"] == "off"


def test_eval_says_when_the_data_changed_since_the_run(tiny_folder, tmp_path, monkeypatch):
    """Guards against evaluating a checkpoint on other data without a word: another class
    folder, or more test images, each end in one complete line that says what changed."""
    import shutil

    from PIL import Image

    folder = tmp_path / "bars"
    shutil.copytree(tiny_folder.root / "bars", folder)
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    summary, out = train_tiny(tiny_folder, epochs=1, dataset=f"imagefolder:{folder}")
    assert summary["data"]["classes"] == ["bottom", "left", "right", "top"]
    result = evaluate_checkpoint(out)
    assert result["acc"] == summary["test_acc"]
    assert {k: result[k] for k in ("split", "checkpoint", "epoch", "model", "dataset", "tta")} == {
        "split": "test", "checkpoint": str(out / "best.ckpt"), "epoch": summary["best_epoch"],
        "model": summary["model"], "dataset": f"imagefolder:{folder}", "tta": "none"}

    extra = folder / "test" / "left" / "extra.png"
    Image.new("L", (12, 12), 200).save(extra)
    with pytest.raises(UserError, match=r"the test set changed since .*best.ckpt was trained "
                                        r"\(48 images then, 49 now") as info:
        evaluate_checkpoint(out)
    assert "\n" not in str(info.value) and "--allow-changed-data" in str(info.value)
    assert evaluate_checkpoint(out, allow_changed_data=True)["n"] == 49
    # the other evaluations of a trained model check the data too
    from cnnbench.training.corruptions import evaluate_corruptions
    from cnnbench.training.evaluation import explain_gallery

    with pytest.raises(UserError, match=r"the test set changed since"):
        evaluate_corruptions(out, names=["contrast"], severities=(1,), write=False)
    with pytest.raises(UserError, match=r"the test set changed since"):
        explain_gallery(out)
    extra.unlink()

    for split in ("train", "test"):
        (folder / split / "zigzag").mkdir()
        Image.new("L", (12, 12), 90).save(folder / split / "zigzag" / "a.png")
    with pytest.raises(UserError, match=r"trained on 4 classes but the dataset now has 5 "
                                        r"\(added zigzag\)"):
        evaluate_checkpoint(out, allow_changed_data=True)


def test_progress_shows_accuracy_in_percent_like_the_epoch_lines():
    from cnnbench.training.console import Console

    assert Console._shown({"loss": 0.5, "acc": 0.9123}) == {"loss": "0.5000", "acc": "91.23%"}


def test_one_way_to_open_a_trained_model_for_every_command(tiny_folder, tmp_path):
    """eval, predict/export/serve (load_trained_model) and --init open a run directory the
    same way: best.ckpt, else last.ckpt (a run stopped early), and say the same when there is
    neither. Evaluating builds only the model and the split: the caller's threads and random
    streams are left as they were."""
    from cnnbench.inference import load_trained_model
    from cnnbench.training.checkpoint import checkpoint_file
    from cnnbench.training.transfer.weights import read_weights

    summary, out = train_tiny(tiny_folder, epochs=1, num_threads=1, deterministic=True)
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for name in ("config.yaml", "last.ckpt"):
        (stopped / name).write_bytes((out / name).read_bytes())
    assert checkpoint_file(out).name == "best.ckpt" and checkpoint_file(stopped).name == "last.ckpt"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    try:
        assert evaluate_checkpoint(stopped)["checkpoint"] == str(stopped / "last.ckpt")
        assert torch.equal(torch.get_rng_state(), before) and torch.get_num_threads() == 2
        assert load_trained_model(stopped).path == stopped / "last.ckpt"
        assert read_weights(stopped).where == str(stopped / "last.ckpt")
    finally:
        torch.set_num_threads(threads)
    empty = tmp_path / "empty"
    empty.mkdir()
    messages = set()
    for opener in (evaluate_checkpoint, load_trained_model, read_weights):
        with pytest.raises(UserError) as caught:
            opener(empty)
        messages.add(str(caught.value))
    assert messages == {f"{empty} holds no checkpoint (no best.ckpt or last.ckpt); give the "
                        f"directory of a `cnnbench train` run that completed an epoch"}


def test_resume_or_finished_is_decided_in_one_place(tiny_folder):
    """run_state: fresh (no directory; a run that never completed an epoch), interrupted
    (a last.ckpt to continue from), finished (its summary says so); train_run with resume
    returns a finished run's summary without training."""
    from cnnbench.training.rundir import run_state

    out = tiny_folder.out / "run"
    assert run_state(out) == ("fresh", None)
    summary, _ = train_tiny(tiny_folder, epochs=1)
    assert run_state(out) == ("finished", summary)
    data = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**data, "status": "running"}))
    assert run_state(out)[0] == "interrupted"
    (out / "last.ckpt").unlink()
    assert run_state(out)[0] == "fresh"
    (out / "summary.json").write_text(json.dumps(data))
    assert train_run(None, out_dir=out, resume=True, progress=False) == summary


def test_eval_takes_the_callers_device_batch_size_tta_and_data_root(tiny_folder):
    """evaluate_checkpoint's overrides reach the evaluation: a batch of 1 (the smallest
    allowed) counts every image as the default batch does, --tta mirror is the tta used, an
    explicit device and data root are accepted; a batch of 0 is one line."""
    summary, out = train_tiny(tiny_folder, epochs=1)
    plain = evaluate_checkpoint(out)
    assert plain["acc"] == summary["test_acc"] and plain["tta"] == "none"
    single = evaluate_checkpoint(out, batch_size=1, device="cpu", data_dir=str(tiny_folder.root))
    assert (single["n"], single["correct"]) == (plain["n"], plain["correct"])
    assert evaluate_checkpoint(out, tta="mirror")["tta"] == "mirror"
    with pytest.raises(UserError, match="batch size must be >= 1, got 0"):
        evaluate_checkpoint(out, batch_size=0)


def test_the_best_epoch_on_the_test_set_is_the_first_of_equals(tiny_folder):
    """With lr 1e-12 the weights do not move in float32, so every epoch has the same test
    accuracy: the report's "best test accuracy over epochs" names the first epoch that reached
    it, not the last."""
    summary, _ = train_tiny(tiny_folder, epochs=3, lr=1e-12, monitor_test=True, name="still")
    assert summary["max_epoch_test_epoch"] == 1


def test_a_default_run_directory_is_named_for_model_dataset_and_time(tiny_folder):
    from cnnbench.training.rundir import default_run_dir

    config = resolve_config(quick_options(tiny_folder))
    name = default_run_dir(config).name
    assert re.fullmatch(r"lenet5-folder-.*bars-\d{8}-\d{6}", name), name


def test_a_default_run_directory_never_reuses_a_taken_name(tmp_path, monkeypatch):
    """A second run started in the same second gets ``-2``, a third ``-3``; a dataset name
    that becomes underscores at its ends (a folder path) loses them."""
    import datetime as dt

    from cnnbench.config import TrainConfig
    from cnnbench.training import rundir

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 5, 19, 0, 0)

    monkeypatch.setattr(rundir._dt, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(model="lenet5", dataset="imagefolder:/data/My digits X/")
    names = []
    for _ in range(3):
        path = rundir.default_run_dir(config)
        assert path.parent == Path("runs")  # under ./runs, relative to where it was started
        path.mkdir(parents=True)
        names.append(path.name)
    assert names == ["lenet5-folder-_data_My_digits_X-20261205-190000",  # letters kept as typed
                     "lenet5-folder-_data_My_digits_X-20261205-190000-2",
                     "lenet5-folder-_data_My_digits_X-20261205-190000-3"]


def test_resume_refuses_a_dataset_that_changed_since_the_checkpoint(tiny_folder, tmp_path, monkeypatch):
    """The checkpoint's data fingerprint is checked on resume: a test set that changed under an
    interrupted run is refused in one line, not trained on in silence."""
    import shutil

    from cnnbench.training.rundir import run_state

    data = tmp_path / "data"
    shutil.copytree(tiny_folder.root / "bars", data / "bars")
    options = quick_options(tiny_folder, dataset=f"imagefolder:{data / 'bars'}", epochs=2)
    out = tmp_path / "interrupted"
    train_run(resolve_config(options), out_dir=out, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    assert run_state(out)[0] == "interrupted"
    victim = sorted((data / "bars" / "test").rglob("*.png"))[0]
    victim.write_bytes(sorted((data / "bars" / "train").rglob("*.png"))[0].read_bytes())
    with pytest.raises(UserError, match="test") as err:
        train_run(None, out_dir=out, resume=True, progress=False)
    assert str(out / "last.ckpt") in str(err.value)  # names the checkpoint it compared with


def test_eval_of_weights_that_do_not_fit_names_the_file_and_the_model(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=1, name="misfit")
    state = ckpt.load_checkpoint(out / "best.ckpt")
    key = next(k for k in state["model"] if k.endswith("weight"))
    state["model"][key] = torch.zeros(3, 3)  # no longer the model's shape
    ckpt.save_checkpoint(out / "best.ckpt", state)
    with pytest.raises(UserError) as info:
        evaluate_checkpoint(out)
    assert str(out / "best.ckpt") in str(info.value) and "lenet5" in str(info.value)


def test_a_yaml_error_without_a_position_is_still_one_line(tmp_path, monkeypatch):
    from cnnbench.config import resolve as resolve_module

    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\n")

    def broken(text):
        raise yaml.YAMLError("something odd")  # no problem_mark, as yaml's base error

    monkeypatch.setattr(resolve_module.yaml, "safe_load", broken)
    with pytest.raises(UserError, match=r"is not valid YAML; write it as option: value lines"):
        resolve_module.read_config_file(config)


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


def test_a_run_trained_untested_is_tested_when_resumed_as_if_never_stopped(tiny_folder):
    """A search's trial trains without touching the test set (status `trained`); resuming it
    tests it, with the figures of a run that tested at once."""
    seen = []
    config = resolve_config(quick_options(tiny_folder, epochs=2))
    untested = train_run(config, out_dir=tiny_folder.out / "untested", progress=False, test=False,
                         on_epoch=lambda m: seen.append(m["epoch"]) and False)
    out = tiny_folder.out / "untested"
    assert untested["status"] == "trained" and untested["test_acc"] is None and seen == [1, 2]
    assert untested["best_val_acc"] is not None and untested["epochs_completed"] == 2
    # the summary of what training measured, on disk as returned
    assert json.loads((out / "summary.json").read_text()) == untested
    metrics = read_jsonl(out / "metrics.jsonl")
    best = max(metrics, key=lambda m: (m["val_acc"], -m["epoch"]))
    assert (untested["best_val_acc"], untested["best_epoch"]) == (best["val_acc"], best["epoch"])
    assert untested["images_seen"] == metrics[-1]["images_seen"] == 2 * 120  # 160 - 25% val
    assert untested["steps"] == 2 * 8 and untested["stopped_early"] is False  # 120 in batches of 16
    assert untested["train_images_per_s"] == pytest.approx(240 / untested["train_time_s"])
    assert untested["finished_at"] >= untested["started_at"]
    last_line = (out / "train.log").read_text().splitlines()[-1]  # the console's, time-stamped
    assert re.sub(r"^\[[^]]*\] ", "", last_line) == (
        f"trained after epoch 2, not tested (best validation accuracy "
        f"{100 * best['val_acc']:.2f}%, epoch {best['epoch']}); run directory {out}")
    assert not (out / "test_predictions.json").exists() and not (out / "misclassified.pt").exists()
    tested = train_run(None, out_dir=out, resume=True, progress=False)
    straight, _ = train_tiny(tiny_folder, name="straight", epochs=2)
    assert tested["status"] == "finished"
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix"):
        assert tested[key] == straight[key], key


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


def test_killed_between_last_and_best_ckpt_the_best_is_rewritten_on_resume(tiny_folder):
    """A kill after last.ckpt but before best.ckpt of an improving epoch leaves an older
    best.ckpt; resuming writes the best again from last.ckpt, so the run tests the right one."""
    import shutil

    out = tiny_folder.out / "cut"
    config = resolve_config(quick_options(tiny_folder, epochs=2, lr=3e-3))

    def stop(metrics):
        if metrics["epoch"] == 1:
            shutil.copy(out / "best.ckpt", tiny_folder.out / "best-epoch1.ckpt")
            return False
        raise KeyboardInterrupt  # after epoch 2's checkpoints

    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False, on_epoch=stop)
    assert ckpt.load_checkpoint(out / "last.ckpt")["meta"]["best_epoch"] == 2  # it improved
    shutil.copy(tiny_folder.out / "best-epoch1.ckpt", out / "best.ckpt")  # the older best
    summary = train_run(None, out_dir=out, resume=True, progress=False)
    straight, _ = train_tiny(tiny_folder, name="straight", epochs=2, lr=3e-3)
    best, last = ckpt.load_checkpoint(out / "best.ckpt"), ckpt.load_checkpoint(out / "last.ckpt")
    assert summary["best_epoch"] == 2 and (best["epoch"], best["step"]) == (2, last["step"])
    assert summary["test_acc"] == straight["test_acc"]


def test_a_best_ckpt_given_as_last_cannot_be_resumed(tiny_folder):
    import shutil

    summary, out = train_tiny(tiny_folder, epochs=1)
    shutil.copy(out / "best.ckpt", out / "last.ckpt")  # weights only, no training state
    (out / "summary.json").unlink()
    with pytest.raises(UserError, match="last.ckpt holds no training state; it cannot be resumed"):
        train_run(None, out_dir=out, resume=True, progress=False)


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


def test_resume_keeps_an_earlier_best_ckpt(tiny_folder, monkeypatch):
    """Interrupted when the best epoch was an earlier one, the resumed run keeps that best.ckpt
    (only a best epoch equal to the last checkpoint's is written again)."""
    import cnnbench.training.setup as setup

    accuracies = iter([0.9, 0.5, 0.4, 0.3])  # epoch 1 is the best, whatever the weights
    real = setup.Training.evaluate

    def evaluate(self, split="val"):
        result = real(self, split)
        return {**result, "acc": next(accuracies)} if split == "val" else result

    monkeypatch.setattr(setup.Training, "evaluate", evaluate)
    out = tiny_folder.out / "earlier"
    config = resolve_config(quick_options(tiny_folder, epochs=3))

    def stop(metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False, on_epoch=stop)
    assert ckpt.load_checkpoint(out / "best.ckpt")["epoch"] == 1
    summary = train_run(None, out_dir=out, resume=True, progress=False)
    assert summary["best_epoch"] == 1 and ckpt.load_checkpoint(out / "best.ckpt")["epoch"] == 1


def test_eval_reads_the_data_from_the_data_dir_it_is_given(idx_data, tmp_path, monkeypatch):
    """``evaluate_checkpoint(..., data_dir=D)`` reads the run's dataset from D, not from the
    folder the run was trained from (moved since) or the default data folder."""
    import shutil

    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache-train"))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    out = tmp_path / "run"
    config = resolve_config(dict(model="lenet5", dataset="mnist", data_dir=str(idx_data.root),
                                 epochs=1, batch_size=16, val_split=0.25, device="cpu",
                                 num_threads=1, recipe="none", log_every=5))
    summary = train_run(config, out_dir=out, progress=False)
    moved = tmp_path / "moved"
    shutil.move(str(idx_data.root), moved)
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache-eval"))  # no decoded copy either
    assert evaluate_checkpoint(out, data_dir=str(moved))["acc"] == summary["test_acc"]
    with pytest.raises(UserError, match="mnist"):
        evaluate_checkpoint(out)  # the run's own folder is gone


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
