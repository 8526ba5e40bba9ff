"""Dataset specs and name resolution."""

import pytest

from cnnbench.data import DatasetSpec, get_spec, list_datasets, resolve_dataset_name
from cnnbench.errors import UserError
from engine_fixtures import _tiny_folder_files, tiny_folder  # noqa: F401


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


def test_a_dataset_registers_like_a_model_and_every_command_sees_it(tiny_folder, monkeypatch,
                                                                       capsys):
    """A new dataset is one Source and one register_dataset call: its name and aliases then
    resolve, `train --help`, completion and `cnnbench datasets` list it, and it trains."""
    from cnnbench.cli import build_parser, main
    from cnnbench.commands.completion import _name_lists
    from cnnbench.data import register_dataset, specs
    from cnnbench.data.imagefolder import ImageFolderSource
    from engine_fixtures import CLASSES, quick_options

    monkeypatch.setattr(specs, "_REGISTRY", dict(specs._REGISTRY))
    monkeypatch.setattr(specs, "_ALIASES", dict(specs._ALIASES))
    spec = DatasetSpec("bars", 1, (12, 12), 4, CLASSES, (0.3,), (0.3,), "bars folder", 160, 48)
    register_dataset(spec, source=lambda: ImageFolderSource("bars", None, spec, subdir="bars"),
                     aliases=("Side-Bars",))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(spec, source=lambda: None)
    assert resolve_dataset_name("side-bars") == "bars" and list_datasets()[-1] == "bars"
    assert get_spec("bars") is spec
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "cifar10_jpeg, bars or imagefolder:PATH" in " ".join(help_text.split())
    assert "bars" in _name_lists()["datasets"]
    assert main(["datasets", "bars"]) == 0 and "bars" in capsys.readouterr().out
    from cnnbench.config.resolve import resolve_config
    from cnnbench.training import train_run

    options = quick_options(tiny_folder, dataset="Side-Bars", epochs=1)
    summary = train_run(resolve_config(options), out_dir=tiny_folder.out / "bars", progress=False)
    assert summary["dataset"] == "bars" and summary["split"]["test"] == 48
