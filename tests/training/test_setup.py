"""What a run keeps to continue (cnnbench.training.setup.Training.training_state and its
inverse): which weights become the live ones, the gradient scaler only where both sides have
one, a checkpoint of an older version without ``keep_trainable``, and each process's own
generators in a job of the same size. What :func:`build_training` builds: the model in the
asked memory format, one schedule over a batch schedule's stages, each loader's share of a
job (and its wrapped model compiled apart), ``torch.compile`` only when asked, no SyncBatchNorm in
one process (a job's needs GPUs), a loss scaler for fp16 only, the weight average's settings."""

from __future__ import annotations

import contextlib
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cnnbench.config.resolve import resolve_config
from cnnbench.training.setup import build_training


@pytest.fixture
def training(tiny_mnist_env):
    def build(**options):
        return build_training(resolve_config({"device": "cpu", "limit_train": 64, "limit_eval": 32,
                                              "epochs": 1, "model": "lenet5", "num_threads": 1,
                                              **options}))
    return build


def _shifted(weights: dict, by: float) -> dict:
    return {k: v + by if v.is_floating_point() else v for k, v in weights.items()}


def test_the_live_weights_are_the_saved_ones_or_the_evaluation_weights(training):
    t = training(ema=0.9)  # with a weight average, the live weights are saved apart
    state = t.training_state()
    assert state["model"] is not None and state["keep_trainable"] == []
    evaluation = _shifted(state["model"], 1.0)
    t.load_training_state(evaluation, {**state, "model": _shifted(state["model"], 2.0)})
    live = t.model.state_dict()
    assert all(torch.equal(live[k], v + 2.0) for k, v in state["model"].items() if v.is_floating_point())

    plain = training()  # without one, the evaluation weights are the live weights
    state = plain.training_state()
    assert state["model"] is None
    weights = _shifted(plain.model.state_dict(), 3.0)
    plain.load_training_state(weights, state)
    assert all(torch.equal(plain.model.state_dict()[k], v) for k, v in weights.items())


def test_the_scaler_is_restored_only_where_both_have_one_and_old_checkpoints_load(training):
    t = training()
    state = t.training_state()
    assert t.scaler is None and state["scaler"] is None  # fp16 only: none on a CPU
    t.load_training_state(t.model.state_dict(), {**state, "scaler": {"scale": 1024.0}})  # ignored

    loaded = []
    t.scaler = SimpleNamespace(load_state_dict=loaded.append, state_dict=lambda: {"scale": 512.0})
    assert t.training_state()["scaler"] == {"scale": 512.0}  # one with a scaler saves it
    t.load_training_state(t.model.state_dict(), state)  # a checkpoint without one: kept as it is
    t.load_training_state(t.model.state_dict(), {**state, "scaler": {"scale": 1024.0}})
    assert loaded == [{"scale": 1024.0}]

    t.keep_trainable = ("head",)
    old = {k: v for k, v in state.items() if k != "keep_trainable"}  # written before the key
    t.load_training_state(t.model.state_dict(), old)
    assert t.keep_trainable == ()


def test_each_process_takes_its_own_generators_from_a_job_of_the_same_size(training):
    t = training()
    state = {"rng": "rank 0's", "rng_ranks": ["rank 0's", "rank 1's"]}
    assert t.rng_state(state) == "rank 0's"  # one process: the first
    t.dist = SimpleNamespace(rank=1, world_size=2)
    assert t.rng_state(state) == "rank 1's"
    t.dist = SimpleNamespace(rank=1, world_size=3)  # another job size: rank 0's for all
    assert t.rng_state(state) == "rank 0's"
    assert t.rng_state({"rng": "rank 0's"}) == "rank 0's"  # a checkpoint of one process


def test_batchnorm_statistics_and_their_averages_are_what_the_processes_average():
    """After every epoch of a distributed run without SyncBatchNorm, each BatchNorm running
    statistic, and its weight average, is replaced by the mean over the processes."""
    from torch import nn

    from cnnbench.training.setup import Training

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.BatchNorm2d(2))
    model[1].running_mean.fill_(1.0)
    averaged = []

    class Processes:  # the other process's statistics are zeros: the mean halves them
        def average_(self, tensors):
            averaged.extend(tensors)
            for t in tensors:
                t.div_(2)

    names = ["1.running_mean", "1.running_var", "3.running_mean", "3.running_var"]
    ema = SimpleNamespace(averages={n: torch.full((2,), 4.0) for n in names})
    Training.average_batchnorm_statistics(SimpleNamespace(model=model, ema=ema, dist=Processes()))
    assert len(averaged) == 8
    assert all(a is b for a, b in zip(averaged, [*(model.state_dict(keep_vars=True)[n] for n in names),
                                                 *(ema.averages[n] for n in names)]))
    assert model[1].running_mean.tolist() == [0.5, 0.5] and ema.averages[names[0]].tolist() == [2.0, 2.0]
    averaged.clear()
    Training.average_batchnorm_statistics(SimpleNamespace(model=model, ema=None, dist=Processes()))
    assert len(averaged) == 4  # no weight average: the live statistics only


def test_the_gallery_heat_of_saved_weights_is_of_those_weights_not_the_live_ones(training):
    """Training.explain_saved: Grad-CAM of the weights given (the tested ones), in a model apart
    from the training one, for the test images and classes asked."""
    from cnnbench.training.evaluation import gallery_heat

    t = training()
    tested = _shifted(t.model.state_dict(), 0.0)
    for p in t.model.parameters():  # training goes on after the test: the live weights move
        p.data.mul_(-1)
    rows, classes = torch.tensor([0, 3]), torch.tensor([1, 2])
    heat = t.explain_saved(tested, rows, classes)
    t.model.load_state_dict(tested)
    assert torch.equal(heat["heat"], gallery_heat(t.model, t.config, t.data, t.device, rows, classes)["heat"])
    assert heat["heat"].shape == (2, 28, 28)
    other = t.explain_saved(tested, rows, torch.tensor([7, 7]))
    assert not torch.equal(heat["heat"], other["heat"])  # the classes asked


def test_the_copy_for_saved_weights_is_built_once_on_the_runs_device_and_names_bad_weights():
    """Saved weights (best.ckpt's, the tested ones) are evaluated in one copy of the model, made
    on the run's device at the first call and refilled after; weights that do not fit say
    where they came from and which model they should fit."""
    from cnnbench.config import TrainConfig
    from cnnbench.data.specs import registered_spec
    from cnnbench.errors import UserError
    from cnnbench.models import create_model_for
    from cnnbench.training.setup import Training

    config, spec = TrainConfig(model="lenet5", dataset="mnist"), registered_spec("mnist")
    weights = create_model_for(config, spec, (28, 28)).state_dict()
    t = SimpleNamespace(saved_copy=None, config=config, spec=spec, data=SimpleNamespace(input_size=(28, 28)),
                        device=torch.device("meta"))
    assert {p.device.type for p in Training._saved(t, weights, "best.ckpt").parameters()} == {"meta"}
    t.saved_copy, t.device = None, torch.device("cpu")
    copy = Training._saved(t, weights, "best.ckpt")
    assert Training._saved(t, _shifted(weights, 1.0), "last.ckpt") is copy  # refilled, not built again
    assert torch.equal(copy.features.c1.weight, weights["features.c1.weight"] + 1.0)
    wrong = {k: v for k, v in weights.items() if not k.startswith("classifier")}
    for first in (True, False):
        t.saved_copy = None if first else copy
        with pytest.raises(UserError, match="^the weights in best.ckpt do not fit model lenet5 "):
            Training._saved(t, wrong, "best.ckpt")


def test_a_run_evaluates_with_its_own_settings_and_builds_each_loader_once(monkeypatch):
    from cnnbench.config import TrainConfig
    from cnnbench.errors import UserError
    from cnnbench.training import setup
    from cnnbench.training.setup import Training

    calls, built = [], []
    monkeypatch.setattr(setup, "evaluate", lambda model, loader, **kw: calls.append((model, loader, kw)) or "result")
    monkeypatch.setattr(setup, "make_loader", lambda config, data, split, device, dist: built.append(
        (split, device, dist)) or f"{split} loader")
    config = TrainConfig(model="lenet5", dataset="mnist", amp="bf16", channels_last=True, tta="mirror")
    t = SimpleNamespace(config=config, spec=SimpleNamespace(num_classes=7), device="cpu", dist="dist",
                        data="data", val_loader=None, eval_loaders={})
    assert Training._evaluate(t, "model", "loader", return_logits=True) == "result"
    assert calls == [("model", "loader", {"num_classes": 7, "device": "cpu", "amp": "bf16", "channels_last": True,
                                          "tta": "mirror", "dist": "dist", "return_logits": True})]
    assert Training.eval_loader(t, "test") == Training.eval_loader(t, "test") == "test loader"
    assert built == [("test", "cpu", "dist")]  # built once: its images go to the device once
    with pytest.raises(UserError, match=r"^this run has no validation split \(val_split 0\)$"):
        Training.eval_loader(t, "val")
    t.val_loader = "the run's val loader"  # validation uses the run's own loader, never a new one
    assert Training.eval_loader(t, "val") == "the run's val loader"
    assert built == [("test", "cpu", "dist")]


def test_whitening_statistics_come_from_images_spread_over_the_training_set(monkeypatch):
    from cnnbench.config import TrainConfig
    from cnnbench.training import setup, whitening
    from cnnbench.training.setup import Training

    seen = []
    monkeypatch.setattr(setup, "WHITEN_IMAGES", 4)
    monkeypatch.setattr(whitening, "find_whitening_conv", lambda model: "conv")
    monkeypatch.setattr(whitening, "init_patch_whitening", lambda conv, images: seen.append((conv, images)))
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    data = SimpleNamespace(train=(images, torch.arange(10)), mean=(0.0,), std=(1.0 / 255,))
    t = SimpleNamespace(config=TrainConfig(model="fastnet", dataset="cifar10", whiten_init=True), data=data,
                        device=torch.device("cpu"), model="model", dist=None)
    assert 0 < Training.whiten(t) < 60  # its seconds
    [(conv, batch)] = seen
    assert conv == "conv" and batch[:, 0, 0, 0].tolist() == [0, 3, 6, 9]  # first, last and evenly between
    # all of them in one batch (more than a loader's default), at the size the model sees
    monkeypatch.setattr(setup, "WHITEN_IMAGES", 300)
    many = torch.arange(300).remainder(256).to(torch.uint8).view(300, 1, 1, 1).expand(300, 1, 2, 2).contiguous()
    t.data = SimpleNamespace(train=(many, torch.arange(300)), mean=(0.0,), std=(1.0 / 255,))
    t.config, t.device = t.config.replace(resize=4), torch.device("meta")
    Training.whiten(t)
    assert seen[-1][1].shape == (300, 1, 4, 4) and seen[-1][1].device.type == "meta"
    t.config, t.device, t.data = t.config.replace(resize=None), torch.device("cpu"), data
    broadcast = []
    t.dist = SimpleNamespace(broadcast_module=broadcast.append)
    Training.whiten(t)
    assert broadcast == ["model"]  # every process ends with rank 0's filters, bit for bit
    t.config = t.config.replace(whiten_init=False)
    assert Training.whiten(t) == 0.0 and len(seen) == 3


def test_an_epoch_starts_in_the_state_its_number_alone_gives(monkeypatch):
    """The freeze schedule, the whitening bias (trained in its first epochs unless frozen), the
    loader's epoch and its size (progressive resizing) follow from the epoch number."""
    from cnnbench.config import TrainConfig
    from cnnbench.training import transfer, whitening
    from cnnbench.training.setup import Training

    freezes, trainable = [], []
    monkeypatch.setattr(transfer, "apply_freeze_schedule", lambda model, freeze, unfreeze_at, epoch, num_classes, keep:
                        freezes.append((model, freeze, unfreeze_at, epoch, num_classes, keep)) or f"line {epoch}")
    conv = nn.Conv2d(3, 4, 2)
    monkeypatch.setattr(whitening, "set_whitening_trainable", lambda c, weight, bias: trainable.append((c, weight, bias)))
    loader = SimpleNamespace(set_epoch=lambda epoch: setattr(loader, "epoch", epoch), resize=None)
    config = TrainConfig(model="fastnet", dataset="cifar10", whiten_init=True, whiten_bias_epochs=2,
                         lowres_size=24, lowres_epochs=1, resize=32, freeze="backbone", unfreeze_at=3)
    t = SimpleNamespace(config=config, model=SimpleNamespace(whiten=conv), spec=SimpleNamespace(num_classes=10),
                        keep_trainable=["fc"], loader=lambda epoch: loader)
    assert Training.start_epoch(t, 0) == "line 0"
    assert freezes == [(t.model, "backbone", 3, 0, 10, ["fc"])]
    assert trainable == [(conv, False, True)] and (loader.epoch, loader.resize) == (0, 24)
    Training.start_epoch(t, 1)
    assert trainable[-1] == (conv, False, True) and (loader.epoch, loader.resize) == (1, 32)
    Training.start_epoch(t, 2)
    assert trainable[-1] == (conv, False, False)  # the bias trains in epochs 0 and 1 only
    conv.bias.requires_grad_(False)  # frozen by the freeze schedule: it stays frozen
    Training.start_epoch(t, 0)
    assert trainable[-1] == (conv, False, False)
    conv.bias.requires_grad_(True)
    t.config = config.replace(whiten_bias_epochs=0)  # filters and bias frozen from the start
    Training.start_epoch(t, 0)
    assert trainable[-1] == (conv, False, False) and len(trainable) == 5
    t.config = config.replace(whiten_bias_epochs=-1)  # no schedule for the whitening layer
    Training.start_epoch(t, 0)
    assert len(trainable) == 5


def test_saved_weights_are_evaluated_on_the_split_asked_in_a_copy_of_the_model(training):
    from cnnbench.errors import UserError

    t = training(val_split=0.5)
    live = {k: v.clone() for k, v in t.model.state_dict().items()}
    saved = _shifted(live, 0.05)
    val = t.evaluate_saved("val", saved)
    test = t.evaluate_saved("test", saved, return_predictions=True)
    assert (val["n"], test["n"]) == (t.data.split["val"], t.data.split["test"]) == (24, 12)
    assert "predictions" not in val and test["predictions"].shape == (12,)  # its keywords reach evaluate
    copy = t.saved_copy
    assert copy is not t.model and all(torch.equal(copy.state_dict()[k], v) for k, v in saved.items())
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in live.items())  # left alone
    without_val = training(val_split=0)
    with pytest.raises(UserError, match=r"^the run of best\.ckpt has no validation split \(val_split 0\); use --split test$"):
        without_val.evaluate_saved("val", saved, source="best.ckpt")
    assert without_val.evaluate_saved("test", saved)["n"] == 12
    # weights that do not fit: the error names where they came from
    for kw, named in (({}, "checkpoint"), ({"source": "run/best.ckpt"}, "run/best.ckpt")):
        with pytest.raises(UserError, match=f"^the weights in {re.escape(named)} do not fit model lenet5"):
            t.evaluate_saved("test", {"nope": torch.zeros(1)}, **kw)


def test_the_model_takes_the_asked_memory_format_and_each_batch_stage_feeds_the_schedule(training):
    t = training(channels_last=True, batch_schedule="8:1,32:2", epochs=3, scheduler="multistep",
                 milestones=[2], gamma=0.1)
    filters = [p for p in t.model.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert filters and all(p.is_contiguous(memory_format=torch.channels_last) for p in filters)
    assert not all(p.is_contiguous() for p in filters)
    steps = [len(t.train_loaders[8]), len(t.train_loaders[32])]
    assert steps[0] > steps[1] > 0
    factor = t.scheduler.lr_lambdas[0]  # epochs of 8, 32, 32 images a step: drop after epoch 2
    second_ends = steps[0] + steps[1]
    assert [factor(second_ends - 1), factor(second_ends)] == [1.0, 0.1]
    plain = training(channels_last=False)
    assert all(p.is_contiguous() for p in plain.model.parameters())


def test_in_a_job_each_loader_holds_this_process_share(training, monkeypatch):
    """Under torchrun (here a stand-in for process 1 of 2) the training loader yields this
    process's block of each global batch and the validation loader its block of the split;
    DistributedDataParallel looks for unused parameters only where a schedule freezes some;
    the process draws dropout from its own seed; --compile compiles the wrapped model."""
    from cnnbench.training.distributed import process_seed

    one = training(val_split=0.5, batch_size=8)
    wrapped = []

    def wrap(model, **kw):  # stands in for DistributedDataParallel
        wrapped.append(kw)
        return SimpleNamespace(module=model)

    job = SimpleNamespace(rank=1, world_size=2, device=torch.device("cpu"),
                          local_main_first=contextlib.nullcontext, wrap=wrap)
    with torch.random.fork_rng():  # the job's seed stays in here
        two = build_training(one.config, dist=job)
        assert torch.initial_seed() == process_seed(one.config.seed, 1)
    assert two.train_model == SimpleNamespace(module=two.model) and two.eval_model is two.model
    train = two.train_loaders[8]
    assert (train.rank, train.world_size, len(train)) == (1, 2, len(one.train_loaders[8]))
    assert two.val_loader.num_samples * 2 == one.val_loader.num_samples > 0
    with torch.random.fork_rng():
        for change in ({"freeze": "backbone"}, {"whiten_bias_epochs": 0, "whiten_init": True}):
            build_training(one.config.replace(**change), dist=job)
        monkeypatch.setattr(torch, "compile", lambda model, **_: ("compiled", model))
        compiled = build_training(one.config.replace(compile=True), dist=job)
    assert [kw["find_unused_parameters"] for kw in wrapped] == [False, True, True, False]
    assert compiled.train_model == ("compiled", SimpleNamespace(module=compiled.model))
    assert compiled.eval_model == ("compiled", compiled.model)


def test_compile_wraps_the_model_once_for_training_and_evaluation(training, monkeypatch):
    compiled = []

    def fake_compile(model, **_):  # what torch.compile returns: the module as ``_orig_mod``
        wrapper = nn.Module()
        wrapper._orig_mod = model
        compiled.append(model)
        return wrapper

    monkeypatch.setattr(torch, "compile", fake_compile)
    t = training(compile=True)
    assert compiled == [t.model] and t.eval_model._orig_mod is t.model
    assert t.train_model is t.eval_model
    plain = training(compile=False)
    assert len(compiled) == 1 and plain.eval_model is plain.train_model is plain.model


def test_sync_bn_is_for_jobs_only(training):
    t = training(model="resnet18", sync_bn=True)  # one process: plain BatchNorm
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in t.model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in t.model.modules())


def test_fp16_gets_a_loss_scaler_on_the_runs_device_and_the_weight_average_its_settings(training):
    t = training(amp="fp16", ema=0.9, ema_every=5)
    assert isinstance(t.scaler, torch.amp.GradScaler) and t.scaler._device == "cpu"
    assert (t.ema.decay, t.ema.every) == (0.9, 5)
    plain = training(amp="bf16")
    assert plain.scaler is None and plain.ema is None


def test_every_process_of_a_job_takes_rank_0s_precision(monkeypatch):
    """``--amp auto`` on a CPU is a measured verdict: rank 0 decides, the others take its
    answer without deciding themselves (a process that measured alone could differ)."""
    from cnnbench.training import setup

    asked, sent = [], []
    monkeypatch.setattr(setup, "resolve_amp", lambda amp, device: asked.append(amp) or "bf16")
    cpu = torch.device("cpu")

    def job(rank):
        return SimpleNamespace(is_main=rank == 0,
                               broadcast_object=lambda obj: sent.append(obj) or "rank 0's answer")

    assert setup.job_amp("auto", cpu) == "bf16" and asked == ["auto"]  # no job: its own
    assert setup.job_amp("auto", cpu, job(1)) == "rank 0's answer"
    assert asked == ["auto"] and sent == [None]  # rank 1 did not decide
    assert setup.job_amp("auto", cpu, job(0)) == "rank 0's answer" and sent == [None, "bf16"]
