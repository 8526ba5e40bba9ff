"""training/inputs.py: the data a checkpoint was trained on, checked against the data now, and
the loaders a run trains and evaluates with, and the seeded subsets ``--limit-*`` take."""

from __future__ import annotations

import pytest
import torch

from cnnbench.config.resolve import resolve_config
from cnnbench.errors import UserError
from cnnbench.training.inputs import check_same_data

OLD = {"classes": ["a", "b", "c"], "test_sha256": "1", "test_images": 10}


@pytest.mark.parametrize("classes, change", [
    (["a", "b", "c", "d"], "added d"),
    (["a", "b"], "missing c"),
    (["a", "b", "d", "e"], "added d, e, missing c"),
    (["a", "d"], "added d, missing b, c"),
    (["c", "b", "a"], "in another order"),
])
def test_other_classes_are_refused_naming_what_changed(classes, change):
    with pytest.raises(UserError) as info:
        check_same_data(OLD, {"classes": classes, "test_sha256": "1", "test_images": 10}, "best.ckpt",
                        allow_changed_test=True)  # other classes: refused even so
    assert str(info.value) == (f"best.ckpt was trained on 3 classes but the dataset now has "
                               f"{len(classes)} ({change}); evaluate it on the data it was trained on")


def test_another_test_set_is_refused_unless_allowed():
    now = dict(OLD, test_sha256="2", test_images=11)
    with pytest.raises(UserError, match=r"the test set changed since best.ckpt was trained \(10 images "
                                        r"then, 11 now, other contents\)"):
        check_same_data(OLD, now, "best.ckpt")
    check_same_data(OLD, now, "best.ckpt", allow_changed_test=True)
    check_same_data(None, now, "best.ckpt")  # a checkpoint from before the fingerprint
    check_same_data(OLD, dict(OLD), "best.ckpt")


def test_a_limit_draws_a_seeded_sorted_subset_and_no_limit_keeps_the_order():
    import torch

    from cnnbench.training.inputs import _subset

    indices = torch.tensor([7, 3, 9, 1])
    for limit in (None, 0, 4, 5):  # no limit, or one that takes them all: as they were
        assert _subset(indices, limit, seed=0).tolist() == [7, 3, 9, 1]
    two = _subset(indices, 2, seed=0)
    assert two.tolist() == sorted(two.tolist()) and set(two.tolist()) < {7, 3, 9, 1}
    assert torch.equal(two, _subset(indices, 2, seed=0))  # seeded


def _inputs(n_train=40, n_val=11):
    import torch

    from cnnbench.training.inputs import Inputs

    def split(n, offset):
        pixels = torch.arange(offset, offset + n, dtype=torch.uint8).view(n, 1, 1, 1)
        return pixels.expand(n, 1, 4, 4).contiguous(), torch.arange(n) % 2

    return Inputs(spec=None, train=split(n_train, 0), val=split(n_val, 100),
                  test=split(n_val, 200), mean=(0.0,), std=(1.0,), input_size=(4, 4))


def test_loaders_train_shuffled_and_augmented_and_evaluate_in_blocks_of_a_process_group():
    """A training loader: shuffled, augmented as asked, each process its part of every global
    batch. An evaluation loader: in order, not augmented, batches of at least 256 unless
    ``eval_batch_size`` says, and in a group each process holds its contiguous block of the
    split as a loader of its own (sizes differing by at most one)."""
    from types import SimpleNamespace

    import torch

    from cnnbench.config import TrainConfig
    from cnnbench.training.inputs import make_loader

    config = TrainConfig(batch_size=8, augment="flip", seed=3, channels_last=True)
    inputs, cpu = _inputs(), torch.device("cpu")
    train = make_loader(config, inputs, "train", cpu, batch_size=8)  # as a run asks for it
    assert (train.batch_size, train.augment, train.shuffle) == (8, ("flip",), True)
    assert (train.seed, train.channels_last) == (3, True)  # the run's draws, its memory format
    assert not train.drop_last
    assert (train.rank, train.world_size) == (0, 1)
    val = make_loader(config, inputs, "val", cpu)
    assert (val.batch_size, val.augment, val.shuffle, val.num_samples) == (256, (), False, 11)
    assert make_loader(TrainConfig(batch_size=300), inputs, "val", cpu).batch_size == 300
    asked = TrainConfig(batch_size=8, eval_batch_size=5)
    assert make_loader(asked, inputs, "val", cpu).batch_size == 5
    for rank, block in ((0, range(100, 106)), (1, range(106, 111))):
        group = SimpleNamespace(rank=rank, world_size=2)
        shard = make_loader(config, inputs, "val", cpu, dist=group)
        assert (shard.rank, shard.world_size, shard.num_samples) == (0, 1, len(block))
        seen = torch.cat([x[:, 0, 0, 0] for x, _ in shard]) * 255  # mean 0, std 1: pixels / 255
        assert seen.round().long().tolist() == list(block)
        part = make_loader(config, inputs, "train", cpu, batch_size=8, dist=group)
        assert (part.rank, part.world_size, part.batch_size) == (rank, 2, 8)


def test_a_validation_split_too_small_for_one_image_is_one_line(tiny_mnist_env):
    """48 training images: a 1% split would hold none (not a run without validation), a 99% one
    would leave none to train on."""
    from cnnbench.config import TrainConfig
    from cnnbench.training.inputs import prepare_data

    with pytest.raises(UserError, match=r"val_split 0.01 leaves no validation image of 48; use a "
                                        r"larger split or 0"):
        prepare_data(TrainConfig(dataset="mnist", val_split=0.01))
    inputs = prepare_data(TrainConfig(dataset="mnist", val_split=0.03))  # round(1.44): one image
    assert len(inputs.val[1]) == 1 and len(inputs.train[1]) == 47
    with pytest.raises(UserError, match=r"no training images left \(dataset mnist, val_split 0.99"):
        prepare_data(TrainConfig(dataset="mnist", val_split=0.99))  # round(47.52): all 48


def test_the_data_normalised_as_asked_else_as_the_dataset_is_and_where_it_was_read(tiny_mnist_env):
    from pathlib import Path

    from cnnbench.config import TrainConfig
    from cnnbench.training.inputs import prepare_data

    default = prepare_data(TrainConfig(dataset="mnist"))
    assert (default.mean, default.std) == (tuple(default.spec.mean), tuple(default.spec.std))
    asked = prepare_data(TrainConfig(dataset="mnist", mean=[0.5], std=[0.25]))
    assert (asked.mean, asked.std) == ((0.5,), (0.25,))
    for mean, std in (([0.5, 0.5, 0.5], [0.25]), ([0.5], [0.25, 0.25, 0.25])):  # either wrong
        with pytest.raises(UserError, match=r"mean/std need 1 values for mnist \(one per chan"):
            prepare_data(TrainConfig(dataset="mnist", mean=mean, std=std))
    assert Path(default.location) == tiny_mnist_env.root / "MNIST" / "raw"  # the files read


def _numbered_dataset(monkeypatch, n_train=20, n_test=8):
    """A fake MNIST whose image ``i`` has every pixel equal to ``i``: a tensor says which images
    it holds. ``load_dataset`` is replaced, so no file is read."""
    from cnnbench import data

    def numbered(n):
        return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28).clone()

    fake = data.LoadedDataset(spec=data.get_spec("mnist"), train_x=numbered(n_train),
                              train_y=torch.arange(n_train) % 10, test_x=numbered(n_test),
                              test_y=torch.arange(n_test) % 10)
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: fake)


def _held(images):
    return images[:, 0, 0, 0].tolist()


def test_limits_take_a_seeded_random_subset_not_the_first_images(monkeypatch):
    """Guards against ``--limit-train N`` / ``--limit-eval N`` taking the first N images (a
    single-class subset for data stored in class order) or ignoring ``split_seed``. The
    indices are written out: 20 images, 25% validation, 6 training and 3 evaluation images."""
    from cnnbench.training.inputs import prepare_data

    _numbered_dataset(monkeypatch)
    base = dict(dataset="mnist", val_split=0.25, limit_train=6, limit_eval=3)
    first = prepare_data(resolve_config({**base, "split_seed": 0}))
    assert _held(first.train[0]) == [0, 2, 3, 6, 16, 18]     # of train [0..3, 6, 8..12, 14..18]
    assert _held(first.val[0]) == [4, 7, 19]                 # of val [4, 5, 7, 13, 19]
    assert _held(first.test[0]) == [0, 4, 7]                 # of the 8 test images
    assert first.train[1].tolist() == [0, 2, 3, 6, 6, 8]     # labels follow their images
    other = prepare_data(resolve_config({**base, "split_seed": 1}))
    assert _held(other.train[0]) == [6, 7, 9, 10, 14, 15]
    assert _held(other.val[0]) == [5, 13, 19] and _held(other.test[0]) == [2, 3, 4]
    whole = prepare_data(resolve_config({**base, "limit_train": None, "limit_eval": None}))
    assert _held(whole.train[0]) == [0, 1, 2, 3, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18]
    assert len(whole.test[0]) == 8
