"""WeightAverage: closed form, exact resume, exact swap."""

import io

import pytest
import torch
from torch import nn

from cnnbench.training.ema import WeightAverage
from cnnbench.errors import UserError


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.bn = nn.BatchNorm1d(3)


def _set(model, value):
    with torch.no_grad():
        model.w.fill_(value)
        model.bn.running_mean.fill_(2 * value)
    model.bn.num_batches_tracked += 1


@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("every", [1, 3])
def test_matches_closed_form(warmup, every):
    torch.manual_seed(0)
    d = 0.9
    model = Toy()
    values = torch.randn(13, dtype=torch.float64)
    _set(model, values[0].item())
    w0 = values[0].item()
    average = WeightAverage(model, decay=d, every=every, warmup=warmup)
    averaged = []  # w_k: weights at each averaging update
    for step, v in enumerate(values[1:].tolist(), start=1):
        _set(model, v)
        average.update(model)
        if step % every == 0:
            averaged.append(torch.tensor(model.w[0].item(), dtype=torch.float64))
    D = d ** every
    n = len(averaged)
    assert average.num_updates == n == 12 // every
    weighted = sum((1 - D) * D ** (n - k) * w for k, w in enumerate(averaged, start=1))
    expected = weighted / (1 - D ** n) if warmup else D ** n * w0 + weighted
    assert torch.allclose(average.averages["w"].double(), expected.expand(3), atol=1e-6)
    assert torch.allclose(average.averages["bn.running_mean"].double(), 2 * expected.expand(3), atol=1e-6)
    # integer buffers are copied at the last update, not averaged
    assert average.averages["bn.num_batches_tracked"].item() == n * every + 1


def _train_steps(model, average, opt, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        average.update(model)


def _net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))


def test_state_dict_round_trip_continues_bit_identically():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    average = WeightAverage(model, decay=0.95, every=2)
    _train_steps(model, average, opt, 5, seed=0)

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "avg": average.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    _train_steps(model, average, opt, 6, seed=1)

    resumed = _net()
    resumed.load_state_dict(ckpt["model"])
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    resumed_opt.load_state_dict(ckpt["opt"])
    resumed_average = WeightAverage(resumed, decay=0.95, every=2)
    resumed_average.load_state_dict(ckpt["avg"])
    _train_steps(resumed, resumed_average, resumed_opt, 6, seed=1)

    assert resumed_average.num_steps == average.num_steps == 11
    for name, t in average.averages.items():
        assert torch.equal(t, resumed_average.averages[name]), name
    assert all(isinstance(v, torch.Tensor) for v in average.state_dict().values())


def test_load_rejects_other_settings_or_model():
    model = _net()
    state = WeightAverage(model, decay=0.9).state_dict()
    with pytest.raises(UserError, match="decay"):
        WeightAverage(model, decay=0.99).load_state_dict(state)
    with pytest.raises(UserError, match="does not match"):
        WeightAverage(nn.Linear(4, 2), decay=0.9).load_state_dict(state)


def test_swapped_uses_average_and_restores_exactly():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    average = WeightAverage(model, decay=0.9)
    _train_steps(model, average, opt, 4, seed=0)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with average.swapped(model):
        for k, v in model.state_dict().items():
            assert torch.equal(v, average.averages[k])
        model.train()(torch.randn(8, 4))  # would move BN stats: must be undone too
    for k, v in model.state_dict().items():
        assert torch.equal(v, live[k]), k
    with pytest.raises(RuntimeError), average.swapped(model):
        raise RuntimeError("evaluation failed")
    for k, v in model.state_dict().items():
        assert torch.equal(v, live[k]), k


def test_copy_to():
    model = _net()
    average = WeightAverage(model, decay=0.5, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model)
    target = _net()
    average.copy_to(target)
    for k, v in target.state_dict().items():
        assert torch.equal(v, average.averages[k])


@pytest.mark.parametrize("kw", [{"decay": 1.0}, {"decay": -0.1}, {"decay": 0.9, "every": 0}])
def test_bad_arguments(kw):
    with pytest.raises(UserError):
        WeightAverage(nn.Linear(2, 2), **kw)
