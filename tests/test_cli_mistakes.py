"""Every mistyped option, command or YAML key gets "did you mean" (issue #30)."""

from __future__ import annotations

import pytest

from cnnbench.cli import main
from cnnbench.errors import UserError, did_you_mean


@pytest.mark.parametrize("argv, hint", [
    (["train", "--epochz", "1"], "did you mean --epochs?"),
    (["train", "--modle", "lenet5"], "did you mean --model?"),
    (["train", "--learning-rate", "0.01"], "did you mean --lr?"),
    (["train", "--wd=0.1", "--bacth-size", "8"], "did you mean --weight-decay for --wd, --batch-size for --bacth-size?"),
    (["models", "--patern", "x"], "did you mean --pattern?"),
    (["trian"], "did you mean 'train'?"),
    (["train", "--optimizer", "sdg"], "did you mean 'sgd'?"),
    (["study", "shw", "mnist-five"], "did you mean 'show'?"),
])
def test_a_mistyped_word_gets_the_one_meant(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and hint in err, err
    command = "cnnbench train" if argv[0] == "train" else "cnnbench"
    assert err.startswith(f"{command}") and "(see `" in err


def test_nonsense_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--zzzzqqq", "1"])
    assert "did you mean" not in capsys.readouterr().err
    assert did_you_mean("qqqq", ["lr", "epochs"]) is None


def test_a_mistyped_yaml_key_gets_the_one_meant_not_every_option(tmp_path):
    from cnnbench.config.resolve import resolve_config

    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.01\n")
    with pytest.raises(UserError) as info:
        resolve_config({}, config_file=config)
    message = str(info.value)
    assert "unknown option 'learning_rate'; did you mean 'lr'?" in message
    assert "weight_decay" not in message  # no list of ~70 names
    config.write_text("nonsense_key: 1\n")
    with pytest.raises(UserError, match="cnnbench train --help"):
        resolve_config({}, config_file=config)
