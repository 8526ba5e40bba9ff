"""training/inputs.py: the data a checkpoint was trained on, checked against the data now."""

from __future__ import annotations

import pytest

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
