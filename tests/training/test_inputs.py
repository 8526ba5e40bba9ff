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
