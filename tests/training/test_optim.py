"""Optimizers, parameter groups and per-step learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from cnnbench.config import OPTIMIZERS, SCHEDULERS, TrainConfig
from cnnbench.training.optim import (build_optimizer, build_scheduler, is_per_step, lr_factor_fn,
                            param_groups)
from engine_fixtures import TinyNet, tensor_batches


def _scheduler_options(name: str) -> dict:
    return {"multistep": {"milestones": [1]}, "step": {"step_size": 1}}.get(name, {})


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_optimizer_and_scheduler_builds_and_steps(optimizer, scheduler):
    torch.manual_seed(0)
    config = TrainConfig(optimizer=optimizer, scheduler=scheduler, lr=0.01, epochs=2,
                         nesterov=optimizer == "sgd", **_scheduler_options(scheduler))
    model = TinyNet()
    opt = build_optimizer(model, config)
    sched = build_scheduler(opt, config, [3, 3])
    before = [p.detach().clone() for p in model.parameters()]
    lrs = []
    for x, y in tensor_batches(48, batch_size=8)[:6]:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        if is_per_step(sched):
            sched.step()
    if not is_per_step(sched):
        sched.step(1.0)
    assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    state = sched.state_dict()
    assert isinstance(state, dict)
    torch.save(state, __import__("io").BytesIO())  # serialisable for checkpoints


def factors(config, steps):
    f = lr_factor_fn(config, steps)
    return [f(t) for t in range(sum(steps))]


def test_schedule_shapes():
    steps = [10] * 4
    assert factors(TrainConfig(scheduler="none", epochs=4), steps) == [1.0] * 40
    step = factors(TrainConfig(scheduler="step", step_size=2, gamma=0.5, epochs=4), steps)
    assert step[0] == step[19] == 1.0 and step[20] == step[39] == 0.5
    multi = factors(TrainConfig(scheduler="multistep", milestones=[1, 3], gamma=0.1, epochs=4), steps)
    assert multi[9] == 1.0 and multi[10] == pytest.approx(0.1) and multi[30] == pytest.approx(0.01)
    cos = factors(TrainConfig(scheduler="cosine", epochs=4, final_lr_frac=0.1), steps)
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.1, abs=1e-2)
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    lin = factors(TrainConfig(scheduler="linear", warmup_epochs=1, epochs=4), steps)
    assert lin[0] == pytest.approx(0.1) and lin[9] == 1.0 and lin[10] == 1.0
    assert lin[-1] == pytest.approx(1 / 30, abs=1e-9)
    one = factors(TrainConfig(scheduler="onecycle", epochs=4), steps)
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0)
    assert one.index(max(one)) == 10  # warmup over the first quarter
    assert one[-1] < 0.01
    # fractional warmup and a batch schedule (fewer steps per epoch later)
    frac = factors(TrainConfig(scheduler="cosine", warmup_epochs=0.5, epochs=2), [10, 5])
    assert frac[4] == 1.0 and frac[3] == pytest.approx(0.8)


def test_batch_schedule_epochs_map_to_steps():
    config = TrainConfig(batch_schedule="8:1,16:1,32:1", scheduler="multistep",
                         milestones=[1, 2], gamma=0.1)
    f = factors(config, [8, 4, 2])
    assert f[7] == 1.0 and f[8] == pytest.approx(0.1) and f[12] == pytest.approx(0.01)


def test_param_groups_bn_lr_and_no_decay():
    model = TinyNet()
    config = TrainConfig(lr=0.1, weight_decay=1e-3, bn_lr_scale=8.0, no_decay_bn_bias=True)
    groups = {g["name"]: g for g in param_groups(model, config)}
    assert set(groups) == {"weights", "weights_no_decay", "norm_no_decay"}
    assert groups["norm_no_decay"]["lr"] == pytest.approx(0.8)
    assert groups["norm_no_decay"]["weight_decay"] == 0.0
    decayed = {id(p) for p in groups["weights"]["params"]}
    assert decayed == {id(model.conv.weight), id(model.fc.weight)}
    assert {id(p) for p in groups["weights_no_decay"]["params"]} == {id(model.conv.bias),
                                                                     id(model.fc.bias)}
    # default: everything decayed (PyTorch's behaviour), BN at its own lr when scaled
    groups = {g["name"]: g for g in param_groups(model, TrainConfig(weight_decay=1e-3))}
    assert set(groups) == {"weights", "norm"} and groups["norm"]["weight_decay"] == 1e-3
    # frozen parameters are left out
    model.conv.weight.requires_grad_(False)
    params = [p for g in param_groups(model, TrainConfig()) for p in g["params"]]
    assert all(p is not model.conv.weight for p in params)


def test_decoupled_weight_decay_is_independent_of_lr():
    model = TinyNet()
    for lr in (0.1, 0.4):
        config = TrainConfig(optimizer="sgd", lr=lr, weight_decay=0.002, decouple_wd=True,
                             bn_lr_scale=4.0)
        for group in param_groups(model, config):
            assert group["lr"] * group["weight_decay"] == pytest.approx(0.002)


def _one_step_with_zero_gradient(optimizer: str) -> float:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    opt = build_optimizer(model, TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.1,
                                             momentum=0.0, scheduler="none"))
    model.weight.grad = torch.zeros_like(model.weight)
    opt.step()
    return model.weight.item()


def test_weight_decay_coupled_or_decoupled():
    """SGD/Adam add wd*w to the gradient (Adam then normalises it: a full lr-sized step);
    AdamW shrinks the weights by lr*wd outside the adaptive update."""
    assert _one_step_with_zero_gradient("sgd") == pytest.approx(2.0 - 0.1 * 0.1 * 2.0)
    assert _one_step_with_zero_gradient("adamw") == pytest.approx(2.0 * (1 - 0.1 * 0.1))
    assert _one_step_with_zero_gradient("adam") == pytest.approx(2.0 - 0.1, rel=1e-4)


def test_newton_schulz_gives_a_semi_orthogonal_matrix():
    """The Muon update's directions: all singular values near 1 after 5 iterations, for wide,
    tall and badly conditioned matrices (a bug in the coefficients or the transpose breaks it)."""
    from cnnbench.training.muon import orthogonalize

    torch.manual_seed(0)
    for shape in [(8, 27), (64, 16), (32, 32)]:  # singular values spread over 30x
        k = min(shape)
        u = torch.linalg.qr(torch.randn(shape[0], k))[0]
        v = torch.linalg.qr(torch.randn(shape[1], k))[0]
        g = u @ torch.diag(torch.logspace(-1.5, 0, k)) @ v.T
        s = torch.linalg.svdvals(orthogonalize(g))
        assert s.min() > 0.6 and s.max() < 1.25, (shape, s.min(), s.max())
        u, _, vt = torch.linalg.svd(g, full_matrices=False)  # the exact answer U V^T
        cos = torch.nn.functional.cosine_similarity(orthogonalize(g).flatten(), (u @ vt).flatten(), 0)
        assert cos > 0.95


def test_muon_orthogonalises_the_filters_and_gives_the_rest_nesterov_sgd():
    """--optimizer muon: the conv filters (4-D, seen as out x in*k*k) take the orthogonalised
    momentum at muon_lr; the head, biases and BatchNorm take Nesterov SGD at lr."""
    from cnnbench.training.muon import orthogonalize

    torch.manual_seed(0)
    model = TinyNet()
    config = TrainConfig(optimizer="muon", lr=0.05, muon_lr=0.02, momentum=0.9, muon_momentum=0.95)
    opt = build_optimizer(model, config)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.conv.weight)]["muon"] and by_param[id(model.conv.weight)]["lr"] == 0.02
    for p in (model.fc.weight, model.fc.bias, model.conv.bias, model.bn.weight):
        group = by_param[id(p)]
        assert not group["muon"] and group["lr"] == 0.05 and group["nesterov"]
    grads, moves = [], []
    for x, y in tensor_batches(32, batch_size=16):  # two steps: momentum and Nesterov show
        before = model.conv.weight.detach().clone()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model.conv.weight.grad.clone())
        opt.step()
        moves.append(before - model.conv.weight.detach())
    g1, g2 = grads
    buf = 0.95 * g1 + g2
    expected = orthogonalize((g2 + 0.95 * buf).reshape(8, -1)).view_as(g2)  # Nesterov, step 2
    assert torch.allclose(moves[1], 0.02 * expected, atol=1e-6)
    losses = []
    for x, y in tensor_batches(96, batch_size=16) * 3:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-6:]) < sum(losses[:6])  # it learns


@pytest.mark.parametrize("settings, steps, dtype", [
    ({"muon_ns_steps": 3}, 3, torch.float32),  # airbench94_muon's count
    ({"amp": "bf16"}, 5, torch.bfloat16),  # a run whose precision resolved to bf16
    ({"amp": "off"}, 5, torch.float32),
    ({"amp": "auto"}, 5, torch.float32),  # unresolved: fp32
])
def test_muon_newton_schulz_iterations_follow_ns_steps_and_the_runs_precision(settings, steps, dtype):
    """A filter's first update is exactly its gradient's orthogonalisation by ``muon_ns_steps``
    iterations, in bf16 in a bf16 run (as airbench94_muon), else in fp32; and these differ."""
    from cnnbench.training.muon import orthogonalize

    torch.manual_seed(0)
    model = TinyNet()
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=0.05, muon_lr=0.02, **settings))
    x, y = tensor_batches(16, batch_size=16)[0]
    before = model.conv.weight.detach().clone()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    g = model.conv.weight.grad.reshape(8, -1)
    opt.step()
    move = (before - model.conv.weight.detach()).reshape(8, -1)
    expected = orthogonalize(g + 0.95 * g, steps, dtype=dtype)  # Nesterov, fresh buffer: g + mu * g
    torch.testing.assert_close(move, 0.02 * expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(orthogonalize(g, 3), orthogonalize(g, 5), atol=1e-3)
    assert not torch.allclose(orthogonalize(g, dtype=torch.bfloat16), orthogonalize(g), atol=1e-4)


def test_muon_normalize_rescales_each_matrix_before_its_step():
    """--muon-normalize (airbench94_muon): before each step a Muon matrix is rescaled to a norm
    of sqrt(its output channels), then takes the step it takes without the option; the SGD
    parameters (the head's 2-D weight too) are not rescaled."""
    import copy

    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():
        model.conv.weight.mul_(3.0)  # far from the norm it is set to
        model.fc.weight.mul_(3.0)
    config = TrainConfig(optimizer="muon", lr=0.05, muon_lr=0.02, momentum=0.9,
                         muon_momentum=0.6, muon_normalize=True)
    twin = copy.deepcopy(model)
    opt, twin_opt = build_optimizer(model, config), build_optimizer(twin, config.replace(muon_normalize=False))
    for x, y in tensor_batches(32, batch_size=16):  # two steps: the momentum shows
        for m, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(x), y).backward()
        with torch.no_grad():  # the rescale, by hand: conv.weight is 8 filters
            twin.conv.weight.mul_(8 ** 0.5 / twin.conv.weight.norm())
        opt.step()
        twin_opt.step()
        for name, p in model.named_parameters():
            torch.testing.assert_close(p, dict(twin.named_parameters())[name], msg=name)
    assert model.conv.weight.norm().item() == pytest.approx(8 ** 0.5, rel=0.2)  # a step off the norm


def test_muon_resumes_from_a_state_saved_before_muon_normalize():
    """A Muon run's optimizer state saved before --muon-normalize and the bf16 iterations
    existed (groups without the keys) loads and steps as without them."""
    torch.manual_seed(0)
    model = TinyNet()
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=0.05))
    old = opt.state_dict()
    for group in old["param_groups"]:
        del group["normalize"], group["ns_bf16"]
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=0.05))
    opt.load_state_dict(old)
    (x, y), = tensor_batches(16, batch_size=16)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_muon_decoupled_weight_decay_is_relative_to_each_groups_own_rate():
    """--decouple-wd: every group shrinks its weights by weight_decay per step at its peak rate,
    the Muon groups (muon_lr) as the SGD ones (lr); the first group logged is an SGD one."""
    config = TrainConfig(optimizer="muon", lr=0.05, muon_lr=0.02, weight_decay=5e-4,
                         decouple_wd=True)
    opt = build_optimizer(TinyNet(), config)
    assert not opt.param_groups[0]["muon"] and opt.param_groups[0]["lr"] == 0.05
    for group in opt.param_groups:
        assert group["lr"] * group["weight_decay"] == pytest.approx(5e-4)


def test_muon_filters_take_only_decoupled_decay_never_coupled_l2():
    """--optimizer muon with weight decay (not decoupled): a conv filter with a zero gradient
    shrinks by exactly ``1 - muon_lr * weight_decay`` in one step. Coupled L2 on top (the SGD
    groups' rule) would push ``weight_decay * w`` through the orthogonalisation, a full-size
    step (~7e-3 here instead of ~1e-7)."""
    torch.manual_seed(0)
    model = TinyNet()
    config = TrainConfig(optimizer="muon", lr=0.05, muon_lr=0.02, weight_decay=5e-4)
    opt = build_optimizer(model, config)
    conv = model.conv.weight
    group = next(g for g in opt.param_groups if any(p is conv for p in g["params"]))
    assert group["muon"] and group["weight_decay"] == 5e-4
    before = conv.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(conv.detach(), before * (1 - 0.02 * 5e-4), atol=1e-9, rtol=0)
