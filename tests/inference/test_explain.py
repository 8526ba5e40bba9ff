"""cnnbench.inference.explain: `predict --explain` draws each answer's heat map; overlays are
PNGs."""

from __future__ import annotations

import pytest
import torch

from cnnbench.inference.explain import overlay
from cnnbench.models.registry import FAMILIES, list_models, model_info
from engine_fixtures import _tiny_folder_files, tiny_folder  # noqa: F401


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


@pytest.mark.slow(seconds=2)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_explains_and_is_corrupted(family, tmp_path, tiny_folder, capsys):
    """One model of each family, trained one step on the tiny folder (resized to 32 px), goes
    through `predict --explain` and `eval --corruptions` like any run."""
    from PIL import Image

    from cnnbench.cli import main
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run
    from cnnbench.training.corruptions import evaluate_corruptions

    name = next(m for m in list_models() if model_info(m).family == family)
    run = tmp_path / "run"
    train_run(resolve_config({"dataset": tiny_folder.dataset, "model": name, "resize": 32,
                              "epochs": 1, "limit_train": 16, "limit_eval": 8, "batch_size": 16,
                              "device": "cpu", "recipe": "none", "num_threads": 1}),
              out_dir=run, progress=False)
    gallery = torch.load(run / "misclassified.pt", weights_only=True)
    if len(gallery["images"]):  # the gallery's heat maps, at the registry's layer (or a child)
        assert gallery["cam_layer"].split(".")[0] == model_info(name).cam_layer
    image = tmp_path / "img.png"
    Image.fromarray(torch.randint(0, 255, (12, 12, 3), dtype=torch.uint8).numpy()).save(image)
    assert main(["predict", str(image), "--checkpoint", str(run), "--explain", str(tmp_path / "cam")]) == 0
    assert (tmp_path / "cam" / "img.gradcam.png").is_file()
    result = evaluate_corruptions(run, names=["gaussian_noise"], images=8)
    assert result["n"] == 8 and len(result["accuracy"]["gaussian_noise"]) == 5
