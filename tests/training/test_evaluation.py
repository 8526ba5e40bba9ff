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


def test_a_saved_model_is_evaluated_with_its_runs_settings(monkeypatch):
    """eval, the report and predict evaluate a saved model on its device, in its run's precision,
    memory format and TTA (CI has one device: here they are only passed on)."""
    from types import SimpleNamespace

    from cnnbench.config import TrainConfig
    from cnnbench.devices import resolve_amp
    from cnnbench.training import evaluation, inputs

    calls = []
    monkeypatch.setattr(inputs, "make_loader", lambda config, data, split, device: (split, device))
    monkeypatch.setattr(evaluation, "evaluate", lambda model, loader, **kw: calls.append((model, loader, kw)))
    config = TrainConfig(model="lenet5", dataset="mnist", channels_last=True, amp="auto", tta="mirror")
    device, model = torch.device("cpu"), object()
    saved = evaluation.SavedModel("x.ckpt", {}, config, device, SimpleNamespace(spec=SimpleNamespace(num_classes=7)), model)
    saved.evaluate("val", bins=5)
    assert calls == [(model, ("val", device), {"num_classes": 7, "device": device, "amp": resolve_amp("auto", device),
                                               "channels_last": True, "tta": "mirror", "bins": 5})]


def test_a_checkpoint_opened_for_evaluation_builds_its_model_on_the_device_asked(monkeypatch):
    from types import SimpleNamespace

    from cnnbench.config import TrainConfig
    from cnnbench.training import checkpoint, evaluation, inputs

    config = TrainConfig(model="lenet5", dataset="mnist")
    data = SimpleNamespace(spec="spec", input_size=(28, 28), fingerprint=lambda: "same")
    monkeypatch.setattr(checkpoint, "open_checkpoint", lambda path: (path, {"model": "weights"}, config))
    monkeypatch.setattr(inputs, "prepare_data", lambda c: data)
    monkeypatch.setattr(inputs, "check_same_data", lambda *a, **kw: None)
    built = []
    monkeypatch.setattr(evaluation, "saved_model", lambda *args: built.append(args) or "model")
    saved = evaluation.open_for_evaluation("run/best.ckpt", device="cpu", tta="mirror")
    assert built == [(saved.config, "spec", (28, 28), "weights", "run/best.ckpt", torch.device("cpu"))]
    assert saved.device == torch.device("cpu") and saved.model == "model" and saved.config.tta == "mirror"


def test_gallery_heat_scales_the_maps_bilinearly_to_the_stored_images(monkeypatch):
    """The heat maps: Grad-CAM's (or the saliency's, for a network without a map layer: no layer
    name) scaled to the stored images' size as torchvision scales (corners not aligned), as
    uint8; the classes asked are sent to the model's device."""
    from types import SimpleNamespace

    from cnnbench.config import TrainConfig
    from cnnbench.models import cam
    from cnnbench.training import evaluation, inputs

    maps = torch.tensor([[[0.0, 1.0], [0.25, 0.5]]])
    asked = []
    monkeypatch.setattr(inputs, "make_loader", lambda config, data, split, device, rows: [(torch.zeros(1, 1, 4, 6), None)])
    monkeypatch.setattr(cam, "cam_layer", lambda model, x, named: None)
    monkeypatch.setattr(cam, "grad_cam", lambda model, x, target, layer: asked.append(target.device)
                        or {"maps": maps, "layer": layer, "method": "saliency"})
    data = SimpleNamespace(test=(torch.zeros(1, 1, 4, 6), torch.zeros(1)))
    heat = evaluation.gallery_heat(None, TrainConfig(model="lenet5", dataset="mnist"), data,
                                   torch.device("meta"), torch.tensor([0]), torch.tensor([1]))
    expected = torch.nn.functional.interpolate(maps[:, None], size=(4, 6), mode="bilinear")[:, 0]
    assert torch.equal(heat["heat"], (expected * 255).round().to(torch.uint8))
    assert heat["heat"][0, 0].tolist() == [0, 0, 85, 170, 255, 255]  # edge pixels repeated
    assert (heat["cam_layer"], heat["cam_method"]) == ("", "saliency")
    assert asked == [torch.device("meta")]
