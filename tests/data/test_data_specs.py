"""Dataset specs and name resolution."""

import pytest

from cnnbench.data import DatasetSpec, get_spec, list_datasets, resolve_dataset_name
from cnnbench.errors import UserError


def test_every_builtin_has_a_consistent_spec():
    assert list_datasets() == ["mnist", "fashion_mnist", "cifar10", "cifar100", "cifar10_jpeg"]
    for name in list_datasets():
        spec = get_spec(name)
        assert isinstance(spec, DatasetSpec) and spec.name == name
        assert spec.num_classes == len(spec.classes) == len(set(spec.classes))
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert DatasetSpec.from_dict(spec.to_dict()) == spec


def test_known_values():
    assert get_spec("mnist").image_size == (28, 28) and get_spec("mnist").channels == 1
    assert get_spec("cifar100").num_classes == 100
    jpeg, cifar = get_spec("cifar10_jpeg"), get_spec("cifar10")
    assert jpeg.classes == cifar.classes and jpeg.mean == cifar.mean and jpeg.name != cifar.name


def test_names_resolve_case_insensitively():
    assert resolve_dataset_name("MNIST") == "mnist"
    assert resolve_dataset_name("Fashion-MNIST") == "fashion_mnist"
    assert resolve_dataset_name("CIFAR-10") == "cifar10"
    assert resolve_dataset_name("imagefolder:/x/y") == "imagefolder:/x/y"
    with pytest.raises(UserError, match="unknown dataset 'svhn'; valid: mnist"):
        get_spec("svhn")
    with pytest.raises(UserError, match="imagefolder needs a path"):
        resolve_dataset_name("imagefolder:")
