"""Images from users: read safely with PIL, then made to look like the dataset's images.

``open_image`` reads any image PIL reads (PNG, JPEG, GIF, BMP, WebP, TIFF...; greyscale, RGB,
RGBA, palette, 16-bit), refusing an empty, unreadable, truncated or oversized one with a
one-line :class:`ImageInputError` that carries the HTTP status the server answers with.
``prepare_image`` turns it into the dataset's uint8 ``C x H x W`` pixels and says what it did:

* transparent pixels are put on white (a drawing saved with a transparent background);
* colour or greyscale as the model was trained (PIL's conversions), 16-bit scaled to 8;
* ``mnist``: a photo or drawing of a digit is treated as the MNIST documentation describes its
  digits: dark ink on a light background is inverted (MNIST digits are light on black), the
  paper's level is removed and faint noise cleared, the digit is cropped to its ink, scaled so
  its longer side is 20 px (aspect kept, antialiased) and placed in a 28x28 image with its
  centre of mass at the centre. A 28x28 image on a dark background already is an MNIST image
  and is used as is (a test digit saved as PNG gets exactly its test-set pixels);
* ``fashion_mnist``: a light background is inverted (its items are light on black); there is no
  digit to centre, so the image is then only resized;
* anything else is resized to the dataset's image size (antialiased, as image folders are).

``digit_style=False`` skips the MNIST-style steps (only conversion and resizing).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnbench.errors import UserError

MAX_PIXELS = 64_000_000  # an 8000 x 8000 photo; more is refused (decompression bombs)
MAX_FILE_BYTES = 256_000_000  # no image worth predicting on is larger than this on disk
MNIST_BOX = 20           # MNIST digits fit a 20x20 box inside 28x28, centred by centre of mass
INK_FLOOR = 0.25         # after contrast stretching, values below this fraction are background


class ImageInputError(UserError):
    """An image that cannot be used; ``status`` is the HTTP status the server answers with
    (400 empty/corrupt, 413 too large, 415 not an image)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def image_suffixes() -> set[str]:
    """File name suffixes of the image formats PIL can open (``.png``, ``.jpg``...)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder means the image files in it and below (sorted by path)."""
    suffixes = image_suffixes()
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise ImageInputError(f"folder {path} holds no image files (.png, .jpg, .bmp, "
                                      f".gif, .webp, .tif ...)")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise ImageInputError(f"image {path} does not exist", status=404)
    return files


def open_image(source: str | Path | bytes, name: str | None = None, *,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The decoded image of a file or of bytes (``name`` names it in errors), EXIF rotation
    applied. Empty, not an image, truncated/corrupt or larger than ``max_pixels`` ->
    :class:`ImageInputError`."""
    if isinstance(source, (bytes, bytearray)):
        name = name or "the upload"
        if not source:
            raise ImageInputError(f"{name} is empty (0 bytes); give a PNG or JPEG image")
        stream = io.BytesIO(source)
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise ImageInputError(f"image {name} does not exist" if not path.exists()
                                  else f"{name} is not a file", status=404)
        size = path.stat().st_size
        if size == 0:
            raise ImageInputError(f"image {name} is empty (0 bytes)")
        if size > MAX_FILE_BYTES:
            raise ImageInputError(f"{name} is too large ({size / 1e6:.0f} MB); the limit is "
                                  f"{MAX_FILE_BYTES / 1e6:.0f} MB", status=413)
        try:
            stream = io.BytesIO(path.read_bytes())  # read once: no file left open
        except OSError as exc:
            raise ImageInputError(f"cannot read {name}: {exc.strerror or exc}") from None
    with warnings.catch_warnings():
        # PIL warns above its own pixel limit and raises above twice that: both are too large
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream)
        except UnidentifiedImageError:
            raise ImageInputError(f"{name} is not an image PIL can read; give a PNG, JPEG, GIF, "
                                  f"BMP, WebP or TIFF file", status=415) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            pixels = re.search(r"\((\d+) pixels\)", str(exc))  # PIL names the size it saw
            raise _too_large(name, f"{int(pixels.group(1)):,} pixels" if pixels else None,
                             max_pixels) from None
        width, height = image.size
        if width * height > max_pixels:
            raise _too_large(name, f"{width}x{height} pixels", max_pixels)
        if width == 0 or height == 0:
            raise ImageInputError(f"{name} has no pixels ({width}x{height})")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise ImageInputError(f"{name} is corrupt or truncated ({reason}); give a complete "
                                  f"image file") from None
    try:
        return ImageOps.exif_transpose(image)  # phone photos: upright as they are shown
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):  # damaged EXIF: as stored
        return image


def _too_large(name: str, size: str | None, max_pixels: int) -> ImageInputError:
    shown = f" ({size})" if size else ""
    return ImageInputError(f"{name} is too large{shown}; the limit is {max_pixels / 1e6:g} million "
                           f"pixels: scale it down first", status=413)


def _flatten(image: Image.Image, notes: list[str]) -> Image.Image:
    """Transparent pixels on white; 16-bit and float images scaled to 8 bits."""
    # (PIL's "La", premultiplied L, is left out: no file loads as it, and PIL cannot convert it)
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent pixels put on white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8))
    return image


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from torchvision.transforms.v2.functional import resize

    return resize(pixels, list(size), antialias=True)  # as image folders are resized


def mnist_digit(grey: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A greyscale image of a handwritten digit (any size, either polarity) as a 28x28 MNIST
    digit: light ink on black, cropped to the ink, longer side 20 px, centred by centre of
    mass. Returns the uint8 image and what was done."""
    g = grey.astype(np.float64)
    notes = []
    if np.median(g) > 127:
        g = 255.0 - g
        notes.append("inverted (dark ink on a light background; MNIST digits are light on black)")
    g = np.clip(g - np.median(g), 0, None)  # the paper's level becomes black
    peak = float(g.max(initial=0))
    if peak < 32:
        notes.append("no ink found (a blank image): only resized to 28x28")
        blank = _resize(torch.from_numpy(np.clip(g, 0, 255).astype(np.uint8))[None], (28, 28))
        return blank[0].numpy(), notes
    g *= 255.0 / peak
    g[g < INK_FLOOR * 255] = 0  # shadows and paper grain
    rows, cols = np.nonzero(g)
    crop = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = MNIST_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(crop.round().astype(np.uint8)).resize(size, Image.LANCZOS),
                       dtype=np.float32)
    total = digit.sum()
    cy, cx = ((np.arange(digit.shape[0]) @ digit.sum(1)) / total,
              (np.arange(digit.shape[1]) @ digit.sum(0)) / total) if total > 0 else (
        (digit.shape[0] - 1) / 2, (digit.shape[1] - 1) / 2)
    top = int(np.clip(round(13.5 - cy), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(13.5 - cx), 0, 28 - digit.shape[1]))
    out = np.zeros((28, 28), dtype=np.uint8)
    out[top:top + digit.shape[0], left:left + digit.shape[1]] = np.clip(digit, 0, 255).round()
    notes.append(f"cropped to the ink ({w}x{h} px), scaled to {size[0]}x{size[1]} and centred by "
                 f"centre of mass in 28x28, as MNIST digits are")
    return out, notes


def prepare_image(image: Image.Image, prep, *, digit_style: bool = True) -> tuple[torch.Tensor, list[str]]:
    """``image`` as the dataset's uint8 ``C x H x W`` pixels (``prep``: the model's
    :class:`cnnbench.inference.model.Preprocessing`) and what was done to it, in words."""
    notes: list[str] = []
    flat = _flatten(image, notes)
    size = tuple(prep.image_size)
    if prep.channels == 1:
        if flat.mode != "L":
            notes.append(f"{image.mode} converted to greyscale")
        grey = np.array(flat.convert("L"))  # a writable copy
        dark = np.median(grey) <= 127
        if digit_style and prep.dataset == "mnist" and size == (28, 28):
            if grey.shape == (28, 28) and dark:
                notes.append("a 28x28 image on a dark background, like MNIST's: used as is")
                return torch.from_numpy(grey)[None], notes
            digit, steps = mnist_digit(grey)
            return torch.from_numpy(digit)[None], notes + steps
        if digit_style and prep.dataset == "fashion_mnist" and not dark:
            grey = 255 - grey
            notes.append("inverted (light background; Fashion-MNIST items are light on black)")
        pixels = torch.from_numpy(grey)[None]
    else:
        if flat.mode != "RGB":
            notes.append(f"{image.mode} converted to RGB")
        pixels = torch.from_numpy(np.asarray(flat.convert("RGB")).copy()).permute(2, 0, 1)
    if tuple(pixels.shape[-2:]) != size:
        notes.append(f"resized from {pixels.shape[-1]}x{pixels.shape[-2]} to {size[1]}x{size[0]}")
        pixels = _resize(pixels, size)
    return pixels.contiguous(), notes
