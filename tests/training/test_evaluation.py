"""cnnbench.training.evaluation's small helpers, which runs reach only on other devices or in
several processes."""

from __future__ import annotations

import pickle

import pytest
import torch

from cnnbench.training.evaluation import _cat, explain_gallery, to_device


def test_a_batch_moves_to_another_device_and_stays_where_it_is():
    x, y = torch.zeros(2, 3, 4, 4), torch.tensor([1, 2])
    moved = to_device(x, y, torch.device("meta"), channels_last=False)  # another device
    assert [t.device.type for t in moved] == ["meta", "meta"]
    same = to_device(x, y, torch.device("cpu"), channels_last=False)
    assert same[0] is x and same[1] is y  # already there: no copy
    fast = to_device(x, y, torch.device("cpu"), channels_last=True)[0]
    assert fast.is_contiguous(memory_format=torch.channels_last) and torch.equal(fast, x)
    flat = torch.zeros(2, 5)  # not an image batch: left as it is
    assert to_device(flat, y, torch.device("cpu"), channels_last=True)[0] is flat


def test_a_process_without_test_images_gathers_an_empty_integer_tensor():
    """In a distributed evaluation a process can get no test images (more processes than
    batches): its predictions are an empty int64 tensor, which the gather accepts."""
    empty = _cat([])
    assert empty.shape == (0,) and empty.dtype == torch.int64
    assert _cat([torch.tensor([1]), torch.tensor([2, 3])]).tolist() == [1, 2, 3]


class Payload:
    """Anything but tensors and plain containers: what a tampered file could hold."""


def test_a_gallery_file_holding_more_than_tensors_is_refused(tmp_path):
    torch.save({"index": torch.tensor([0]), "pred": torch.tensor([1]), "extra": Payload()},
               tmp_path / "misclassified.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        explain_gallery(tmp_path)  # torch.load(weights_only=True): no code runs from the file


def test_eval_and_explain_open_the_model_with_the_options_given(tmp_path, monkeypatch):
    """The data folder, device, batch size, TTA and changed-data switch a caller gives reach the
    model's opening (CI has one device and finds its data anyway: here they are only passed)."""
    from cnnbench.training import evaluation

    class Opened(Exception):
        pass

    asked = []

    def opening(path, **options):
        asked.append((path, options))
        raise Opened

    monkeypatch.setattr(evaluation, "open_for_evaluation", opening)
    with pytest.raises(Opened):
        evaluation.evaluate_checkpoint(tmp_path / "x.ckpt", data_dir="/data", device="cuda:1",
                                       batch_size=7, tta="mirror", allow_changed_data=True)
    assert asked[-1] == (tmp_path / "x.ckpt", {"data_dir": "/data", "device": "cuda:1", "batch_size": 7,
                                               "tta": "mirror", "allow_changed_data": True})
    torch.save({"index": torch.tensor([3]), "pred": torch.tensor([1])}, tmp_path / "misclassified.pt")
    with pytest.raises(Opened):
        explain_gallery(tmp_path, data_dir="/data", device="cuda:1")
    assert asked[-1] == (tmp_path / "best.ckpt", {"data_dir": "/data", "device": "cuda:1"})


def test_a_saved_model_is_built_on_the_device_and_in_the_memory_format_asked():
    from cnnbench.config import TrainConfig
    from cnnbench.data.specs import registered_spec
    from cnnbench.models import create_model_for
    from cnnbench.training.evaluation import saved_model

    config, spec = TrainConfig(model="lenet5", dataset="mnist"), registered_spec("mnist")
    weights = create_model_for(config, spec, (28, 28)).state_dict()
    state = torch.random.get_rng_state()
    on_meta = saved_model(config, spec, (28, 28), weights, "x.ckpt", torch.device("meta"))
    assert torch.equal(torch.random.get_rng_state(), state)  # building drew from a forked stream
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    fast = saved_model(config.replace(channels_last=True), spec, (28, 28), weights, "x.ckpt",
                       torch.device("cpu"))
    assert fast.features.c3.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast.features.c1.weight, weights["features.c1.weight"])


def test_a_tensor_file_loads_where_asked(tmp_path):
    from cnnbench.training.checkpoint import load_tensor_file

    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")
    assert load_tensor_file(tmp_path / "t.pt", map_location="meta")["w"].device.type == "meta"
    assert load_tensor_file(tmp_path / "t.pt")["w"].device.type == "cpu"  # by default


def test_the_weights_owner_is_found_inside_distributed_and_compiled_wrappers():
    from torch import nn

    from cnnbench.training.checkpoint import unwrap

    inner = nn.Linear(2, 2)
    ddp = nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel)
    nn.Module.__init__(ddp)  # a wrapper without a process group: only its shape matters here
    ddp.module = inner
    compiled = nn.Module()
    compiled._orig_mod = ddp  # as torch.compile wraps
    assert unwrap(compiled) is inner and unwrap(ddp) is inner and unwrap(inner) is inner
