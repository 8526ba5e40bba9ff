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
    # The same on any machine with the pinned torch: a CPU generator seeded explicitly.
    assert split_indices(10, 0.3, seed=0)[1].tolist() == torch.randperm(
        10, generator=torch.Generator().manual_seed(0))[:3].sort().values.tolist()


def test_zero_and_invalid_fractions():
    train, val = split_indices(10, 0.0, seed=0)
    assert len(val) == 0 and torch.equal(train, torch.arange(10))
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(UserError, match="val-split"):
            split_indices(10, bad)
