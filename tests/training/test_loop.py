"""The step loop and evaluation (train_one_epoch, evaluate): learning, metrics, no per-step host sync, NaN guard, AMP, aux heads, clipping; the epoch loop of a run (selection, early stopping, the per-epoch schedule, clocks, progress)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from cnnbench.training.evaluation import evaluate
from cnnbench.training.loop import NonFiniteLoss, train_one_epoch
from cnnbench.training.setup import Training
from engine_fixtures import (AuxNet, TinyNet, _tiny_folder_files, read_jsonl,  # noqa: F401
                             tensor_batches, tiny_folder, train_tiny)


def _train(model, batches, epochs, lr=0.05, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    stats = None
    for _ in range(epochs):
        stats = train_one_epoch(model, batches, opt, crit, **kw)
    return stats


def test_overfits_a_tiny_batch_to_100_percent():
    torch.manual_seed(0)
    model = TinyNet()
    batch = tensor_batches(16, batch_size=16)
    stats = _train(model, batch, 60, lr=0.1)
    assert stats["acc"] == 1.0
    result = evaluate(model, batch, num_classes=4)
    assert result["acc"] == 1.0 and result["loss"] < 0.1


def test_epoch_stats_and_counters():
    torch.manual_seed(0)
    batches = tensor_batches(40, batch_size=16)  # 16 + 16 + 8
    logged = []
    stats = _train(TinyNet(), batches, 1, log_every=2, step=10, images_seen=100,
                   on_log=lambda s, n, loss, lr: logged.append((s, n, loss)))
    assert (stats["steps"], stats["images"], stats["step"], stats["images_seen"]) == (3, 40, 13, 140)
    assert 0 <= stats["acc"] <= 1 and stats["loss"] > 0 and stats["images_per_s"] > 0
    assert [(s, n) for s, n, _ in logged] == [(12, 132)]


def test_no_host_sync_per_step(monkeypatch):
    """Losses and accuracies stay on the device: one read per epoch (plus one per log_every)."""
    calls = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(name, fn):
        def wrapper(self, *a, **k):
            calls[name] += 1
            return fn(self, *a, **k)
        return wrapper

    model, batches = TinyNet(), tensor_batches(64, batch_size=4)  # 16 steps
    monkeypatch.setattr(torch.Tensor, "item", counting("item", item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", tolist))
    _train(model, batches, 1, log_every=0)
    assert calls == {"item": 0, "tolist": 1}
    _train(model, batches, 1, log_every=8)
    assert calls == {"item": 0, "tolist": 1 + 2 + 1}  # + one read per log point


def test_nan_loss_stops_with_a_clear_message():
    model = TinyNet()
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="training loss became nan by step 4;"):
        _train(model, tensor_batches(32, batch_size=8), 1, log_every=0)  # at the epoch's end
    model = TinyNet()
    with pytest.raises(NonFiniteLoss, match="by step 2"):  # caught at the first log point
        _train(model, tensor_batches(32, batch_size=8), 1, lr=1e30, log_every=2)


def test_evaluate_metrics_and_confusion_matrix():
    class Fixed(nn.Module):  # predicts class 0 for every image
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3)
            logits[:, 0] = 1.0
            return logits + self.w

    x = torch.zeros(6, 1, 2, 2)
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    result = evaluate(Fixed(), [(x[:4], y[:4]), (x[4:], y[4:])], num_classes=3,
                      return_predictions=True)
    assert result["acc"] == pytest.approx(0.5) and result["n"] == 6 and result["correct"] == 3
    assert result["confusion_matrix"] == [[3, 0, 0], [3, 0, 0], [0, 0, 0]]
    assert result["per_class_acc"] == [1.0, 0.0, None]
    assert result["predictions"].tolist() == [0] * 6 and result["targets"].tolist() == y.tolist()
    expected = nn.functional.cross_entropy(Fixed()(x), y).item()
    assert result["loss"] == pytest.approx(expected)


def test_evaluate_restores_training_mode_and_uses_inference_mode():
    model = TinyNet().train()
    seen = {}
    model.register_forward_hook(lambda m, i, o: seen.update(inference=torch.is_inference_mode_enabled(),
                                                             training=m.training))
    evaluate(model, tensor_batches(8, batch_size=8), num_classes=4)
    assert seen == {"inference": True, "training": False} and model.training


def test_aux_heads_add_weighted_losses():
    torch.manual_seed(0)
    model = AuxNet()
    batches = tensor_batches(16, batch_size=16)
    x, y = batches[0]
    main, aux = model(x)
    expected = (nn.functional.cross_entropy(main, y)
                + 0.5 * nn.functional.cross_entropy(aux, y)).item()
    stats = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.0),
                            nn.CrossEntropyLoss())
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)
    assert evaluate(model, batches, num_classes=4)["n"] == 16  # eval: plain logits


def test_amp_bf16_channels_last_grad_clip_and_ema_hook():
    torch.manual_seed(0)
    model = TinyNet().to(memory_format=torch.channels_last)
    updates = []

    class CountingAverage:
        def update(self, m):
            updates.append(1)

    stats = _train(model, tensor_batches(32, batch_size=8), 2, amp="bf16", channels_last=True,
                   grad_clip=0.5, ema=CountingAverage())
    assert 0 <= stats["acc"] <= 1 and len(updates) == 8
    result = evaluate(model, tensor_batches(32, batch_size=8), num_classes=4, amp="bf16",
                      channels_last=True)
    assert 0 <= result["acc"] <= 1


def test_fp16_with_grad_scaler_on_cpu():
    """fp16 autocast with a GradScaler takes the same steps as fp32, up to fp16 rounding: the
    gradients are unscaled before clipping and stepping (a scaler used without ``scale()``, or
    clipping the scaled gradients, moves the weights by a very different amount)."""
    torch.manual_seed(0)
    reference = TinyNet()
    start = copy.deepcopy(reference.state_dict())
    batches = tensor_batches(32, batch_size=8)

    def train(model, **kw):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        return train_one_epoch(model, batches, opt, nn.CrossEntropyLoss(), **kw)

    # clipped at 0.5 (the gradient norms here are above it: clipping engages) and not clipped
    for grad_clip in (0.5, 0.0):
        reference = TinyNet()
        reference.load_state_dict(start)
        plain = train(reference, grad_clip=grad_clip)
        model = TinyNet()
        model.load_state_dict(start)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
        half = train(model, scaler=scaler, amp="fp16", grad_clip=grad_clip)
        assert half["steps"] == 4 and scaler.get_scale() == 2.0 ** 10  # no overflow, no skipped step
        assert half["loss"] == pytest.approx(plain["loss"], rel=2e-2)
        for name in ("conv.weight", "bn.weight", "fc.weight"):
            assert not torch.equal(model.state_dict()[name], start[name]), f"{name} did not train"
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(value, reference.state_dict()[name], atol=2e-3,
                                           rtol=2e-2, msg=f"{name} differs from the fp32 run")


def test_tta_mirror_of_a_flip_invariant_model_equals_plain():
    class Symmetric(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 4)

        def forward(self, x):
            return self.fc(x.mean((1, 2, 3)).unsqueeze(1))

    model, batches = Symmetric(), tensor_batches(16, batch_size=8)
    plain = evaluate(model, batches, num_classes=4)
    mirrored = evaluate(model, batches, num_classes=4, tta="mirror")
    assert mirrored["acc"] == plain["acc"] and mirrored["loss"] == pytest.approx(plain["loss"])


class _Predicts(nn.Module):
    """Predicts the class written in pixel (0, 0) of each image, whatever the training does."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.unused = nn.Parameter(torch.zeros(()))  # something for the optimizer to hold

    def forward(self, x):
        guess = x[:, 0, 0, 0].long()
        return 3.0 * nn.functional.one_hot(guess, self.num_classes).float() + 0 * self.unused


def _known_batches():
    """Batches of 5, 3 and 2 images of which _Predicts gets 5, 0 and 1 right."""
    batches = []
    for n, k in zip((5, 3, 2), (5, 0, 1)):
        y = torch.arange(n) % 4
        guess = torch.where(torch.arange(n) < k, y, (y + 1) % 4)
        x = torch.zeros(n, 1, 2, 2)
        x[:, 0, 0, 0] = guess.float()
        batches.append((x, y))
    return batches


def test_train_acc_and_loss_are_exact_over_batches_of_unequal_size():
    """Guards against dividing the correct count by ``steps * last_batch_size`` (or averaging
    per-batch accuracies): 5/5, 0/3 and 1/2 correct is 6/10 = 0.6, not 1.0 or 0.5."""
    batches = _known_batches()
    model = _Predicts()
    stats = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1),
                            nn.CrossEntropyLoss())
    assert stats["acc"] == pytest.approx(0.6, abs=1e-12)
    assert (stats["images"], stats["steps"]) == (10, 3)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    expected_loss = nn.functional.cross_entropy(model(x), y).item()  # mean over all 10 images
    assert stats["loss"] == pytest.approx(expected_loss, rel=1e-6)


class _Progress:
    def __init__(self):
        self.updates, self.logs = [], []

    def update(self, images):
        self.updates.append(images)

    def log(self, **metrics):
        self.logs.append(metrics)


def test_progress_gets_each_steps_images_and_each_log_windows_loss_and_accuracy():
    """Windows of 2 steps (5/5 + 0/3 right: 62.5%) and of 1 step (100%, 0%, 50%): each log
    point's accuracy and loss are those of the steps since the last one, as ``on_log`` gets."""
    model = _Predicts()
    for log_every, accs in ((2, [0.625]), (1, [1.0, 0.0, 0.5])):
        progress, logged = _Progress(), []
        train_one_epoch(model, _known_batches(), torch.optim.SGD(model.parameters(), lr=0.0),
                        nn.CrossEntropyLoss(), log_every=log_every, progress=progress,
                        on_log=lambda step, seen, loss, lr: logged.append(loss))
        assert progress.updates == [5, 3, 2]
        assert [m["acc"] for m in progress.logs] == accs
        assert [m["loss"] for m in progress.logs] == logged and len(logged) == len(accs)
        assert set(progress.logs[0]) == {"loss", "acc"}


def test_the_epochs_rate_is_its_images_over_its_time_and_an_instant_epoch_has_none(monkeypatch):
    from cnnbench.training import loop

    model = _Predicts()
    stats = train_one_epoch(model, _known_batches(), torch.optim.SGD(model.parameters(), lr=0.0),
                            nn.CrossEntropyLoss())
    assert stats["images_per_s"] == 10 / stats["time_s"]
    one = train_one_epoch(model, _known_batches()[2:], torch.optim.SGD(model.parameters(), lr=0.0),
                          nn.CrossEntropyLoss())  # one step is an epoch too
    assert (one["images"], one["steps"]) == (2, 1)
    single = [(_known_batches()[0][0][:1], _known_batches()[0][1][:1])]
    assert train_one_epoch(model, single, torch.optim.SGD(model.parameters(), lr=0.0),
                           nn.CrossEntropyLoss())["images"] == 1  # so is one image
    monkeypatch.setattr(loop.time, "perf_counter", lambda: 100.0)  # a clock that stands still
    still = train_one_epoch(model, _known_batches(), torch.optim.SGD(model.parameters(), lr=0.0),
                            nn.CrossEntropyLoss())
    assert still["time_s"] == 0.0 and math.isnan(still["images_per_s"])


def test_aux_heads_without_a_weight_count_point_three():
    """GoogLeNet's paper weight (0.3) when a model with auxiliary outputs names none."""
    class Unweighted(AuxNet):
        aux_weight = property(lambda self: (_ for _ in ()).throw(AttributeError("none")))

    torch.manual_seed(0)
    model = Unweighted()
    batches = tensor_batches(16, batch_size=16)
    main, aux = model(batches[0][0])
    expected = (nn.functional.cross_entropy(main, batches[0][1])
                + 0.3 * nn.functional.cross_entropy(aux, batches[0][1])).item()
    stats = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.0),
                            nn.CrossEntropyLoss())
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)


def test_defaults_count_from_zero_and_neither_clip_nor_log():
    """With no options: the counters start at 0, gradients are not clipped (the weights move
    as one plain SGD step on the raw gradient), and ``on_log`` is called only if asked."""
    torch.manual_seed(0)
    model = TinyNet()
    start = copy.deepcopy(model.state_dict())
    batches = tensor_batches(16, batch_size=16)
    x, y = batches[0]
    big = 1000.0  # a large learning rate makes clipping visible in the step
    reference = TinyNet()
    reference.load_state_dict(start)
    nn.functional.cross_entropy(reference(x), y).backward()
    expected = {n: p.detach() - big * p.grad for n, p in reference.named_parameters()}
    logged = []
    stats = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=big),
                            nn.CrossEntropyLoss(), on_log=lambda *a: logged.append(a))
    assert (stats["step"], stats["images_seen"], stats["steps"]) == (1, 16, 1)
    assert logged == []  # log_every defaults to 0: no log points
    for name, value in model.named_parameters():
        torch.testing.assert_close(value.detach(), expected[name], rtol=1e-5, atol=1e-4)


def test_gradient_clipping_bounds_the_fp32_step():
    """``grad_clip`` in the fp32 path: one plain SGD step (lr 1, no momentum) moves the weights
    by exactly the clipped gradient, whose norm is ``grad_clip``; without clipping the same
    step is far larger (a loop that skips the clip in fp32 moves them ~1000x as far)."""
    torch.manual_seed(0)
    start = TinyNet()
    batches = tensor_batches(8, batch_size=8)

    def step_norm(grad_clip):
        model = copy.deepcopy(start)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        train_one_epoch(model, batches, opt, nn.CrossEntropyLoss(), grad_clip=grad_clip)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return float((after - before).norm())

    free = step_norm(0.0)
    assert free > 0.05
    assert step_norm(1e-4) == pytest.approx(1e-4, rel=1e-3)


def test_the_test_monitor_adds_its_time_to_evaluation_and_keeps_the_best_epoch(monkeypatch):
    """monitor_test: each epoch's test figures for the curves; their time counts as evaluation
    time, and the best test accuracy (the report's optimistic measure) keeps its first epoch."""
    from types import SimpleNamespace

    from cnnbench.training import loop

    clock = iter([10.0, 12.5, 20.0, 21.0, 30.0, 30.25])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    accuracies = iter([0.5, 0.7, 0.7])
    t = SimpleNamespace(evaluate=lambda split: {"loss": 1.0, "acc": next(accuracies)})
    meta = {"eval_time_s": 4.0}
    assert loop._monitor_test(t, meta, 1) == {"epoch_test_loss": 1.0, "epoch_test_acc": 0.5}
    assert meta == {"eval_time_s": 6.5, "max_epoch_test_acc": 0.5, "max_epoch_test_epoch": 1}
    loop._monitor_test(t, meta, 2)
    loop._monitor_test(t, meta, 3)  # as good as epoch 2: the first stays
    assert meta == {"eval_time_s": 7.75, "max_epoch_test_acc": 0.7, "max_epoch_test_epoch": 2}


def test_a_runs_epoch_hands_the_step_loop_all_its_settings_and_advances_its_counters(monkeypatch):
    """train_epoch passes the run's model, data, optimizer, schedule, scaler, precision, device,
    memory format, clipping, weight average, logging and processes to train_one_epoch, without
    PyTorch's warning about a schedule stepped after a skipped fp16 step."""
    import warnings
    from types import SimpleNamespace

    from cnnbench.training import loop

    calls = []

    def step_loop(*args, **kwargs):
        warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`.", UserWarning)
        warnings.warn("an unrelated warning", UserWarning)
        calls.append((args, kwargs))
        return {"step": kwargs["step"] + 5, "images_seen": kwargs["images_seen"] + 80}

    monkeypatch.setattr(loop, "train_one_epoch", step_loop)
    per_step = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), lambda s: 1.0)
    config = SimpleNamespace(amp="bf16", channels_last=True, grad_clip=1.5, log_every=4)
    t = SimpleNamespace(config=config, train_model="model", loader=lambda epoch: f"loader {epoch}", optimizer="opt",
                        criterion="loss", scheduler=per_step, scaler="scaler", device="cpu", ema="ema", step=10,
                        images_seen=160, dist="dist")
    on_log, progress = object(), object()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        stats = loop.train_epoch(t, 2, on_log=on_log, progress=progress)
    assert [str(w.message) for w in shown] == ["an unrelated warning"]  # only the scheduler's is silenced
    assert calls == [(("model", "loader 2", "opt", "loss"), dict(
        scheduler=per_step, scaler="scaler", amp="bf16", device="cpu", channels_last=True, grad_clip=1.5, ema="ema",
        log_every=4, on_log=on_log, progress=progress, step=10, images_seen=160, dist="dist"))]
    assert (t.step, t.images_seen) == (15, 240) and stats["step"] == 15
    # a schedule stepped on the validation loss once per epoch is not the step loop's
    t.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(per_step.optimizer)
    with pytest.warns(UserWarning, match="an unrelated warning"):
        loop.train_epoch(t, 3)
    assert calls[-1][1]["scheduler"] is None and calls[-1][1]["on_log"] is None


class _ConstantLoss(nn.Module):
    """A model whose training loss is a chosen number per batch (with a gradient path), and
    which records each input's memory format."""

    def __init__(self, losses):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.losses = list(losses)
        self.channels_last = []

    def forward(self, x):
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last)
                                  and not x.is_contiguous())
        value = self.losses[len(self.channels_last) - 1]
        return torch.zeros(x.shape[0], 2) + self.weight * 0 + value


def test_the_epoch_loss_is_summed_in_float64_on_the_cpu_and_inputs_keep_their_layout():
    """Guards against float32 loss accumulators, the epoch's or the log window's (2**24 + 1
    rounds to 2**24 in float32, so the nine 1.0 losses after a 2**24 one would vanish from the
    mean) and against a channels_last default (inputs are converted only when asked)."""
    losses = [2.0 ** 24] + [1.0] * 9
    model = _ConstantLoss(losses)
    batches = [(torch.rand(1, 3, 4, 4), torch.zeros(1, dtype=torch.long)) for _ in losses]
    logged = []
    stats = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.0),
                            lambda logits, y: logits[:, 0].mean(), log_every=10,
                            on_log=lambda step, seen, loss, lr: logged.append(loss))
    assert stats["loss"] == (2.0 ** 24 + 9) / 10  # exact in float64
    assert logged == [(2.0 ** 24 + 9) / 10]  # the log window's sum too
    assert model.channels_last == [False] * 10
    # a batch's loss times its size is formed in float64 too: float32's 1/3 times 3 rounds to
    # exactly 1 in float32, whose mean over the 3 images is then not float32's 1/3
    third = float(torch.tensor(1 / 3))
    model = _ConstantLoss([third])
    stats = train_one_epoch(model, [(torch.rand(3, 3, 4, 4), torch.zeros(3, dtype=torch.long))],
                            torch.optim.SGD(model.parameters(), lr=0.0),
                            lambda logits, y: logits[:, 0].mean())
    assert stats["loss"] == third
    model = _ConstantLoss([1.0] * 10)  # asked for: every batch converted
    train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.0),
                    lambda logits, y: logits[:, 0].mean(), channels_last=True)
    assert model.channels_last == [True] * 10


class _FirstStepOnly(TinyNet):
    """TinyNet with a bias that only the first forward pass uses."""

    def __init__(self):
        super().__init__()
        self.extra = nn.Parameter(torch.zeros(4))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = super().forward(x)
        return out + self.extra if self.calls == 1 else out


def test_gradients_are_dropped_between_steps_not_zeroed():
    """``zero_grad(set_to_none=True)``: a parameter no later step uses keeps the value its one
    step gave it. Zeroed gradients (``set_to_none=False``) would let SGD's momentum move it on
    at every step."""
    torch.manual_seed(0)
    model = _FirstStepOnly()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    batches = tensor_batches(48, batch_size=16)  # 3 steps
    train_one_epoch(model, batches[:1], opt, nn.CrossEntropyLoss())
    after_first = model.extra.detach().clone()
    assert after_first.abs().sum() > 0
    train_one_epoch(model, batches[1:], opt, nn.CrossEntropyLoss())
    assert torch.equal(model.extra.detach(), after_first)


class _TwinProcess:
    """A process group of two in which the other process computed exactly what this one did:
    a sum over the processes is twice this process's."""

    world_size = 2

    def all_reduce_sum(self, tensor):
        return tensor.mul_(2)


class _Shards(list):
    """This process's batches of a distributed epoch, with the global batch sizes."""

    def __init__(self, batches, global_sizes):
        super().__init__(batches)
        self.sizes = global_sizes

    def global_batch_sizes(self):
        return list(self.sizes)


def test_a_distributed_epoch_counts_global_images_and_weighs_an_uneven_last_batch():
    """With a process group: images, steps' counters and metrics are over all processes, and
    the last batch (5 images: 3 here, 2 on the other process) has its loss weighted by 6/5, so
    that DDP's mean of the two processes' means is the mean over the 5 images."""
    torch.manual_seed(0)
    model = TinyNet()
    start = copy.deepcopy(model.state_dict())
    local = tensor_batches(11, batch_size=4)  # 4 + 4 + 3 here
    loader = _Shards(local, [8, 8, 5])
    lr = 0.1
    # the reference: the same steps in one process, the last one's gradient times 6/5
    reference = TinyNet()
    reference.load_state_dict(start)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=lr)
    losses = []
    for k, (x, y) in enumerate(local):
        ref_opt.zero_grad()
        loss = nn.functional.cross_entropy(reference(x), y)
        losses.append(loss.item() * y.shape[0])
        (loss * (6 / 5 if k == 2 else 1.0)).backward()
        ref_opt.step()
    logged = []
    stats = train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=lr),
                            nn.CrossEntropyLoss(), dist=_TwinProcess(), log_every=3,
                            images_seen=100, on_log=lambda *a: logged.append(a))
    assert (stats["images"], stats["steps"], stats["step"], stats["images_seen"]) == (21, 3, 3, 121)
    assert stats["loss"] == pytest.approx(2 * sum(losses) / 21, rel=1e-5)  # all-reduced sums
    assert [(s, n) for s, n, _, _ in logged] == [(3, 121)]
    assert logged[0][2] == pytest.approx(2 * sum(losses) / 21, rel=1e-5)  # the window's too
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name], rtol=1e-5, atol=1e-6,
                                   msg=f"{name}: the uneven last batch's weight")


# -- the epoch loop of a run (loop._train) ---------------------------------------------------

def _scripted_validation(monkeypatch, accs, losses=None, pause_s=0.0):
    """Make the run's per-epoch validation return ``accs[i]`` (and ``losses[i]``) in epoch i,
    taking at least ``pause_s``; other splits are evaluated for real. Returns the calls."""
    import time

    real, calls = Training.evaluate, []

    def scripted(self, split):
        if split != "val":
            return real(self, split)
        i = len(calls)
        calls.append(i)
        time.sleep(pause_s)
        return {"acc": accs[i], "loss": losses[i] if losses else 1.0 - accs[i]}

    monkeypatch.setattr(Training, "evaluate", scripted)
    return calls


def test_selection_keeps_the_first_of_equal_epochs_and_early_stopping_counts_exactly(
        tiny_folder, monkeypatch):
    """Validation accuracies 50, 50, 60, 60, 60, 70% with ``early_stop`` 2: epoch 2 only ties
    epoch 1 (not an improvement), epoch 3 improves, epochs 4 and 5 do not, so the run stops
    after epoch 5 with epoch 3 selected, and epoch 6 never runs."""
    _scripted_validation(monkeypatch, [0.5, 0.5, 0.6, 0.6, 0.6, 0.7])
    summary, out = train_tiny(tiny_folder, "stop", epochs=6, early_stop=2, limit_train=32)
    assert summary["stopped_early"] is True and summary["epochs_completed"] == 5
    assert (summary["best_epoch"], summary["best_val_acc"]) == (3, 0.6)
    assert [m["val_acc"] for m in read_jsonl(out / "metrics.jsonl")] == [0.5, 0.5, 0.6, 0.6, 0.6]


def test_a_per_epoch_schedule_steps_on_the_validation_loss_else_the_training_loss(
        tiny_folder, monkeypatch):
    """``plateau`` watches the validation loss; without a validation split, the epoch's
    training loss."""
    seen = []
    real_step = torch.optim.lr_scheduler.ReduceLROnPlateau.step
    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step",
                        lambda self, metric: seen.append(metric) or real_step(self, metric))
    _scripted_validation(monkeypatch, [0.5, 0.6, 0.7], losses=[0.9, 0.8, 0.7])
    train_tiny(tiny_folder, "val", epochs=3, scheduler="plateau", limit_train=32)
    assert seen == [0.9, 0.8, 0.7]
    seen.clear()
    _, out = train_tiny(tiny_folder, "train", epochs=2, scheduler="plateau", val_split=0.0,
                  limit_train=32)
    assert seen == [m["train_loss"] for m in read_jsonl(out / "metrics.jsonl")]


def test_the_evaluation_clock_adds_up_every_validation(tiny_folder, monkeypatch):
    """Three validations of at least 0.2 s each: the run's evaluation time holds all three
    (and the test's), not only the last."""
    _scripted_validation(monkeypatch, [0.5, 0.6, 0.7], pause_s=0.2)
    summary, _ = train_tiny(tiny_folder, "clock", epochs=3, limit_train=32)
    assert summary["eval_time_s"] >= 3 * 0.2 + summary["test_time_s"]


def test_the_console_names_each_epoch_and_its_images(tiny_folder, monkeypatch, capsys):
    """Plain progress lines (no terminal) say the epoch, of how many, the images done of the
    epoch's, and the last log window's loss and accuracy."""
    from cnnbench.training.console import Console

    monkeypatch.setattr(Console, "PLAIN_INTERVAL_S", 0.0)
    train_tiny(tiny_folder, "console", progress=True, epochs=2, limit_train=32, log_every=1)
    import re

    lines = capsys.readouterr().err.splitlines()
    for epoch in (1, 2):  # after each step, the step's loss and accuracy
        shown = rf"epoch {epoch}/2 16/32 img loss \d\.\d{{4}} acc \d+\.\d\d% \d+ img/s ETA \d+ s"
        assert any(re.fullmatch(shown, line) for line in lines), lines
