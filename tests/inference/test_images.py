"""cnnbench.inference.images, the parts the mutation run found unguarded: several inputs at
once, what each refusal says (and its HTTP status), PIL's decompression-bomb warning, the MNIST
centring at the frame's edges, and the notes of a colour model's input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnbench.inference import images
from cnnbench.inference.images import ImageInputError, expand_inputs, mnist_digit, open_image, prepare_image
from cnnbench.inference.model import Preprocessing
from inference_fixtures import png_header


def test_files_and_folders_are_all_taken_in_the_order_given(tmp_path):
    one = tmp_path / "one.png"
    Image.new("L", (4, 4)).save(one)
    for folder, names in (("a", ["x.png", "y.jpg"]), ("b", ["z.png"])):
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (4, 4)).save(tmp_path / folder / name)
    (tmp_path / "a" / "notes.txt").write_text("not an image")  # a folder's other files: left out
    (tmp_path / "b" / "sub.png").mkdir()  # a folder named like an image: not a file
    got = expand_inputs([one, tmp_path / "a", tmp_path / "b"])
    assert [p.name for p in got] == ["one.png", "x.png", "y.jpg", "z.png"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ImageInputError, match="folder .*empty holds no image files"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(ImageInputError) as missing:
        expand_inputs([one, tmp_path / "gone.png"])
    assert missing.value.status == 404 and "gone.png does not exist" in str(missing.value)


def test_a_folder_given_as_an_image_is_not_a_file(tmp_path):
    with pytest.raises(ImageInputError) as err:
        open_image(tmp_path)
    assert str(err.value) == f"{tmp_path} is not a file" and err.value.status == 404


def test_too_large_files_and_images_say_their_size_and_the_limit(tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    # megabytes rounded as printed: 3.5 MB -> 4, a limit of 1.5 MB -> 2
    for size, limit, said in ((3_000_000, 2_000_000, "3 MB\\); the limit is 2 MB"),
                              (3_500_000, 1_500_000, "4 MB\\); the limit is 2 MB")):
        big.write_bytes(b"\0" * size)
        monkeypatch.setattr(images, "MAX_FILE_BYTES", limit)
        with pytest.raises(ImageInputError, match=rf"big.bin is too large \({said}$"):
            open_image(big)
    monkeypatch.undo()
    # 10000 x 10000: above PIL's own limit (89 million), so it only warns; the warning is an error
    warned = tmp_path / "warned.png"
    png_header(warned, 10_000, 10_000)
    with pytest.raises(ImageInputError) as err:
        open_image(warned, max_pixels=10_000_000)
    assert str(err.value).startswith(f"{warned} is too large (100,000,000 pixels); the limit is "
                                     f"10 million pixels")
    assert err.value.status == 413
    # a PIL that does not say the size it saw: the message goes without it

    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("decompression bomb")

    monkeypatch.setattr(images.Image, "open", bomb)
    with pytest.raises(ImageInputError, match=r"warned.png is too large; the limit is 10 million"):
        open_image(warned, max_pixels=10_000_000)


def test_only_the_pixel_limit_warning_refuses_an_image(tmp_path, monkeypatch):
    """Other warnings PIL gives while opening a file (an odd chunk, a metadata quirk) pass on
    as warnings: the image is still used."""
    import warnings

    Image.new("L", (3, 2), 7).save(tmp_path / "odd.png")
    real_open = Image.open

    def warning_open(*args, **kwargs):
        warnings.warn("a quirk of this file", UserWarning)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(images.Image, "open", warning_open)
    with pytest.warns(UserWarning, match="a quirk of this file"):
        image = open_image(tmp_path / "odd.png")
    assert image.size == (3, 2) and image.getpixel((0, 0)) == 7


def _ink(rows: slice, cols: slice) -> np.ndarray:
    """A 60 x 60 page, white, with dark ink where (rows, cols) say."""
    page = np.full((60, 60), 250, dtype=np.uint8)
    page[rows, cols] = 10
    return page


@pytest.mark.parametrize("shape", ["T", "tall T", "⊣", "⊢"])
def test_a_digit_whose_mass_sits_at_one_end_stays_inside_the_frame(shape):
    """Centred by its mass (as MNIST's were), a digit whose mass sits at one end would run
    out of the 28 x 28 frame: it is clipped to touch that edge instead."""
    page = {"T": _ink(slice(5, 20), slice(5, 55)),        # a heavy bar on a thin stem
            "tall T": _ink(slice(2, 14), slice(20, 40)),  # narrower than tall
            "⊣": _ink(slice(5, 55), slice(40, 55)),       # the mass at the right
            "⊢": _ink(slice(5, 55), slice(5, 20))}[shape]  # the mass at the left
    if shape == "T":
        page[20:55, 28:31] = 10
    elif shape == "tall T":
        page[14:58, 29:31] = 10
    elif shape == "⊣":
        page[28:31, 5:40] = 10
    else:
        page[28:31, 20:55] = 10
    digit, _ = mnist_digit(page)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit)
    box = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert max(box.shape) == 20  # the 20 x 20 box of MNIST, aspect kept
    if shape in ("T", "tall T"):   # pulled up: the bottom of the ink is the frame's
        assert rows.max() == 27 and rows.min() > 0
    elif shape == "⊣":             # pulled left
        assert cols.min() == 0 and cols.max() < 27
    else:                          # pulled right
        assert cols.max() == 27 and cols.min() > 0
    outside = np.ones_like(digit, dtype=bool)
    outside[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = False
    assert (digit[outside] == 0).all() and (box == 0).any()  # the background stays exactly 0


def _colour(size=(32, 32)) -> Preprocessing:
    return Preprocessing(dataset="cifar10", channels=3, image_size=size, input_size=size,
                         mean=(0.5,) * 3, std=(0.25,) * 3, classes=tuple("abcdefghij"))


def test_a_colour_models_input_says_what_was_converted_and_resized():
    pixels, notes = prepare_image(Image.new("L", (40, 20), 128), _colour((24, 32)))
    assert pixels.shape == (3, 24, 32)
    assert notes == ["L converted to RGB", "resized from 40x20 to 32x24"]
    pixels, notes = prepare_image(Image.new("RGB", (32, 24), (1, 2, 3)), _colour((24, 32)))
    assert notes == [] and pixels[:, 0, 0].tolist() == [1, 2, 3]


def test_resizing_matches_the_image_folders_antialiased_resize():
    from torchvision.transforms.v2.functional import resize

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    pixels, _ = prepare_image(photo, _colour())
    import torch

    source = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)
    assert torch.equal(pixels, resize(source, [32, 32], antialias=True))
    assert not torch.equal(pixels, resize(source, [32, 32], antialias=False))  # it matters here


def test_a_stroke_flatter_than_the_box_keeps_one_row_of_ink():
    """A horizontal stroke 1 px high and 60 px wide: scaled to 20 x 1 (20 px on the longer side,
    at least one on the other), not stretched to two rows."""
    grey = np.zeros((9, 80), dtype=np.uint8)
    grey[4, 10:70] = 255
    digit, notes = mnist_digit(grey)
    assert "cropped to the ink (60x1 px), scaled to 20x1 and centred" in notes[-1]
    assert np.count_nonzero(digit.any(axis=1)) == 1 and np.count_nonzero(digit.any(axis=0)) == 20


def test_unreadable_empty_and_corrupt_files_each_say_what_they_are(tmp_path, monkeypatch):
    from pathlib import Path

    empty, one = tmp_path / "empty.png", tmp_path / "one.png"
    empty.write_bytes(b"")
    one.write_bytes(b"\x89")  # one byte: no image, but not empty
    with pytest.raises(ImageInputError, match=r"^image .*empty.png is empty \(0 bytes\)$"):
        open_image(empty)
    with pytest.raises(ImageInputError, match=r"one.png is not an image PIL can read"):
        open_image(one)
    def refused(self):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(ImageInputError, match=r"^cannot read .*one.png: Permission denied$"):
        open_image(one)
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(ImageInputError, match=r"^cannot read .*one.png: disk gone$"):
        open_image(one)  # an error without an errno: its text
    monkeypatch.undo()

    # a decoder that reports no pixels on one side (PIL's PNG plugin refuses such a header)
    for size in ((0, 5), (5, 0)):
        monkeypatch.setattr(images.Image, "open", lambda stream, size=size: Image.new("L", size))
        with pytest.raises(ImageInputError, match=rf"one.png has no pixels \({size[0]}x{size[1]}\)$"):
            open_image(one)
    monkeypatch.undo()
    # pixels that do not decode: the decoder's first line, at most 120 characters, or its kind
    good = tmp_path / "good.png"
    Image.new("L", (4, 4)).save(good)
    for error, reason in ((OSError("broken data stream\nmore"), "broken data stream"),
                          (OSError("x" * 200), "x" * 120), (EOFError(), "EOFError")):
        monkeypatch.setattr(Image.Image, "load", lambda self, e=error: (_ for _ in ()).throw(e))
        with pytest.raises(ImageInputError) as err:
            open_image(good)
        assert str(err.value) == (f"{good} is corrupt or truncated ({reason}); give a complete "
                                  f"image file")


@pytest.mark.parametrize("median, used_as_is", [(127, True), (128, False)])
def test_a_28x28_image_is_used_as_is_when_its_background_is_dark(median, used_as_is):
    grey = np.full((28, 28), median, dtype=np.uint8)
    grey[10:18, 12:16] = 255 if median < 128 else 0
    prep = Preprocessing(dataset="mnist", channels=1, image_size=(28, 28), input_size=(28, 28),
                         mean=(0.1307,), std=(0.3081,), classes=tuple("0123456789"))
    _, notes = prepare_image(Image.fromarray(grey), prep)
    assert ("a 28x28 image on a dark background, like MNIST's: used as is" in notes) is used_as_is


def test_mnist_digit_stretches_rounds_and_scales_with_lanczos():
    """The ink is stretched so that its peak is 255 (rounded, not cut: 200 * 255/200 is 255, not
    254.99 cut to 254), values below a quarter of that become paper (exactly a quarter is ink),
    and the crop is scaled with Lanczos, as MNIST's digits were anti-aliased."""
    quarter = np.random.default_rng(0).integers(70, 200, (5, 3))
    quarter[-1, -1] = 200                            # the peak: stretched by 255/200 = 1.275
    half = np.hstack([quarter, quarter[:, -2::-1]])  # symmetric: its centre of mass is its centre
    block = np.vstack([half, half[::-1]])            # 10 x 5
    page = np.zeros((40, 40), dtype=np.uint8)
    page[10:20, 12:17] = block
    digit, notes = mnist_digit(page)
    crop = np.round(block * (255 / 200)).astype(np.uint8)
    assert crop.max() == 255 and crop.min() > 64      # all ink
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[4:24, 9:19] = np.asarray(Image.fromarray(crop).resize((10, 20), Image.LANCZOS))
    assert np.array_equal(digit, expected), np.argwhere(digit != expected)[:5]

    page = np.zeros((40, 40), dtype=np.uint8)
    page[10:20, 14:16] = 204  # peak 204: stretched by 1.25
    page[25, 25] = 51         # 63.75, exactly the ink floor: ink, so the crop reaches it
    page[2, 2] = 50           # 62.5: paper
    _, notes = mnist_digit(page)
    assert "cropped to the ink (12x16 px)" in notes[-1]
