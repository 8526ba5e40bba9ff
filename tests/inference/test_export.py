"""``cnnbench export``: ONNX and TorchScript files that compute what PyTorch computes, at any
batch size; checked on the test images before they are kept; bad inputs in one line."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch

from cnnbench.cli import main
from cnnbench.errors import UserError
from cnnbench.inference import load_trained_model
from cnnbench.inference.export import TOLERANCE, export_model


def _pytorch_logits(run, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    trained = load_trained_model(run)
    inputs = torch.cat(list(trained.inputs(images)))
    with torch.inference_mode():
        return inputs, trained.model(inputs)


def _report(capsys) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


def test_onnx_export_matches_pytorch_on_the_test_images_at_any_batch_size(digits_env, tmp_path, capsys):
    import onnx
    import onnxruntime

    out = tmp_path / "lenet5.onnx"
    assert main(["export", "--checkpoint", str(digits_env.lenet), "--format", "onnx",
                 "--out", str(out)]) == 0
    checked, wrote = _report(capsys)
    found = re.fullmatch(r"checked on 30 test images of mnist, batch sizes 30 and 1: largest logit "
                         r"difference to PyTorch (\S+) \(< 0.0001\)", checked)
    assert found and float(found.group(1)) < TOLERANCE, checked
    assert wrote == f"wrote {out} (onnx, dynamic batch size)"
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5.onnx"]  # one file, no temporaries

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    info = json.loads(meta["cnnbench"])
    assert info["classes"] == [str(d) for d in range(10)] and info["mean"] == [0.1307]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs, expected = _pytorch_logits(digits_env.lenet, digits_env.test_x[:, None])
    for start, stop in ((0, 7), (7, 10), (10, 11)):  # batch sizes it was not exported at
        got = session.run(None, {"images": inputs[start:stop].numpy()})[0]
        assert got.shape == (stop - start, 10)
        assert np.abs(got - expected[start:stop].numpy()).max() < TOLERANCE


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_export_matches_pytorch_at_any_batch_size(digits_env, tmp_path, capsys):
    out = tmp_path / "simple.pt"
    assert main(["export", "--checkpoint", str(digits_env.simple / "best.ckpt"), "--format",
                 "torchscript", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["real_images"] and result["images"] == 30 and result["max_abs_diff"] < TOLERANCE
    assert result["inputs"] == "30 test images of mnist"
    files = {"cnnbench.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["cnnbench.json"])["model"] == "simple_cnn"
    inputs, expected = _pytorch_logits(digits_env.simple, digits_env.test_x[:, None])
    for start, stop in ((0, 5), (5, 6), (6, 30)):
        got = loaded(inputs[start:stop])
        assert (got - expected[start:stop]).abs().max() < TOLERANCE


def test_without_the_dataset_random_images_stand_in_and_the_output_says_so(digits_files, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "no-cache"))
    out = tmp_path / "m.pt"
    assert main(["export", "--checkpoint", str(digits_files.lenet), "--format", "torchscript",
                 "--out", str(out)]) == 0
    checked = _report(capsys)[0]
    assert checked.startswith("checked on 64 RANDOM images, not test images: the mnist test "
                              "split could not be read (")
    assert out.exists()


def test_a_model_that_does_not_match_pytorch_is_not_written(digits_env, tmp_path, monkeypatch):
    import cnnbench.inference.export as export

    monkeypatch.setattr(export, "TOLERANCE", 0.0)  # nothing passes
    out = tmp_path / "m.onnx"
    with pytest.raises(UserError, match=r"differs from PyTorch by up to .* \(allowed: 0\) on 30 "
                                        r"test images of mnist; .*m.onnx was not written"):
        export_model(digits_env.lenet, "onnx", out)
    assert list(tmp_path.iterdir()) == []


def test_bad_exports_end_in_one_line_and_exit_status_2(digits_files, tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    ckpt = ["--checkpoint", str(digits_files.lenet)]
    with pytest.raises(SystemExit) as usage:  # a usage error: argparse's one line
        main(["export", *ckpt, "--format", "tflite", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert usage.value.code == 2 and len(err) == 1 and "invalid choice: 'tflite'" in err[0]
    cases = {
        "not a checkpoint": (["--checkpoint", str(tmp_path / "notes.ckpt"), "--format", "onnx",
                              "--out", str(tmp_path / "m.onnx")], "not a PyTorch weights file"),
        "no such folder": ([*ckpt, "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")],
                           "does not exist; create it"),
        "out is a folder": ([*ckpt, "--format", "onnx", "--out", str(tmp_path)], "is a directory"),
    }
    for case, (argv, words) in cases.items():
        assert main(["export", *argv]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error: " in err[0] and words in err[0], (case, err)
    with pytest.raises(UserError, match="unsupported export format 'tflite'; choose from onnx, torchscript"):
        export_model(digits_files.lenet, "tflite", tmp_path / "m")

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert main(["export", *ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnbench: error: ONNX export (cnnbench export --format onnx) needs onnxruntime, "
                   "which is not installed: pip install 'cnnbench[export]'"]
    assert list(tmp_path.iterdir()) == [tmp_path / "notes.ckpt"]
