"""TensorLoader: epochs, determinism, torchvision equivalence and batched augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from cnnbench.data import TensorLoader, load_dataset, parse_augment
from cnnbench.data import augment as aug
from cnnbench.errors import UserError

MEAN3, STD3 = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _images(n=37, channels=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_each_sample_exactly_once_per_epoch():
    x, _ = _images(37)
    ids = torch.arange(37)  # labels = sample ids, to track samples through the loader
    loader = TensorLoader(x, ids, batch_size=8, shuffle=True, seed=3)
    assert len(loader) == 5 and loader.num_samples == 37
    for epoch in range(3):
        batches = _epoch(loader, epoch)
        assert [len(y) for _, y in batches] == [8, 8, 8, 8, 5]
        seen = torch.cat([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(37))
        # and each image travels with its own label
        got = torch.cat([b for b, _ in batches])
        assert torch.equal(got, x[seen].float() / 255)
    dropped = TensorLoader(x, ids, batch_size=8, drop_last=True)
    assert len(dropped) == 4 and sum(len(y) for _, y in dropped) == 32


def test_shuffle_is_a_function_of_seed_and_epoch():
    x, _ = _images(50)
    ids = torch.arange(50)
    a = TensorLoader(x, ids, batch_size=50, seed=1, augment="crop+flip+cutout")
    b = TensorLoader(x, ids, batch_size=50, seed=1, augment="crop+flip+cutout")
    order0 = _epoch(a, 0)[0][1]
    assert not torch.equal(order0, _epoch(a, 1)[0][1])  # a new order every epoch
    assert not torch.equal(order0, _epoch(TensorLoader(x, ids, batch_size=50, seed=2), 0)[0][1])
    # A resumed run (fresh loader, the checkpoint's state restored) gets exactly the same batches.
    a.set_epoch(7)
    b.load_state_dict({"seed": 1, "epoch": 7})
    assert (b.seed, b.epoch) == (1, 7)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # The shuffle stream does not depend on which augmentations are on.
    plain = TensorLoader(x, ids, batch_size=50, seed=1, augment="none")
    assert torch.equal(_epoch(plain, 7)[0][1], _epoch(a, 7)[0][1])


def test_no_shuffle_keeps_order():
    x, y = _images(10)
    batches = list(TensorLoader(x, y, batch_size=4, shuffle=False))
    assert torch.equal(torch.cat([b for _, b in batches]), y)


@pytest.mark.parametrize("channels", [1, 3])
def test_equals_torchvision_to_tensor_normalize(channels):
    x, y = _images(20, channels=channels, size=9)
    mean, std = ((0.1307,), (0.3081,)) if channels == 1 else (MEAN3, STD3)
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    want = torch.stack([
        pipeline(Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy())) for img in x])
    got = torch.cat([b for b, _ in TensorLoader(x, y, batch_size=6, shuffle=False,
                                                   mean=mean, std=std, augment="none")])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_equals_torchvision_on_mnist_fixture(idx_data):
    ds = load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    spec = ds.spec
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
    want = torch.stack([pipeline(Image.fromarray(img[0].numpy())) for img in ds.test_x])
    loader = TensorLoader(ds.test_x, ds.test_y, batch_size=5, shuffle=False,
                          mean=spec.mean, std=spec.std)
    got = torch.cat([b for b, _ in loader])
    torch.testing.assert_close(got, want)
    assert got.dtype == torch.float32


@pytest.mark.parametrize("augment", ["crop", "flip", "altflip", "translate", "cutout",
                                     "crop+flip+cutout", "translate+altflip"])
def test_augmentation_shapes_and_ranges(augment):
    x, y = _images(16, channels=3, size=32)
    loader = TensorLoader(x, y, batch_size=16, mean=MEAN3, std=STD3, augment=augment)
    out, labels = next(iter(loader))
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32 and labels.dtype == torch.int64
    low = (0 - torch.tensor(MEAN3)) / torch.tensor(STD3)
    high = (1 - torch.tensor(MEAN3)) / torch.tensor(STD3)
    assert torch.isfinite(out).all()
    assert (out >= low.view(1, 3, 1, 1) - 1e-5).all() and (out <= high.view(1, 3, 1, 1) + 1e-5).all()


def test_resize_and_channels_last():
    x, y = _images(6, channels=1, size=28)
    out, _ = next(iter(TensorLoader(x, y, batch_size=6, resize=56, channels_last=True,
                                    augment="crop+flip")))
    assert out.shape == (6, 1, 56, 56) and out.is_contiguous(memory_format=torch.channels_last)
    plain, _ = next(iter(TensorLoader(x, y, batch_size=6, shuffle=False, resize=56)))
    torch.testing.assert_close(plain, F.interpolate(x.float() / 255, size=(56, 56), mode="bilinear"))


def test_shift_crop_matches_slicing():
    x, _ = _images(5, channels=2, size=6)
    x = x.float()
    offsets = torch.tensor([[0, 0], [4, 4], [1, 3], [2, 2], [4, 0]])
    for mode in ("constant", "reflect"):
        got = aug.shift_crop(x, offsets, 2, mode)
        padded = F.pad(x, (2, 2, 2, 2), mode=mode)
        for i, (oy, ox) in enumerate(offsets.tolist()):
            assert torch.equal(got[i], padded[i, :, oy:oy + 6, ox:ox + 6])


def test_crop_pads_with_black_before_normalising():
    x = torch.full((64, 1, 28, 28), 255, dtype=torch.uint8)
    out, _ = next(iter(TensorLoader(x, torch.zeros(64, dtype=torch.int64), batch_size=64,
                                    mean=(0.5,), std=(0.5,), augment="crop")))
    assert out.min() == -1.0 and out.max() == 1.0  # padding is pixel 0 -> (0 - .5) / .5
    # 28 px images are padded by 2, so at most 2 black rows/columns show.
    assert (out[:, 0, 2:-2, 2:-2] == 1.0).all()


def test_flip_outputs_image_or_mirror():
    x, y = _images(40, size=8)
    out = torch.cat([b for b, _ in TensorLoader(x, y, batch_size=40, shuffle=False, augment="flip")])
    base = x.float() / 255
    same = (out == base).flatten(1).all(1)
    mirrored = (out == base.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_altflip_each_image_flipped_in_exactly_one_of_two_epochs():
    x, _ = _images(30, size=8)
    ids = torch.arange(30)
    loader = TensorLoader(x, ids, batch_size=7, seed=5, augment="altflip")
    flipped_by_epoch = []
    for epoch in range(4):
        flipped = torch.zeros(30, dtype=torch.bool)
        for out, idx in _epoch(loader, epoch):
            flipped[idx] = (out == (x[idx].float() / 255).flip(3)).flatten(1).all(1)
        flipped_by_epoch.append(flipped)
    for e in range(3):
        assert (flipped_by_epoch[e] ^ flipped_by_epoch[e + 1]).all()
    assert 0 < int(flipped_by_epoch[0].sum()) < 30


def test_translate_stays_within_reflected_shift():
    x, y = _images(8, channels=1, size=10)
    loader = TensorLoader(x, y, batch_size=8, shuffle=False, augment="translate", translate=2)
    out = next(iter(loader))[0]
    padded = F.pad(x.float() / 255, (2, 2, 2, 2), mode="reflect")
    for i in range(8):
        assert any(torch.equal(out[i], padded[i, :, oy:oy + 10, ox:ox + 10])
                   for oy in range(5) for ox in range(5))


def test_cutout_zeroes_a_square_after_normalising():
    x = torch.full((10, 3, 32, 32), 200, dtype=torch.uint8)
    loader = TensorLoader(x, torch.zeros(10, dtype=torch.int64), batch_size=10, mean=MEAN3,
                          std=STD3, augment="cutout", cutout_size=8)
    out = next(iter(loader))[0]
    zeros = (out == 0).all(1).flatten(1).sum(1)  # zeroed pixels per image, all channels
    assert (zeros > 0).all() and (zeros <= 64).all()
    centers = torch.tensor([[16, 16], [0, 0]])
    patched = aug.cutout(torch.ones(2, 1, 32, 32), centers, 8)
    assert int((patched[0] == 0).sum()) == 64 and int((patched[1] == 0).sum()) == 16  # clipped


def test_parse_augment_and_bad_inputs():
    assert parse_augment("crop+flip") == ("crop", "flip")
    assert parse_augment("none") == () and parse_augment(None) == ()
    assert parse_augment("Crop+crop") == ("crop",)
    with pytest.raises(UserError, match="unknown augmentation"):
        parse_augment("crop+rotate")
    with pytest.raises(UserError, match="not both"):
        parse_augment("flip+altflip")
    x, y = _images(4)
    with pytest.raises(UserError, match="batch size"):
        TensorLoader(x, y, batch_size=0)


def test_device_argument_and_host_batches():
    x, y = _images(12)
    for resident in (True, False):
        loader = TensorLoader(x, y, batch_size=5, device=torch.device("cpu"), resident=resident,
                              augment="crop+flip", seed=4)
        out = list(loader)
        assert all(b.device.type == "cpu" and t.device.type == "cpu" for b, t in out)
        assert sum(len(t) for _, t in out) == 12
