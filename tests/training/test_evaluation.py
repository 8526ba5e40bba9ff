"""cnnbench.training.evaluation: first the small helpers which runs reach only on other devices or
in several processes, then ``evaluate_checkpoint`` of a saved run (it reproduces the summary, in
the precision the run trained in, with the caller's overrides; changed data and weights that do
not fit are one line; one way to open a trained model)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training import evaluate_checkpoint, train_run
from cnnbench.training.evaluation import _cat, explain_gallery, to_device
from engine_fixtures import _tiny_folder_files, tiny_folder, train_tiny  # noqa: F401


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


def test_eval_of_weights_that_do_not_fit_names_the_file_and_the_model(tiny_folder):
    summary, out = train_tiny(tiny_folder, epochs=1, name="misfit")
    state = ckpt.load_checkpoint(out / "best.ckpt")
    key = next(k for k in state["model"] if k.endswith("weight"))
    state["model"][key] = torch.zeros(3, 3)  # no longer the model's shape
    ckpt.save_checkpoint(out / "best.ckpt", state)
    with pytest.raises(UserError) as info:
        evaluate_checkpoint(out)
    assert str(out / "best.ckpt") in str(info.value) and "lenet5" in str(info.value)


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
