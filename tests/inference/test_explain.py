"""cnnbench.inference.explain: `predict --explain` draws each answer's heat map; overlays are
PNGs."""

from __future__ import annotations

import torch

from cnnbench.inference.explain import overlay


def test_overlay_writes_a_png(tmp_path):
    path = overlay(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.rand(7, 7), tmp_path / "a" / "x.png", "7")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_explain_writes_one_overlay_per_image(tmp_path, capsys):
    from PIL import Image

    from cnnbench.cli import main
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run
    from engine_fixtures import write_folder

    folder = write_folder(tmp_path / "bars", n_train=64, n_test=16)
    run = tmp_path / "run"
    train_run(resolve_config({"dataset": f"imagefolder:{folder}", "epochs": 1, "device": "cpu",
                              "recipe": "none", "batch_size": 16}), out_dir=run, progress=False)
    images = tmp_path / "in"
    images.mkdir()
    for i, png in enumerate(sorted((folder / "test").rglob("*.png"))[:2]):
        Image.open(png).save(images / f"img{i}.png")
    assert main(["predict", str(images), "--checkpoint", str(run), "--explain", str(tmp_path / "cam")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "->" in line]
    assert len(lines) == 2 and all(".gradcam.png" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["img0.gradcam.png", "img1.gradcam.png"]
