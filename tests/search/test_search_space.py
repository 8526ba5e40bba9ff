"""cnnbench.search.space: ranges and choices from YAML, every mistake one line."""

from __future__ import annotations

import pytest

from cnnbench.errors import UserError
from cnnbench.search.space import load_space, parse_space


def test_ranges_choices_and_aliases():
    space = parse_space({"lr": {"low": 1e-4, "high": 0.1, "log": True},
                         "epochs": {"low": 2, "high": 8, "step": 2},
                         "batch-size": [64, 128], "optimizer": ["sgd", "adam"]})
    by_name = {p.name: p for p in space}
    assert set(by_name) == {"lr", "epochs", "batch_size", "optimizer"}  # - and _ alike
    assert (by_name["lr"].kind, by_name["lr"].log) == ("float", True)
    assert (by_name["epochs"].kind, by_name["epochs"].step) == ("int", 2)
    assert by_name["batch_size"].choices == (64, 128)
    assert by_name["lr"].describe() == "lr: 0.0001 .. 0.1 (log)"


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr: {low: 1e-4, high: 1e-1, log: true}\n")  # YAML reads 1e-4 as text
    (lr,) = load_space(path)
    assert (lr.low, lr.high, lr.kind) == (1e-4, 0.1, "float")


@pytest.mark.parametrize("space, message", [
    ({"learning_rate": [0.1]}, "did you mean 'lr'"),
    ({"lr": {"low": 0.1, "high": 0.01}}, "needs low < high"),
    ({"lr": {"low": 0, "high": 0.1, "log": True}}, "low must be > 0"),
    ({"lr": {"low": 0.1}}, "needs low and high"),
    ({"lr": {"low": 0.01, "high": 0.1, "scale": "log"}}, "unknown key(s) scale"),
    ({"lr": {"low": 0.01, "high": 0.1, "step": 1}}, "step is for integer ranges"),
    ({"batch_size": []}, "lists no choices"),
    ({"batch_size": [64, 64]}, "lists a choice twice"),
    ({"lr": 0.1}, "must be a range"),
    ({"seed": [0, 1]}, "seed is not a hyper-parameter"),
    ({}, "at least one option"),
])
def test_mistakes_are_one_line(space, message):
    with pytest.raises(UserError) as err:
        parse_space(space)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_not_yaml_or_missing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(bad)
    with pytest.raises(UserError, match="cannot read search space"):
        load_space(tmp_path / "none.yaml")
