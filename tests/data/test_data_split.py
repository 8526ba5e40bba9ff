"""split_indices: seeded, disjoint, complete, machine-independent."""

import pytest
import torch

from cnnbench.data import split_indices, split_sizes
from cnnbench.errors import UserError


def test_split_is_disjoint_complete_and_sized():
    train, val = split_indices(60000, 0.1, seed=0)
    assert len(train) == 54000 and len(val) == 6000
    assert train.dtype == torch.int64 and val.dtype == torch.int64
    both = torch.cat([train, val])
    assert torch.equal(both.sort().values, torch.arange(60000))  # disjoint and complete
    assert torch.equal(train, train.sort().values)  # sorted: keeps file order
    assert split_sizes(50000, 0.1) == (45000, 5000) and split_sizes(50000, 0.2) == (40000, 10000)


def test_split_is_deterministic_per_seed():
    a = split_indices(1000, 0.2, seed=7)
    b = split_indices(1000, 0.2, seed=7)
    c = split_indices(1000, 0.2, seed=8)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_split_values_are_pinned():
    """The indices themselves, written out: they must not change between machines or versions
    (a changed split silently changes every result). Guards against another generator, another
    seed, taking validation from the other end of the permutation, and truncating instead of
    rounding the validation size (7 x 0.25 = 1.75 -> 2 images, not 1)."""
    train, val = split_indices(10, 0.3, seed=0)
    assert val.tolist() == [1, 4, 7] and train.tolist() == [0, 2, 3, 5, 6, 8, 9]
    train, val = split_indices(20, 0.25, seed=1)
    assert val.tolist() == [2, 5, 11, 13, 19]
    train, val = split_indices(7, 0.25, seed=0)
    assert val.tolist() == [0, 4] and train.tolist() == [1, 2, 3, 5, 6]
    assert split_sizes(7, 0.25) == (5, 2) and split_sizes(9, 0.05) == (9, 0)


def test_defaults_and_empty():
    assert split_sizes(100) == (90, 10)  # default: 10% validation
    assert torch.equal(split_indices(10)[1], split_indices(10, 0.1, seed=0)[1])
    train, val = split_indices(0, 0.1)
    assert len(train) == 0 and len(val) == 0
    with pytest.raises(UserError, match="cannot split"):
        split_indices(-1)


def test_zero_and_invalid_fractions():
    train, val = split_indices(10, 0.0, seed=0)
    assert len(val) == 0 and torch.equal(train, torch.arange(10))
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(UserError, match="val-split"):
            split_indices(10, bad)
