"""TrainConfig: defaults, aliases, types, validation, precedence default < recipe < file < flags."""

from __future__ import annotations

import re

import pytest
import yaml

from cnnbench.config import recipes
from cnnbench.cli import build_parser
from cnnbench.config import TrainConfig, dump_yaml, parse_batch_schedule
from cnnbench.config.resolve import config_from_args, resolve_config
from cnnbench.errors import UserError


def parse_train(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_no_flags_is_the_default_recipe_and_library_defaults_are_plain():
    config = config_from_args(parse_train())
    assert config.recipe == "default"
    assert (config.model, config.dataset) == ("lenet5", "mnist")
    assert config.model_kwargs == {"activation": "relu", "pool": "max"}
    assert (config.scheduler, config.label_smoothing, config.epochs) == ("onecycle", 0.1, 6)
    # a Python caller gets what the CLI gets for the same options; studies ask for no recipe
    assert config == resolve_config({}) == resolve_config({"recipe": "default"})
    plain = resolve_config({}, default_recipe=None)
    assert plain == TrainConfig() and plain.recipe is None
    assert (plain.scheduler, plain.label_smoothing, plain.weight_decay) == ("none", 0.0, 0.0)
    assert config_from_args(parse_train("--recipe", "none")) == plain


def test_report_spellings_and_aliases():
    config = config_from_args(parse_train("--batch_size", "64", "--epoch", "3", "--reg", "0.01",
                                          "--model", "LeNet", "--optimizer", "SGD",
                                          "--dataset", "MNIST"))
    assert (config.batch_size, config.epochs, config.weight_decay) == (64, 3, 0.01)
    assert (config.model, config.optimizer, config.dataset) == ("lenet5", "sgd", "mnist")
    config = config_from_args(parse_train("--batch-size", "32", "--weight-decay", "0",
                                          "--model", "ResNet"))
    assert (config.batch_size, config.weight_decay, config.model) == (32, 0.0, "resnet18")
    assert resolve_config({"epoch": 2, "reg": 1e-4, "batch-size": 8}).epochs == 2


def test_booleans_and_lists_from_flags():
    config = config_from_args(parse_train("--optimizer", "sgd", "--nesterov", "--milestones",
                                          "2,3", "--scheduler", "multistep", "--epochs", "4",
                                          "--no-channels-last", "--model-kwargs", "{pool: avg}"))
    assert config.nesterov is True and config.channels_last is False
    assert config.milestones == [2, 3] and config.model_kwargs == {"pool": "avg"}
    # "none" for an optional option is no value: the code below the config tests only for None
    for value in ("none", "None", ""):
        assert config_from_args(parse_train("--track", value)).track is None


def test_precedence_default_recipe_file_flags(tmp_path, monkeypatch):
    monkeypatch.setitem(recipes.RECIPES, "probe", recipes.Recipe(
        "probe", "test recipe", "for the precedence test",
        defaults={"epochs": 7, "lr": 0.5, "batch_size": 99, "seed": 3},
        per_dataset={"mnist": {"momentum": 0.5}, "fashion_mnist": {"momentum": 0.6}}))
    config_file = tmp_path / "c.yaml"
    config_file.write_text("recipe: probe\nlr: 0.25\nbatch_size: 77\n")
    config = config_from_args(parse_train("--config", str(config_file), "--batch-size", "55"))
    assert config.recipe == "probe"
    assert config.epochs == 7             # recipe over default
    assert config.lr == 0.25              # file over recipe
    assert config.batch_size == 55        # flag over file
    assert config.momentum == 0.5         # recipe's per-dataset value (mnist)
    assert config.weight_decay == TrainConfig().weight_decay  # untouched default
    config = config_from_args(parse_train("--config", str(config_file), "--dataset",
                                          "fashion_mnist"))
    assert config.momentum == 0.6
    with pytest.raises(UserError, match="no settings for dataset 'cifar10'"):
        config_from_args(parse_train("--config", str(config_file), "--dataset", "cifar10"))


def test_recipe_flag_beats_the_recipe_named_in_the_file(tmp_path, monkeypatch):
    """Guards against the config file's ``recipe:`` winning over ``--recipe`` on the command
    line: the flag's recipe is applied (under the file's own values), the file's is not."""
    for name, epochs, lr, wd in (("from-file", 7, 0.5, 0.01), ("from-flag", 3, 0.2, 0.002)):
        monkeypatch.setitem(recipes.RECIPES, name, recipes.Recipe(
            name, "test recipe", "for the precedence test",
            defaults={"epochs": epochs, "lr": lr, "weight_decay": wd}))
    config_file = tmp_path / "c.yaml"
    config_file.write_text("recipe: from-file\nlr: 0.25\n")
    config = config_from_args(parse_train("--config", str(config_file), "--recipe", "from-flag"))
    assert config.recipe == "from-flag"
    assert (config.epochs, config.weight_decay) == (3, 0.002)  # the flag's recipe
    assert config.lr == 0.25                                   # the file still beats any recipe
    assert config_from_args(parse_train("--config", str(config_file))).epochs == 7
    none = config_from_args(parse_train("--config", str(config_file), "--recipe", "none"))
    assert none.recipe is None and none.epochs == TrainConfig().epochs and none.lr == 0.25
    assert resolve_config({"recipe": "from-flag"}, config_file=config_file).epochs == 3


def test_model_kwargs_belong_to_their_model(tmp_path):
    assert resolve_config({"model": "resnet18"}).model_kwargs == {}
    assert resolve_config({"model": "LeNet"}, default_recipe=None).model_kwargs == TrainConfig().model_kwargs
    # the same model under another spelling keeps the default recipe's model_kwargs
    assert resolve_config({"model": "LeNet"}).model_kwargs == {"activation": "relu", "pool": "max"}
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: simple_cnn\nmodel_kwargs: {activation: tanh}\n")
    assert resolve_config(config_file=config_file).model_kwargs == {"activation": "tanh"}
    assert resolve_config({"model": "resnet18"}, config_file=config_file).model_kwargs == {}
    assert TrainConfig().replace(model="alexnet").model_kwargs == {}
    # a file's model_kwargs for the default model stay when a flag names that model again
    kwargs_only = tmp_path / "k.yaml"
    kwargs_only.write_text("model_kwargs: {activation: relu}\n")
    again = resolve_config({"model": "lenet5"}, config_file=kwargs_only, default_recipe=None)
    assert again.model_kwargs == {"activation": "relu"}


def test_unknown_key_and_wrong_type_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown option 'learning_rate'"):
        resolve_config(config_file=bad)
    for text, key in (("lr: fast\n", "lr"), ("epochs: 2.5\n", "epochs"),
                      ("nesterov: maybe\n", "nesterov"), ("epochs: true\n", "epochs"),
                      ("model_kwargs: [1, 2]\n", "model_kwargs")):
        bad.write_text(text)
        with pytest.raises(UserError, match=key):
            resolve_config(config_file=bad)
    bad.write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        resolve_config(config_file=bad)
    bad.write_text("lr: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        resolve_config(config_file=bad)
    with pytest.raises(UserError, match="cannot read config file"):
        resolve_config(config_file=tmp_path / "missing.yaml")


def test_yaml_numbers_written_without_a_dot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5e-4\n")  # YAML 1.1 reads these as strings
    config = resolve_config(config_file=path)
    assert (config.lr, config.weight_decay) == (1e-3, 5e-4)


@pytest.mark.parametrize("changes, match", [
    ({"lr": -0.1}, "learning rate must be > 0"),
    ({"lr": 0}, "learning rate must be > 0"),
    ({"batch_size": 0}, "batch size must be >= 1"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; choose one of sgd"),
    ({"scheduler": "exp"}, "unknown scheduler 'exp'; choose one of none"),
    ({"device": "tpu"}, "unknown device"),
    ({"amp": "fp8"}, "unknown amp"),
    ({"momentum": 1.0}, "momentum"),
    ({"dropout": 1.0}, "dropout"),
    ({"val_split": 1.0}, "val split"),
    ({"weight_decay": -1}, "weight decay"),
    ({"nesterov": True, "optimizer": "adam"}, "nesterov needs optimizer sgd"),
    ({"muon_normalize": True, "optimizer": "sgd"},
     r"^muon_normalize needs optimizer muon, got optimizer sgd; add --optimizer muon or drop"),
    ({"muon_ns_steps": 3, "optimizer": "adamw"},
     r"^muon_ns_steps needs optimizer muon, got optimizer adamw; add --optimizer muon or drop"),
    ({"muon_ns_steps": 0, "optimizer": "muon"}, r"^muon_ns_steps must be in \[1, 20\], got 0$"),
    ({"nesterov": True, "optimizer": "sgd", "momentum": 0.0}, r"^nesterov needs .* got optimizer sgd with momentum 0.0; "
                                          r"add --no-nesterov \(a recipe may have set it\)$"),
    ({"nesterov": True, "optimizer": "muon"}, r"add --no-nesterov .*; muon's SGD part is Nesterov anyway$"),
    ({"scheduler": "multistep"}, "needs --milestones"),
    ({"milestones": [3, 2]}, "milestones must be increasing"),
    ({"warmup_epochs": 10}, "warmup epochs"),
    ({"scheduler": "plateau", "warmup_epochs": 1}, "plateau takes no warmup"),
    ({"batch_schedule": "32-20"}, "batch_schedule must look like"),
    ({"ema": 1.0}, "ema must be in"),
    ({"limit_train": 0}, "limit_train"),
    ({"lr": float("nan")}, "finite"),
])
def test_invalid_values(changes, match):
    with pytest.raises(UserError, match=match):
        TrainConfig(**changes)


def test_unknown_model_and_dataset_fail_at_resolution():
    with pytest.raises(UserError, match="unknown model|did you mean"):
        resolve_config({"model": "lenet9000"})
    with pytest.raises(UserError, match="unknown dataset"):
        resolve_config({"dataset": "imagenet"})
    with pytest.raises(UserError, match=r"^option 'dataset' must be a string, got \['mnist'\]$"):
        resolve_config({"dataset": ["mnist"]})  # a YAML list where a name belongs
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        resolve_config({"recipe": "nope"})


def test_batch_schedule_sets_epochs():
    assert parse_batch_schedule("32:20, 128:20,256:10") == [(32, 20), (128, 20), (256, 10)]
    config = TrainConfig(batch_schedule="32:2,64:1")
    assert config.epochs == 3
    assert [config.batch_size_at(e) for e in range(3)] == [32, 32, 64]
    assert resolve_config({"batch_schedule": "8:1,16:1", "epochs": 2}).epochs == 2
    with pytest.raises(UserError, match=r"^epochs 5 disagrees with batch_schedule '8:1,16:1' \(2 epochs\)"):
        resolve_config({"batch_schedule": "8:1,16:1", "epochs": 5})
    with pytest.raises(UserError, match=r"^option 'epochs' must be an integer, got 'two'$"):
        resolve_config({"batch_schedule": "8:1,16:1", "epochs": "two"})
    for off in ("", "none", None):  # no schedule: epochs as given
        assert resolve_config({"batch_schedule": off, "epochs": 3}).epochs == 3


def test_yaml_round_trip():
    config = TrainConfig(milestones=[1, 2], scheduler="multistep", mean=[0.5], std=[0.25],
                         model_kwargs={"pool": "avg"}, limit_train=10)
    again = TrainConfig.from_dict(yaml.safe_load(dump_yaml(config)))
    assert again == config
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_weight_decay_docs_say_what_it_means():
    import cnnbench.training.optim as module

    doc = module.__doc__
    for words in ("coupled", "decoupled", "adamw", "BatchNorm", "no_decay_bn_bias"):
        assert words in doc


def test_batch_schedule_stages_pinned():
    """Guards against miscounting stage boundaries (e.g. ``end = n`` for ``end += n``)."""
    config = TrainConfig(batch_schedule="32:2,128:3,256:1")
    assert config.epochs == 6
    assert [config.batch_size_at(e) for e in range(7)] == [32, 32, 128, 128, 128, 256, 256]
    assert parse_batch_schedule(" 1:1 , 2:5") == [(1, 1), (2, 5)]  # size 1 and spaces are fine
    for bad in ("0:3", "8:0", "8", "8:x", ""):
        with pytest.raises(UserError, match="batch_schedule"):
            parse_batch_schedule(bad)


def test_replace_resets_model_kwargs_only_for_another_model():
    config = TrainConfig(model="lenet5", model_kwargs={"pool": "avg"})
    assert config.replace(lr=0.1).model_kwargs == {"pool": "avg"}
    assert config.replace(model="lenet5").model_kwargs == {"pool": "avg"}
    assert config.replace(model="simple_cnn").model_kwargs == {}
    assert config.replace(model="simple_cnn", model_kwargs={"activation": "tanh"}).model_kwargs == {
        "activation": "tanh"}
    with pytest.raises(UserError, match=r"replace\(\): unknown option 'lrr'"):
        config.replace(lrr=0.1)


def test_wrong_types_name_the_type_and_the_source(tmp_path):
    for options, expected in (({"epochs": "many"}, "must be an integer"),
                              ({"lr": "fast"}, "must be a number"),
                              ({"nesterov": "maybe"}, "must be true/false"),
                              ({"model_kwargs": "[1, 2]"}, "must be a mapping"),
                              ({"milestones": {"a": 1}}, "must be a list of integers"),
                              ({"milestones": "2,b"}, "'milestones' must be an integer, got 'b'"),
                              ({"resize": "big"}, "must be an integer or null"),
                              ({"mean": {"a": 1}}, "must be a list of numbers or null"),
                              ({"model": 5}, "'model' must be a string, got 5")):
        with pytest.raises(UserError, match=expected):
            TrainConfig.from_dict(options)
    with pytest.raises(UserError, match=r"^run.yaml: unknown option 'lrr'"):
        TrainConfig.from_dict({"lrr": 1}, "run.yaml")


def test_config_file_errors_name_the_line_and_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nepochs: 3\nmodel: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml is not valid YAML \(line \d\)") as info:
        resolve_config(config_file=bad)
    assert int(re.search(r"line (\d)", str(info.value)).group(1)) in (3, 4)  # where YAML noticed
    typo = tmp_path / "typo.yaml"
    typo.write_text("lrr: 0.1\n")
    with pytest.raises(UserError, match=r"config file .*typo.yaml: unknown option 'lrr'"):
        resolve_config(config_file=typo)


def test_config_yaml_lists_the_options_in_field_order():
    from cnnbench.config import FIELDS

    dumped = yaml.safe_load(dump_yaml(TrainConfig()))
    assert list(dumped) == list(FIELDS)


def test_resolution_details_pinned(tmp_path, monkeypatch):
    """Small rules of resolve_config that a reader relies on (each found by a mutant that the
    suite let through): the file's dataset picks a recipe's per-dataset values; model_kwargs
    survive another spelling of the same model in a higher layer; "" means no recipe; an
    unknown augmentation fails at resolution; an unknown option names where it came from."""
    monkeypatch.setitem(recipes.RECIPES, "probe", recipes.Recipe(
        "probe", "test recipe", "for resolution details", defaults={"epochs": 7},
        per_dataset={"mnist": {"momentum": 0.5}, "fashion_mnist": {"momentum": 0.6}}))
    config_file = tmp_path / "c.yaml"
    config_file.write_text("dataset: Fashion-MNIST\nmodel: LeNet\n")
    config = resolve_config({"recipe": "probe"}, config_file=config_file)
    assert (config.dataset, config.momentum) == ("fashion_mnist", 0.6)
    assert resolve_config({}, config_file=config_file).model_kwargs == {"activation": "relu", "pool": "max"}
    assert resolve_config({"model": "lenet5"}, config_file=config_file).model_kwargs == {
        "activation": "relu", "pool": "max"}
    monkeypatch.setitem(recipes.RECIPES, "cnn", recipes.Recipe(
        "cnn", "test recipe", "another model", defaults={"model": "simple_cnn",
                                                           "model_kwargs": {"activation": "tanh"}}))
    other = tmp_path / "other.yaml"
    other.write_text("model: Simple-CNN\n")  # the recipe's model, spelled otherwise
    assert resolve_config({"recipe": "cnn"}, config_file=other).model_kwargs == {"activation": "tanh"}
    assert resolve_config({"recipe": ""}) == resolve_config({}, default_recipe=None)
    # a recipe's own dataset (no flag, no file naming one) is the run's, canonicalised
    monkeypatch.setitem(recipes.RECIPES, "fm", recipes.Recipe(
        "fm", "test recipe", "its own dataset", defaults={"dataset": "Fashion-MNIST"}))
    assert resolve_config({"recipe": "fm"}).dataset == "fashion_mnist"
    with pytest.raises(UserError, match="unknown augmentation 'flop'"):
        resolve_config({"augment": "crop+flop"})
    with pytest.raises(UserError, match=r"^options: unknown option 'lrr'"):
        resolve_config({"lrr": 0.1})


def test_every_option_says_whether_it_is_part_of_the_recipe():
    """One home for "is it the recipe?": every TrainConfig field names a role, and resume, the
    report's departures and its seed groups read the sets derived from them. A new field
    without a role (or with an unknown one) fails here."""
    import dataclasses

    from cnnbench.config import NOT_RECIPE, PER_SEED, RESUMABLE_CHANGES, ROLES

    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("role") not in ROLES]
    assert missing == []
    assert {"lr", "epochs", "model", "dataset", "augment", "amp"}.isdisjoint(NOT_RECIPE)
    assert {"seed", "out", "device", "num_threads", "monitor_test"} <= NOT_RECIPE
    assert RESUMABLE_CHANGES < NOT_RECIPE and "seed" not in RESUMABLE_CHANGES
    assert {"seed", "init", "out", "name"} <= PER_SEED and "lr" not in PER_SEED
    from cnnbench.report import departures
    from cnnbench.training import rundir
    assert departures.NOT_RECIPE is NOT_RECIPE and rundir.RESUMABLE_CHANGES is RESUMABLE_CHANGES


def test_a_model_name_that_is_no_model_is_not_the_same_model():
    from cnnbench.config.resolve import _same_model

    assert _same_model("lenet5", " lenet5 ") and not _same_model("lenet5", "resnet18")
    assert not _same_model("lenet5", "no_such_model")  # unknown: never the same


def test_a_yaml_error_without_a_position_is_still_one_line(tmp_path, monkeypatch):
    from cnnbench.config import resolve as resolve_module

    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\n")

    def broken(text):
        raise yaml.YAMLError("something odd")  # no problem_mark, as yaml's base error

    monkeypatch.setattr(resolve_module.yaml, "safe_load", broken)
    with pytest.raises(UserError, match=r"is not valid YAML; write it as option: value lines"):
        resolve_module.read_config_file(config)
