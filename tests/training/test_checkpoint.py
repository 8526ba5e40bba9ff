"""Checkpoints: atomic write, weights_only load, one-line errors, RNG states."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from cnnbench.training import checkpoint as ckpt
from cnnbench.errors import UserError
from engine_fixtures import TinyNet


def _state(model):
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    return {"kind": "last", "config": {"model": "tiny", "lr": 0.1, "milestones": [1, 2]},
            "epoch": 3, "step": 30, "model": ckpt.model_state(model),
            "training": {"optimizer": opt.state_dict(), "rng": ckpt.capture_rng_state(),
                         "scaler": None}}


def test_round_trip_with_weights_only(tmp_path):
    model = TinyNet()
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", _state(model))
    loaded = ckpt.load_checkpoint(path)
    assert loaded["format"] == ckpt.FORMAT and loaded["epoch"] == 3
    assert loaded["config"]["milestones"] == [1, 2]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed away


def test_atomic_write_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", _state(TinyNet()))
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"config": {}, "model": {}, "epoch": 4})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_truncated_foreign_and_code_carrying_files(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", _state(TinyNet()))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for bad, match in ((truncated, "corrupt"), (garbage, "corrupt"),
                       (foreign, "not a cnnbench checkpoint"),
                       (tmp_path / "missing.ckpt", "does not exist"),
                       (tmp_path, "is a directory")):
        with pytest.raises(UserError, match=match) as info:
            ckpt.load_checkpoint(bad)
        assert "\n" not in str(info.value)


def test_a_run_file_given_as_checkpoint_is_named_for_what_it_is(tmp_path):
    """`eval --checkpoint run/config.yaml` (or summary.json, or an .onnx export) says what the
    file is and which one to give, not "corrupt ... (Unsupported operand 109)" (issue #30)."""
    ckpt.save_checkpoint(tmp_path / "best.ckpt", _state(TinyNet()))
    (tmp_path / "config.yaml").write_text("model: lenet5\n")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    for name, kind in (("config.yaml", "a YAML file"), ("summary.json", "a JSON file"),
                       ("model.onnx", "an ONNX export")):
        with pytest.raises(UserError) as info:
            ckpt.open_checkpoint(tmp_path / name)
        assert str(info.value).startswith(f"{tmp_path / name} is {kind}")
        assert f"not a checkpoint; give the run directory {tmp_path} or {tmp_path / 'best.ckpt'}" in str(info.value)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.yml").write_text("a: 1\n")
    with pytest.raises(UserError, match="give a run directory or its best.ckpt/last.ckpt$"):
        ckpt.open_checkpoint(elsewhere / "c.yml")
    weights = elsewhere / "weights.json"  # a real checkpoint under an odd name is still read
    weights.write_bytes((tmp_path / "best.ckpt").read_bytes())
    assert ckpt.open_checkpoint(weights)[0] == weights
    # its tensors where asked (a GPU run's on the CPU by default)
    _, state, _ = ckpt.open_checkpoint(weights, map_location="meta")
    assert {t.device.type for t in state["model"].values()} == {"meta"}


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that the file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_a_pickle_payload_never_runs(tmp_path, writer):
    """Guards against ``torch.load(..., weights_only=False)`` in the checkpoint reader: a
    checkpoint-shaped file whose ``model`` entry runs ``os.mkdir`` when unpickled must be
    refused with a message that says why, and the directory must never appear."""
    marker = tmp_path / "payload-ran"
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "config": {}, "epoch": 1,
             "model": _Payload(marker)}
    evil = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save(state, evil)
        match = r"pickled Python objects besides tensors \(\w+\.mkdir\), which could run code"
    else:  # not torch.save's format: refused before any object is built, with the reason
        evil.write_bytes(pickle.dumps(state))  # torch's unpickler gives after its own preamble
        match = r"corrupt, truncated or not a PyTorch weights file \(Unsupported operand \d+\)$"
    for read in (ckpt.load_checkpoint, ckpt.load_tensor_file):
        with pytest.raises(UserError, match=match) as info:
            read(evil)
        assert "\n" not in str(info.value)
    assert not marker.exists(), "unpickling the checkpoint ran the payload's code"


def test_a_checkpoint_with_an_unusable_config_names_the_file_once(tmp_path):
    for name, config, message in [
        ("typo", {"model": "lenet5", "modle": "x"},
         "checkpoint {file}'s config: unknown option 'modle'; did you mean 'model'?"),
        ("bad-value", {"model": "lenet5", "lr": "fast"},
         "checkpoint {file} has an unusable config: option 'lr' must be a number, got 'fast'")]:
        file = ckpt.save_checkpoint(tmp_path / f"{name}.ckpt", {"kind": "best", "config": config,
                                                                "epoch": 1, "model": {}})
        with pytest.raises(UserError) as info:
            ckpt.open_checkpoint(file)
        assert str(info.value) == message.format(file=file)


def test_rng_states_round_trip():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    random.random(), np.random.rand(), torch.rand(1), np.random.randn()  # noqa: B018
    state = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3).tolist(), np.random.randn())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ckpt.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(3).tolist(), np.random.randn()) == expected
    # and the state survives a weights_only save/load
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    ckpt.restore_rng_state(torch.load(buffer, weights_only=True))
    assert random.random() == expected[0]


class _Compiled(torch.nn.Module):
    """Stands in for what ``torch.compile`` returns: the real module as ``_orig_mod``."""

    def __init__(self, inner):
        super().__init__()
        self._orig_mod = inner


def test_model_state_is_a_detached_copy_with_plain_names():
    """Guards against a checkpoint that aliases the live weights (``copy=False``: later training
    steps would change an already-written best model) and against names prefixed by the
    ``torch.compile`` wrapper (``_orig_mod.conv.weight``)."""
    model = TinyNet()
    wrapped = _Compiled(model)
    assert ckpt.unwrap(wrapped) is model and ckpt.unwrap(model) is model
    state = ckpt.model_state(wrapped)
    assert set(state) == set(model.state_dict())  # no _orig_mod. prefix
    before = state["conv.weight"].clone()
    with torch.no_grad():
        model.conv.weight.add_(1.0)  # training goes on
    assert torch.equal(state["conv.weight"], before)
    assert not state["conv.weight"].requires_grad


def test_unreadable_file_errors_keep_only_the_first_line_of_the_cause(tmp_path, monkeypatch):
    """A loader error of many lines (or of none) still gives one line of at most ~160
    characters of the cause, or the exception's name."""
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"x")

    def failing(message):
        def load(*args, **kwargs):
            raise RuntimeError(message)
        return load

    monkeypatch.setattr(torch, "load", failing("first line " + "y" * 300 + "\nsecond line"))
    with pytest.raises(UserError) as info:
        ckpt.load_tensor_file(path)
    message = str(info.value)
    assert "\n" not in message and "second line" not in message
    assert "first line " + "y" * 149 + ")" in message  # the cause cut at 160 characters
    monkeypatch.setattr(torch, "load", failing(""))
    with pytest.raises(UserError, match=r"\(RuntimeError\)$"):
        ckpt.load_tensor_file(path)


@pytest.mark.parametrize("available, initialized", [(True, True), (True, False), (False, True)])
def test_the_gpus_generators_are_saved_and_restored_where_cuda_is_in_use(monkeypatch, available,
                                                                         initialized):
    """CUDA's generators (one state per GPU) are kept when CUDA is available and in use, and put
    back where the checkpoint has them and CUDA is available (faked here: CI has no GPU)."""
    from cnnbench.training.checkpoint import capture_rng_state, restore_rng_state

    gpu_states, restored = [torch.tensor([1, 2], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialized)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = capture_rng_state()
    assert state["cuda"] == (gpu_states if available and initialized else [])
    restore_rng_state(state)
    assert restored == ([gpu_states] if available and initialized else [])
    restore_rng_state({**state, "cuda": gpu_states})  # a GPU run's checkpoint
    assert restored[-1:] == ([gpu_states] if available else [])


def test_weights_that_do_not_fit_name_the_mismatch_in_one_line():
    from torch import nn

    from cnnbench.training.checkpoint import load_model_weights

    with pytest.raises(UserError) as info:
        load_model_weights(nn.Linear(2, 2), {"weight": torch.zeros(3, 3), "bias": torch.zeros(2)},
                           "x.ckpt", "lenet5")
    assert str(info.value).startswith("the weights in x.ckpt do not fit model lenet5 (size mismatch "
                                      "for weight: copying a param with shape torch.Size([3, 3])")


@pytest.mark.parametrize("content", [b"junk", b"", b"\x80", b"PK\x03\x04"])
def test_a_short_or_junk_file_is_one_line(tmp_path, content):
    """A few bytes of junk where a checkpoint is wanted (torch.load fails inside its legacy
    reader with struct.error on a 4-byte file) -> the one-line "corrupt" error."""
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(UserError, match="corrupt, truncated or not a PyTorch weights file") as info:
        ckpt.load_checkpoint(bad)
    assert "\n" not in str(info.value)
