"""``cnnbench predict``: image files of any kind through a trained model, as the evaluation sees
them; MNIST-style digits from photos; every bad input ends in one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbench.cli import main
from cnnbench.errors import UserError
from cnnbench.inference import load_trained_model
from cnnbench.inference.images import ImageInputError, mnist_digit, open_image, prepare_image
from cnnbench.inference.model import Preprocessing
from cnnbench.training.checkpoint import load_checkpoint, save_checkpoint
from inference_fixtures import draw_digit, png_header


def test_test_digits_saved_as_png_are_predicted_as_eval_predicts_them(digits_env, tmp_path, capsys):
    """The same pixels give the same answer through `predict` (PIL, the checkpoint's input
    record) and through the evaluation (the cached dataset, the run's loader)."""
    from cnnbench.config import TrainConfig
    from cnnbench.training import build_training
    from cnnbench.training.inputs import make_loader

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, pixels in enumerate(digits_env.test_x):
        Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")
    with Image.open(folder / "007.png") as saved:  # PNG is lossless: exactly the test pixels
        assert np.array_equal(np.asarray(saved), digits_env.test_x[7].numpy())

    assert main(["predict", "--checkpoint", str(digits_env.lenet), str(folder), "--json",
                 "--topk", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    records = result["predictions"]
    assert [r["file"] for r in records] == [str(folder / f"{i:03d}.png") for i in range(30)]
    assert all(r["notes"][0] == "a 28x28 image on a dark background, like MNIST's: used as is"
               for r in records)
    assert sum(r["unfamiliar"] for r in records) <= 3  # a few of its own test digits, at most
    predicted = [r["top"][0]["index"] for r in records]

    state = load_checkpoint(digits_env.lenet / "best.ckpt")
    training = build_training(TrainConfig.from_dict(state["config"]), load_init_weights=False)
    evaluated = training.evaluate_saved("test", state["model"], return_predictions=True)
    assert predicted == evaluated["predictions"].tolist()
    assert predicted == json.loads((digits_env.lenet / "test_predictions.json").read_text())["predictions"]
    assert evaluated["acc"] == np.mean(np.array(predicted) == digits_env.test_y.numpy())

    # and the probabilities themselves
    trained = load_trained_model(digits_env.lenet)
    with torch.inference_mode():
        x = next(iter(make_loader(training.config, training.data, "test", torch.device("cpu"))))[0]
        expected = trained.model(x).softmax(1)
    for i, record in enumerate(records):
        for top in record["top"]:
            assert top["prob"] == pytest.approx(expected[i, top["index"]].item(), abs=1e-6)
            assert top["class"] == str(top["index"])  # MNIST's class names


def _paper_photo(digit: int, size=(240, 200), at=(30, 20)) -> Image.Image:
    """A photo-like image: a dark seven-segment digit on uneven light paper, off centre."""
    w, h = size
    rng = np.random.default_rng(digit)
    paper = 200 + 30 * np.linspace(0, 1, w)[None, :] + rng.normal(0, 4, (h, w))
    ink = np.zeros((h, w))
    stroke = np.asarray(draw_digit(digit, 160, width=16), dtype=np.float64) / 255
    ink[at[1]:at[1] + 160, at[0]:at[0] + 160] = stroke
    photo = paper * (1 - ink) + 45 * ink
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).convert("RGB")


def test_a_photo_of_dark_ink_on_paper_is_inverted_and_centred_like_mnist(digits_files, tmp_path,
                                                                         capsys):
    trained = load_trained_model(digits_files.lenet)
    pixels, notes = trained.prepare(_paper_photo(4))
    assert pixels.shape == (1, 28, 28) and pixels.dtype == torch.uint8
    assert notes[0] == "RGB converted to greyscale" and notes[1].startswith("inverted")
    assert "centred by centre of mass in 28x28" in notes[2]
    digit = pixels[0].numpy().astype(float)
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == 20  # MNIST's 20 px box
    assert digit[0].sum() == digit[-1].sum() == 0  # black background: the paper is gone
    cy = (np.arange(28) @ digit.sum(1)) / digit.sum()
    cx = (np.arange(28) @ digit.sum(0)) / digit.sum()
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5

    for d in range(10):
        _paper_photo(d).save(tmp_path / f"photo-{d}.jpg", quality=90)
    assert main(["predict", "--checkpoint", str(digits_files.lenet), str(tmp_path), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["predictions"]
    right = [r["top"][0]["class"] == r["file"][-5] for r in records]
    assert sum(right) >= 9, records  # seven-segment photos: the model knows these digits

    assert main(["predict", "--checkpoint", str(digits_files.lenet), str(tmp_path / "photo-3.jpg")]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("lenet5 on mnist (") and "1x28x28 input, normalised with mean 0.1307" in text[0]
    assert text[1].startswith(f"{tmp_path / 'photo-3.jpg'}: 3 ")
    assert "inverted (dark ink on a light background" in text[2]

    plain, notes = trained.prepare(_paper_photo(3), digit_style=False)
    assert notes == ["RGB converted to greyscale", "resized from 240x200 to 28x28"]
    assert plain.float().mean() > 150  # still light paper: nothing inverted


def test_mnist_digit_on_a_blank_page_says_it_found_no_ink():
    digit, notes = mnist_digit(np.full((50, 40), 230, dtype=np.uint8))
    assert digit.shape == (28, 28) and digit.max() == 0
    assert notes[-1].startswith("no ink found")


def _rgba_drawing(size=(64, 48)) -> Image.Image:
    """A black stroke on a transparent background (as drawing programs save it)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (20, 8, 28, 40))
    return image


@pytest.mark.parametrize("kind", ["L", "RGB", "RGBA", "P", "I;16", "1", "CMYK-jpeg"])
def test_images_of_every_mode_and_size_become_the_models_input(kind, digits_files, tmp_path):
    rng = np.random.default_rng(0)
    if kind == "RGBA":
        image = _rgba_drawing()
    elif kind == "I;16":
        image = Image.fromarray((rng.integers(0, 65535, (40, 30))).astype(np.uint16))
    elif kind == "CMYK-jpeg":
        image = Image.new("CMYK", (33, 50), (0, 0, 0, 40))
    else:
        image = Image.fromarray(rng.integers(0, 256, (45, 37, 3), dtype=np.uint8)).convert(kind)
    path = tmp_path / ("image.jpg" if kind == "CMYK-jpeg" else "image.png")
    image.save(path)
    trained = load_trained_model(digits_files.lenet)
    pixels, notes = trained.prepare(open_image(path))
    assert pixels.shape == (1, 28, 28) and pixels.dtype == torch.uint8
    assert trained.predict(pixels[None]).sum().item() == pytest.approx(1.0, abs=1e-5)
    if kind == "RGBA":
        assert notes[0] == "transparent pixels put on white" and "inverted" in notes[2]

    cifar = Preprocessing("cifar10", 3, (32, 32), (32, 32), (0.5,) * 3, (0.25,) * 3, tuple("abcdefghij"))
    rgb, notes = prepare_image(open_image(path), cifar)
    assert rgb.shape == (3, 32, 32) and rgb.dtype == torch.uint8
    assert notes[-1].startswith("resized from ") and not any("inverted" in n for n in notes)
    if kind == "RGBA":  # the transparent pixels are white, the stroke black
        assert rgb[:, 0, 0].tolist() == [255, 255, 255] and rgb[:, 16, 12].tolist() == [0, 0, 0]


def test_fashion_mnist_images_are_inverted_on_light_backgrounds_but_not_centred():
    fashion = Preprocessing("fashion_mnist", 1, (28, 28), (28, 28), (0.286,), (0.353,),
                            tuple("abcdefghij"))
    light = Image.new("L", (56, 56), 240)
    light.paste(30, (10, 10, 30, 50))
    pixels, notes = prepare_image(light, fashion)
    assert notes == ["inverted (light background; Fashion-MNIST items are light on black)",
                     "resized from 56x56 to 28x28"]
    assert pixels[0, 0, 0] == 15 and pixels[0, 15, 10] == 225
    dark, notes = prepare_image(Image.new("L", (28, 28), 10), fashion)
    assert notes == [] and dark.unique().tolist() == [10]


def test_a_checkpoint_without_an_input_record_falls_back_to_its_config(digits_files, tmp_path):
    state = load_checkpoint(digits_files.lenet / "best.ckpt")
    assert state["input"] == {"dataset": "mnist", "channels": 1, "image_size": [28, 28],
                              "input_size": [28, 28], "mean": [0.1307], "std": [0.3081],
                              "classes": [str(d) for d in range(10)]}
    del state["input"]
    save_checkpoint(tmp_path / "old.ckpt", state)
    old = load_trained_model(tmp_path / "old.ckpt")
    new = load_trained_model(digits_files.lenet)
    assert old.preprocessing == new.preprocessing and old.name == "old.ckpt"
    assert new.name == "lenet5" and new.test_acc is not None


def _bad_inputs(tmp_path, lenet):
    """(argv, words the one-line error must contain) for each bad input."""
    good = tmp_path / "good.png"
    Image.new("L", (28, 28)).save(good)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:4000])
    png_header(tmp_path / "huge.png", 30000, 30000)  # over PIL's own limit
    png_header(tmp_path / "large.png", 9000, 8000)  # under PIL's, over cnnbench's
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "readme.txt").write_text("nothing")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    state = load_checkpoint(lenet / "best.ckpt")
    state["config"]["model"] = "simple_cnn"  # names another model than its weights are for
    save_checkpoint(tmp_path / "mismatch.ckpt", state)
    ckpt = ["--checkpoint", str(lenet)]
    return {
        "missing image": ([*ckpt, str(tmp_path / "nowhere.png")], "does not exist"),
        "empty image": ([*ckpt, str(tmp_path / "empty.png")], "is empty (0 bytes)"),
        "not an image": ([*ckpt, str(tmp_path / "text.png")], "is not an image PIL can read"),
        "corrupt image": ([*ckpt, str(tmp_path / "cut.png")], "is corrupt or truncated"),
        "huge image": ([*ckpt, str(tmp_path / "huge.png")], "is too large (900,000,000 pixels)"),
        "large image": ([*ckpt, str(tmp_path / "large.png")], "is too large (9000x8000 pixels)"),
        "folder without images": ([*ckpt, str(tmp_path / "no-images")], "holds no image files"),
        "missing checkpoint": (["--checkpoint", str(tmp_path / "none.ckpt"), str(good)], "does not exist"),
        "run dir without checkpoint": (["--checkpoint", str(tmp_path / "no-images"), str(good)],
                                       "holds no checkpoint"),
        "not a checkpoint": (["--checkpoint", str(tmp_path / "notes.ckpt"), str(good)],
                             "not a PyTorch weights file"),
        "foreign weights file": (["--checkpoint", str(tmp_path / "plain.pt"), str(good)],
                                 "is not a cnnbench checkpoint"),
        "weights that do not fit": (["--checkpoint", str(tmp_path / "mismatch.ckpt"), str(good)],
                                    "do not fit model simple_cnn"),
        "topk 0": ([*ckpt, str(good), "--topk", "0"], "--topk must be >= 1"),
    }


def test_every_bad_input_ends_in_one_line_and_exit_status_2(digits_files, tmp_path, capsys):
    messages = []
    for case, (argv, words) in _bad_inputs(tmp_path, digits_files.lenet).items():
        assert main(["predict", *argv]) == 2, case
        captured = capsys.readouterr()
        assert captured.out == "", case
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cnnbench: error: "), (case, captured.err)
        assert words in lines[0], (case, lines[0])
        messages.append(f"{case}: {lines[0]}")
    print("\n".join(messages))


def test_image_errors_carry_the_servers_status(tmp_path):
    statuses = {}
    for name, data in {"empty": b"", "text": b"hello", "png-cut": None}.items():
        if data is None:
            image = tmp_path / "x.png"
            Image.fromarray(np.random.default_rng(1).integers(0, 256, (100, 100), dtype=np.uint8)).save(image)
            data = image.read_bytes()[:1000]
        with pytest.raises(ImageInputError) as exc:
            open_image(data, "upload")
        statuses[name] = exc.value.status
    png_header(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageInputError) as exc:
        open_image((tmp_path / "huge.png").read_bytes(), max_pixels=10_000_000)
    statuses["huge"] = exc.value.status
    assert statuses == {"empty": 400, "text": 415, "png-cut": 400, "huge": 413}
    assert isinstance(exc.value, UserError)


def test_a_28x28_dark_digit_on_white_is_inverted_not_taken_as_mnist():
    """The 28x28 shortcut is only for MNIST-like images (light ink on black): a 28x28 dark
    stroke on white paper goes through the dark-ink path (inverted, black background)."""
    mnist = Preprocessing("mnist", 1, (28, 28), (28, 28), (0.1307,), (0.3081,), tuple("0123456789"))
    paper = Image.new("L", (28, 28), 245)
    paper.paste(20, (12, 4, 16, 24))
    pixels, notes = prepare_image(paper, mnist)
    assert notes[0].startswith("inverted (dark ink on a light background")
    assert pixels[0, 0, 0] == 0 and pixels[0].float().mean() < 60
    mnist_like = Image.new("L", (28, 28), 0)
    mnist_like.paste(230, (12, 4, 16, 24))
    same, notes = prepare_image(mnist_like, mnist)
    assert notes == ["a 28x28 image on a dark background, like MNIST's: used as is"]
    assert torch.equal(same[0], torch.from_numpy(np.array(mnist_like)))


def test_mnist_digit_pixels_are_pinned():
    """The digit pipeline written out for shapes whose answer is known exactly: a dark 5x10
    bar on paper is inverted, cropped to the ink (no more, no less), scaled to 10x20 and put
    with its centre of mass at (13.5, 13.5): rows 4-23, columns 9-18 at 255, the rest 0. A
    digit whose mass sits low is pushed up to the top edge, not past it. The edges of the
    thresholds: a median of exactly 127 is not inverted; ink of exactly 32 over the paper is
    ink, not a blank page."""
    paper = np.full((40, 40), 255, dtype=np.uint8)
    paper[12:22, 20:25] = 0
    digit, notes = mnist_digit(paper)
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[4:24, 9:19] = 255
    assert np.array_equal(digit, expected), np.argwhere(digit != expected)[:5]
    assert notes[0] == "inverted (dark ink on a light background; MNIST digits are light on black)"
    assert "cropped to the ink (5x10 px), scaled to 10x20" in notes[1]

    low = np.zeros((40, 40), dtype=np.uint8)
    low[5:25, 10:12] = 255          # a thin stem, 20 px tall
    low[22:25, 10:30] = 255         # and a heavy foot: the mass sits low
    digit, _ = mnist_digit(low)
    rows = np.nonzero(digit.sum(1))[0]
    assert rows.min() == 0 and rows.max() == 19  # clipped at the top edge, 20 px tall

    median_127 = np.full((30, 30), 127, dtype=np.uint8)
    median_127[10:20, 14:16] = 255
    _, notes = mnist_digit(median_127)
    assert not notes[0].startswith("inverted")
    median_128 = np.full((30, 30), 128, dtype=np.uint8)
    median_128[10:20, 14:16] = 0
    _, notes = mnist_digit(median_128)
    assert notes[0].startswith("inverted")
    hair = np.zeros((30, 30), dtype=np.uint8)
    hair[5:25, 14] = 255  # one pixel wide, 20 tall: stays one pixel wide
    digit, notes = mnist_digit(hair)
    assert "(1x20 px), scaled to 1x20" in notes[-1] and np.count_nonzero(digit.sum(0)) == 1
    faint = np.zeros((30, 30), dtype=np.uint8)
    faint[10:20, 14:16] = 32
    _, notes = mnist_digit(faint)
    assert notes[-1].startswith("cropped to the ink")


def test_a_bad_file_in_a_folder_is_listed_and_the_others_classified(digits_env, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    draw_digit(3, 28).save(folder / "a-three.png")
    (folder / "b-broken.png").write_bytes(b"\x89PNG not really")
    (folder / "c-empty.jpg").write_bytes(b"")
    assert main(["predict", "--checkpoint", str(digits_env.lenet), str(folder)]) == 1
    captured = capsys.readouterr()
    assert f"{folder / 'a-three.png'}: 3 " in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 3 and err[-1] == "cnnbench: 2 of 3 images could not be read (listed above)"
    assert "b-broken.png" in err[0] and "c-empty.jpg is empty" in err[1]
    assert main(["predict", "--checkpoint", str(digits_env.lenet), str(folder), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in result["predictions"]] == [str(folder / "a-three.png")]
    assert [f["file"] for f in result["failed"]] == [str(folder / "b-broken.png"), str(folder / "c-empty.jpg")]


def test_an_image_unlike_the_training_data_is_marked_unfamiliar(digits_env, tmp_path, capsys):
    """Judged by the model's top probability against its held-out images (the 1st percentile
    of its validation split): a digit like its training digits is familiar, a colour photo
    that is no digit is not. (An input the model is confidently wrong about, as ReLU networks
    can be far from their data, passes: this flags only what the model is unsure of.)"""
    from cnnbench.inference.predict import confidence_reference, predict_files

    reference = confidence_reference(load_trained_model(digits_env.lenet))
    assert reference["split"] == "validation" and reference["images"] == 30  # 10% of 300
    assert 0 < reference["threshold"] < 1
    draw_digit(7, 28, np.random.default_rng(5)).save(tmp_path / "seven.png")
    rng = np.random.default_rng(0)
    car = (rng.random((64, 96, 3)) * 255).astype(np.uint8)  # a colourful scene, no digit in it
    car[20:44, 10:86] = (200, 30, 30)
    Image.fromarray(car).save(tmp_path / "car.png")
    result = predict_files(digits_env.lenet, [tmp_path / "seven.png", tmp_path / "car.png"])
    verdict = {Path(p["file"]).name: p["unfamiliar"] for p in result["predictions"]}
    assert verdict == {"seven.png": False, "car.png": True}, result["predictions"]
    assert main(["predict", "--checkpoint", str(digits_env.lenet), str(tmp_path / "car.png")]) == 0
    out = capsys.readouterr().out
    assert "[unfamiliar]" in out and "unlike the images it was trained on" in out


def test_without_its_dataset_a_prediction_has_no_reference(digits_files, tmp_path, monkeypatch):
    from cnnbench.inference.predict import predict_files

    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    draw_digit(2, 28).save(tmp_path / "two.png")
    result = predict_files(digits_files.lenet, [tmp_path / "two.png"])
    assert result["reference"] is None and result["predictions"][0]["unfamiliar"] is None


def test_flatten_puts_transparency_on_white_and_scales_16_bit_and_float_exactly():
    """Every branch of images._flatten, to the pixel: alpha composited on white (and said so
    only when some pixel is transparent), a palette with a transparent index, 16-bit values
    over 255 scaled by 255/65535, small integer and float values taken as 8-bit, clipped."""
    from cnnbench.inference.images import _flatten

    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [200, 100, 0, 128]]], dtype=np.uint8)
    notes = []
    out = np.asarray(_flatten(Image.fromarray(rgba, "RGBA"), notes))
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [227, 177, 127]  # half of (200, 100, 0) over white
    assert notes == ["transparent pixels put on white"]
    opaque_notes = []
    assert np.asarray(_flatten(Image.fromarray(rgba[:, :1], "RGBA"), opaque_notes)).tolist() == [[[10, 20, 30]]]
    assert opaque_notes == []
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(_flatten(la, [])).tolist() == [[[255, 255, 255], [50, 50, 50]]]

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 90, 90, 90] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(_flatten(palette, [])).tolist() == [[[255, 255, 255], [90, 90, 90]]]
    plain = Image.new("P", (1, 1))  # no transparency: left to the caller
    assert _flatten(plain, []) is plain

    for mode in ("RGBa", "PA"):  # the other alpha modes PIL converts (La: PIL cannot convert it)
        assert _flatten(Image.fromarray(rgba, "RGBA").convert(mode), []).mode == "RGB", mode
    wide = Image.fromarray(np.array([[0, 257, 65535, 32768, 51400, 65407]], dtype=np.uint16))
    flat = _flatten(wide, [])  # mode I;16: x 255/65535 (65407 -> 254.502, so 255)
    assert flat.mode == "L" and np.asarray(flat).tolist() == [[0, 1, 255, 128, 200, 255]]
    just_over = Image.fromarray(np.array([[0, 256]], dtype=np.uint16))  # 256 is 16-bit already
    assert np.asarray(_flatten(just_over, [])).tolist() == [[0, 1]]
    huge = Image.fromarray(np.array([[70000.0, 65535.0]], dtype=np.float32))  # past 16 bits
    assert np.asarray(_flatten(huge, [])).tolist() == [[255, 255]]
    small = Image.fromarray(np.array([[0, 7, 255]], dtype=np.int32))  # mode I, 8-bit values
    assert np.asarray(_flatten(small, [])).tolist() == [[0, 7, 255]]
    floats = Image.fromarray(np.array([[-3.0, 12.4, 255.0]], dtype=np.float32))  # mode F
    assert np.asarray(_flatten(floats, [])).tolist() == [[0, 12, 255]]
    rgb = Image.new("RGB", (1, 1))
    assert _flatten(rgb, []) is rgb


def test_open_image_limits_are_exact_and_name_the_source(tmp_path, monkeypatch):
    """The pixel and byte limits take an image exactly at the limit and refuse one more; bytes
    are named "the upload"; a zero-width image and a 404 are told apart."""
    import io as io_module

    from cnnbench.inference import images

    png = tmp_path / "six.png"
    Image.new("L", (3, 2), 9).save(png)
    assert open_image(png, max_pixels=6).size == (3, 2)
    with pytest.raises(ImageInputError, match=r"six.png is too large \(3x2 pixels\)"):
        open_image(png, max_pixels=5)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", png.stat().st_size)
    assert open_image(png).size == (3, 2)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", png.stat().st_size - 1)
    with pytest.raises(ImageInputError) as info:
        open_image(png)
    assert info.value.status == 413
    buffer = io_module.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    with pytest.raises(ImageInputError, match=r"^the upload is too large \(4x4 pixels\)"):
        open_image(buffer.getvalue(), max_pixels=15)
    with pytest.raises(ImageInputError, match=r"^the upload is empty"):
        open_image(b"")
    with pytest.raises(ImageInputError) as missing:
        open_image(tmp_path / "nothing.png")
    assert missing.value.status == 404 and "does not exist" in str(missing.value)


def test_a_one_pixel_wide_image_opens_and_a_truncated_one_says_pils_reason(tmp_path):
    thin = tmp_path / "thin.png"
    Image.new("L", (1, 5), 200).save(thin)
    assert open_image(thin).size == (1, 5)
    Image.new("L", (5, 1), 200).save(thin)
    assert open_image(thin).size == (5, 1)
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:400])
    try:
        with Image.open(cut) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - whatever PIL says is the reason shown
        reason = str(exc).strip().splitlines()[0][:120]
    with pytest.raises(ImageInputError) as info:
        open_image(cut)
    assert str(info.value) == (f"{cut} is corrupt or truncated ({reason}); give a complete "
                               f"image file") and reason not in ("", "None")

