"""Reading, verifying and caching datasets from tiny fixture files (no network)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from pathlib import Path

import pytest
import torch

from cnnbench.data import (
    DatasetCorruptError, DatasetMissingError, get_spec, load_dataset, resolve_cache_dir,
    resolve_data_dir,
)
from cnnbench.data import datasets as datasets_module
from cnnbench.data import imagefolder, sources
from cnnbench.errors import UserError
from conftest import write_cifar10_jpeg


def _tree_state(root):
    """Every path under ``root`` with its size and mtime: to prove nothing was written there."""
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_dataset_decodes_exactly(idx_data, name):
    before = _tree_state(idx_data.root)
    ds = load_dataset(name, data_dir=idx_data.root, cache_dir=idx_data.cache)
    want = getattr(idx_data, name)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (48, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64
    assert torch.equal(ds.train_x, want.train_x) and torch.equal(ds.train_y, want.train_y)
    assert torch.equal(ds.test_x, want.test_x) and torch.equal(ds.test_y, want.test_y)
    assert ds.verified and "md5" in ds.verification
    assert ds.location == str(want.raw)
    assert ds.spec == get_spec(name)
    assert _tree_state(idx_data.root) == before  # the data root is only read


def test_second_load_comes_from_cache(idx_data, monkeypatch):
    first = load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(sources.IdxSource, "decode", no_decoding)
    second = load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    assert torch.equal(first.train_x, second.train_x) and second.verified


def test_changed_source_invalidates_cache(idx_data):
    first = load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    assert first.train_y.tolist() != [0] * 48
    target = idx_data.mnist.raw / "train-labels-idx1-ubyte.gz"
    with gzip.open(target, "wb") as f:  # every label 0: same size, new content and mtime
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 48]) + bytes(48))
    os.utime(target, ns=(10**18, 10**18))
    idx_data.refresh_md5()
    second = load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    assert second.train_y.tolist() == [0] * 48
    assert len(list((idx_data.cache / "datasets").glob("mnist-*.pt"))) == 1  # old entry dropped


def test_md5_mismatch_names_the_file(idx_data):
    target = idx_data.mnist.raw / "train-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: md5 no longer matches torchvision's list
    target.write_bytes(bytes(data))
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    message = str(info.value)
    assert str(target) in message and "md5" in message and "\n" not in message


def test_truncated_gzip_names_the_file(idx_data):
    target = idx_data.mnist.raw / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:2000])
    idx_data.refresh_md5()  # md5 alone would catch it: make sure decoding does too
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    assert str(target) in str(info.value) and "gzip" in str(info.value)


def test_wrong_idx_header_names_the_file(idx_data):
    target = idx_data.mnist.raw / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(target, "wb") as f:
        f.write(b"\x12\x34\x56\x78" + bytes(16))
    idx_data.refresh_md5()
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=idx_data.root, cache_dir=idx_data.cache)
    assert str(target) in str(info.value) and "IDX" in str(info.value)


def test_missing_files_offline_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sources.socket, "create_connection",
                        lambda *a, **k: pytest.fail("tests must not touch the network"))
    with pytest.raises(DatasetMissingError) as info:
        load_dataset("mnist", data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert "\n" not in message and isinstance(info.value, UserError)


def test_network_probe_is_off_in_tests():
    assert os.environ["CNNBENCH_OFFLINE"] == "1"
    assert sources.network_available("https://example.com/") is False


def test_download_goes_to_cache_when_data_root_is_read_only(idx_data, tmp_path, monkeypatch):
    """With a network (faked), missing files are fetched by torchvision's downloader; a data
    root without write permission is left alone and the files land in the cache."""
    import torchvision.datasets.utils as tv_utils

    empty_root = tmp_path / "readonly"
    empty_root.mkdir()
    empty_root.chmod(0o555)
    fetched = []

    def fake_download_url(url, root, filename=None, md5=None):
        fetched.append(url)
        os.makedirs(root, exist_ok=True)
        data = (idx_data.mnist.raw / filename).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5
        (tv_utils.pathlib.Path(root) / filename).write_bytes(data)

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    monkeypatch.setattr(datasets_module, "network_available", lambda url: True)
    try:
        ds = load_dataset("mnist", data_dir=empty_root, cache_dir=idx_data.cache)
    finally:
        empty_root.chmod(0o755)
    assert len(fetched) == 4 and list(empty_root.iterdir()) == []
    assert ds.location == str(idx_data.cache / "downloads" / "MNIST" / "raw")
    assert torch.equal(ds.train_x, idx_data.mnist.train_x)


def test_cifar_batches_decode_exactly(cifar_data):
    ds = load_dataset("cifar10", data_dir=cifar_data.root, cache_dir=cifar_data.cache)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (6, 3, 32, 32)
    assert torch.equal(ds.train_x, cifar_data.train_x) and torch.equal(ds.test_y, cifar_data.test_y)
    assert ds.verified and ds.spec.name == "cifar10" and ds.spec.classes[0] == "airplane"


def test_cifar_md5_mismatch_names_the_file(cifar_data):
    target = cifar_data.folder / "data_batch_3"
    target.write_bytes(target.read_bytes() + b"junk")
    with pytest.raises(DatasetCorruptError, match="data_batch_3.*md5"):
        load_dataset("cifar10", data_dir=cifar_data.root, cache_dir=cifar_data.cache)


def test_cifar_missing_gives_hint(tmp_path):
    with pytest.raises(DatasetMissingError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_md5_results_are_remembered(idx_data, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    from cnnbench.data.cache import Md5Memo

    calls = []
    real = tv_utils.calculate_md5
    monkeypatch.setattr(tv_utils, "calculate_md5", lambda p: calls.append(p) or real(p))
    file = idx_data.mnist.raw / "t10k-labels-idx1-ubyte.gz"
    memo = Md5Memo(idx_data.cache)
    digest = memo.md5(file)
    memo.save()
    assert Md5Memo(idx_data.cache).md5(file) == digest and len(calls) == 1
    os.utime(file, ns=(1, 1))  # a new mtime: the file is hashed again
    assert Md5Memo(idx_data.cache).md5(file) == digest and len(calls) == 2


def test_image_folder_mixed_formats_and_sizes(image_folder, caplog):
    name = f"imagefolder:{image_folder.path}"
    with caplog.at_level(logging.WARNING, logger="cnnbench.data"):
        ds = load_dataset(name, cache_dir=image_folder.cache)
    assert ds.spec.name == name and ds.spec.classes == ("cat", "dog")
    assert ds.spec.channels == 3 and ds.spec.image_size == (8, 8)  # most common size
    assert ds.train_x.shape == (8, 3, 8, 8) and ds.test_x.shape == (4, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and ds.test_y.tolist() == [0, 0, 1, 1]
    # Files come in sorted relative-path order; all but the odd one decode exactly as PIL does.
    rels = sorted(r for r in image_folder.pixels if r.startswith("train/"))
    for i, rel in enumerate(rels):
        if rel != "train/dog/odd.png":
            assert torch.equal(ds.train_x[i], image_folder.pixels[rel]), rel
    assert any("resized" in n and "odd.png" in n for n in ds.notes)
    assert any("resized" in r.getMessage() for r in caplog.records)  # the user is told
    assert len(ds.spec.mean) == 3 and all(0 < s for s in ds.spec.std)
    assert get_spec(name, cache_dir=image_folder.cache) == ds.spec


def test_image_folder_edited_after_the_first_load_is_read_again(tmp_path):
    """Guards against an image-folder cache key that ignores the folder's contents: a replaced
    image (same name, same byte size), an added image and a removed one must each be seen by
    the next load, not served stale from the cache."""
    from PIL import Image

    root, cache = tmp_path / "f", tmp_path / "cache"
    for split in ("train", "test"):
        for cls, value in (("a", 10), ("b", 20)):
            (root / split / cls).mkdir(parents=True)
            Image.new("L", (4, 4), value).save(root / split / cls / "x.png")
    name = f"imagefolder:{root}"
    first = load_dataset(name, cache_dir=cache)
    assert first.train_x[:, 0, 0, 0].tolist() == [10, 20]
    assert load_dataset(name, cache_dir=cache).train_x[:, 0, 0, 0].tolist() == [10, 20]  # cached

    edited = root / "train" / "a" / "x.png"
    size = edited.stat().st_size
    Image.new("L", (4, 4), 11).save(edited)  # new pixels, same name, same PNG size
    assert edited.stat().st_size == size
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    assert load_dataset(name, cache_dir=cache).train_x[:, 0, 0, 0].tolist() == [11, 20]

    Image.new("L", (4, 4), 30).save(root / "train" / "b" / "y.png")
    ds = load_dataset(name, cache_dir=cache)
    assert ds.train_x[:, 0, 0, 0].tolist() == [11, 20, 30] and ds.train_y.tolist() == [0, 1, 1]

    (root / "test" / "b" / "x.png").unlink()
    Image.new("L", (4, 4), 40).save(root / "test" / "a" / "z.png")
    ds = load_dataset(name, cache_dir=cache)
    assert ds.test_x[:, 0, 0, 0].tolist() == [10, 40] and ds.test_y.tolist() == [0, 0]


def test_image_folder_all_gray_stays_one_channel(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "g" / split / cls).mkdir(parents=True)
            Image.new("L", (5, 5), 77).save(tmp_path / "g" / split / cls / "x.png")
    ds = load_dataset(f"imagefolder:{tmp_path / 'g'}", cache_dir=tmp_path / "cache")
    assert ds.train_x.shape == (2, 1, 5, 5) and int(ds.train_x.max()) == 77


def test_unreadable_image_names_the_file(image_folder):
    bad = image_folder.path / "test" / "dog" / "b.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset(f"imagefolder:{image_folder.path}", cache_dir=image_folder.cache)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_image_folder_without_test_split(tmp_path):
    (tmp_path / "f" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match="test"):
        load_dataset(f"imagefolder:{tmp_path / 'f'}", cache_dir=tmp_path / "cache")


def _sources_md_sha256(root, split):
    """The SOURCES.md convention, written out independently: sorted paths relative to the
    dataset folder, each followed by the file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(p.relative_to(root).as_posix() for p in (root / split).rglob("*.jpg")):
        digest.update(path.encode())
        digest.update((root / path).read_bytes())
    return digest.hexdigest()


def test_cifar10_jpeg_counts_and_sha256(tmp_path, monkeypatch):
    root = write_cifar10_jpeg(tmp_path / "data")
    expected = imagefolder.FolderExpectation(
        per_class={"train": 2, "test": 1},
        sha256={s: _sources_md_sha256(root, s) for s in ("train", "test")})
    monkeypatch.setattr(sources, "CIFAR10_JPEG_EXPECTED", expected)
    ds = load_dataset("cifar10_jpeg", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.verified and "sha256" in ds.verification
    assert ds.spec.name == "cifar10_jpeg" and ds.spec.classes == get_spec("cifar10").classes
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_y.tolist() == list(range(10))


def test_cifar10_jpeg_other_sha256_is_not_verified(tmp_path, monkeypatch):
    write_cifar10_jpeg(tmp_path / "data")
    expected = imagefolder.FolderExpectation(per_class={"train": 2, "test": 1},
                                         sha256={"train": "0" * 64, "test": "0" * 64})
    monkeypatch.setattr(sources, "CIFAR10_JPEG_EXPECTED", expected)
    ds = load_dataset("cifar10_jpeg", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not ds.verified and any("sha256" in n for n in ds.notes)


def test_cifar10_jpeg_incomplete_is_an_error(tmp_path):
    write_cifar10_jpeg(tmp_path / "data")  # 2 per class, not 5000
    with pytest.raises(DatasetCorruptError, match="incomplete.*expected 5000"):
        load_dataset("cifar10_jpeg", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "c"))
    assert resolve_data_dir() == tmp_path / "d" and resolve_cache_dir() == tmp_path / "c"
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("CNNBENCH_DATA")
    monkeypatch.delenv("CNNBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == Path.cwd() / "data"
    assert resolve_cache_dir() == tmp_path / ".cache" / "cnnbench"


def test_one_rule_finds_each_dataset_in_the_first_folder_that_holds_it(idx_data, tmp_path, monkeypatch):
    """No --data-dir, no $CNNBENCH_DATA: ./data first, then shared/datasets beside the checkout;
    MNIST only in the shared folder is found there (issue #30: only ./run.sh found it)."""
    from cnnbench.data import cache

    monkeypatch.delenv("CNNBENCH_DATA", raising=False)
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(cache, "shared_data_dir", lambda: idx_data.root)
    assert cache.data_roots() == [work / "data", idx_data.root]
    assert datasets_module.find_dataset("mnist") == idx_data.root / "MNIST" / "raw"
    ds = load_dataset("mnist", cache_dir=idx_data.cache)
    assert ds.location == str(idx_data.root / "MNIST" / "raw") and len(ds.train_y) == 48
    # an explicit choice is the only place looked in
    assert cache.data_roots(work / "data") == [work / "data"]
    with pytest.raises(DatasetMissingError):
        load_dataset("mnist", data_dir=work / "data", cache_dir=idx_data.cache, download=False)
    monkeypatch.setenv("CNNBENCH_DATA", f"{work / 'data'}{os.pathsep}{idx_data.root}")
    assert cache.data_roots() == [work / "data", idx_data.root]
    assert datasets_module.find_dataset("fashion_mnist") == idx_data.root / "FashionMNIST" / "raw"


def test_nothing_found_says_what_each_folder_holds_and_points_to_a_stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_DATA", f"{tmp_path / 'empty'}{os.pathsep}{tmp_path / 'shared'}")
    write_cifar10_jpeg(tmp_path / "shared")
    message = datasets_module.missing_message("cifar10")
    assert "\n" not in message
    assert f"{tmp_path / 'empty'} holds none of them" in message
    assert f"{tmp_path / 'shared'} holds cifar10_jpeg" in message
    assert message.endswith("is there: --dataset cifar10_jpeg")
    monkeypatch.setattr(datasets_module, "network_available", lambda url: False)
    with pytest.raises(DatasetMissingError, match="--dataset cifar10_jpeg$"):
        load_dataset("cifar10", cache_dir=tmp_path / "cache")
    assert "--dataset" not in datasets_module.missing_message("mnist")  # no stand-in for MNIST
