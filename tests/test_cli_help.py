"""Help written for users: every command's ``--help`` has a whole description wrapped to the
terminal and an ``examples:`` epilog; ``recipes NAME`` wraps its text; ``completion bash|zsh``
prints a script the shell accepts and that completes commands, options and names."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from cnnbench.cli import COMMANDS, build_parser, main
from cnnbench.commands import MAX_WIDTH
from cnnbench.commands.completion import walk


PARSERS = {path: parser for path, parser in walk(build_parser()) if path}


def _help(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_command_and_action_is_checked():
    assert set(COMMANDS) <= set(PARSERS)
    assert {"study list", "study show", "study run"} <= set(PARSERS)


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_command_help_has_a_whole_wrapped_description_and_examples(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    description = PARSERS[path].description
    assert description and description.rstrip().endswith("."), description  # not cut off
    out = _help(capsys, path.split())
    # usage, then the description: all of it, wrapped to the terminal (60 columns - 2)
    shown = out.split("\n\n")[1]
    assert _words(shown) == _words(description.replace("``", "`"))
    assert max(len(line) for line in shown.splitlines()) <= 58, shown
    assert "\nexamples:\n" in out, out
    examples = out.split("\nexamples:\n", 1)[1].splitlines()
    examples = [line for line in examples if line.startswith("  ")]
    assert 1 <= len(examples) <= 3 and all("cnnbench " in line for line in examples), out
    if path != "completion":
        assert all(line.startswith(f"  cnnbench {path.split()[0]}") or "cnnbench train" in line
                   for line in examples), examples


@pytest.mark.parametrize("path", ["", "train", "study run", "completion"])
def test_help_is_at_most_max_width_on_a_wide_terminal(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    out = _help(capsys, path.split())
    assert max(len(line) for line in out.splitlines()) <= MAX_WIDTH


def test_top_level_help_speaks_to_users(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = _help(capsys, [])
    for developer_word in ("library", "hands", "argparse", "Namespace"):
        assert developer_word not in out
    assert "trains, evaluates and compares" in out
    for name in COMMANDS:  # one line each: the name, then its help on the same line
        assert re.search(rf"^    {name} +\S", out, re.M), (name, out)
    lines = out.split("\nexamples:\n", 1)[1].splitlines()
    assert "  cnnbench train" in " ".join(lines)
    assert any("cnnbench report " in line for line in lines)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("cnnbench ")


def test_recipe_text_is_wrapped_to_the_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["recipes", "fast"]) == 0
    wide = capsys.readouterr().out
    assert max(len(line) for line in wide.splitlines()) <= 100
    assert "\nsettings for mnist:\n  model: lenet5\n" in wide  # settings: one per line, as before
    assert "airbench (Jordan 2024, arXiv 2404.00498)" in _words(wide)  # nothing lost

    monkeypatch.setenv("COLUMNS", "60")
    assert main(["recipes", "fast"]) == 0
    narrow = capsys.readouterr().out
    text = narrow.split("\n\nsettings")[0]
    assert max(len(line) for line in text.splitlines()) <= 60
    assert _words(text) == _words(wide.split("\n\nsettings")[0])


@pytest.fixture(scope="module")
def bash_script() -> str:
    from cnnbench.commands.completion import script

    return script(build_parser(), "bash")


def test_completion_script_names_commands_and_values(capsys, bash_script):
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == bash_script.strip()
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", out), name
    for word in ("resnet18", "lenet5", "mnist", "cifar10_jpeg", "fast", "mnist-five", "--batch-size",
                 "--optimizer", "sgd adagrad adam adamw rmsprop", "complete -o default -F _cnnbench cnnbench"):
        assert word in out, word
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and "_cnnbench()" in zsh


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_accepts_and_runs_the_completion_script(tmp_path, bash_script):
    path = tmp_path / "cnnbench.bash"
    path.write_text(bash_script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    cases = {  # words typed (the last one being completed) -> completions
        "cnnbench st": "study",
        "cnnbench train --mod": "--model --model-kwargs",
        "cnnbench train --model resnet1": "resnet18 resnet18_five resnet18_tricks resnet101 resnet152",
        "cnnbench train --epochs 3 --dataset=cifar": "cifar10 cifar100 cifar10_jpeg",
        "cnnbench train --recipe ": "default fast fast-long none",
        "cnnbench models --summary lenet": "lenet5 lenet5_classics lenet5_five",
        "cnnbench study ": "list show run",
        "cnnbench study run mnist-f": "mnist-five",
        "cnnbench study run mnist-five --profile ": "quick cpu full",
        "cnnbench datasets fash": "fashion_mnist",
        "cnnbench recipes f": "fast fast-long",
        "cnnbench completion ": "bash zsh",
        "cnnbench pre": "predict",
        "cnnbench export --format ": "onnx torchscript",
        "cnnbench serve --": "--help --runs --host --port --max-upload-mb --device",
        "cnnbench train --out ": "",  # a path: the shell's own file completion
    }
    lines = [f"source {path}"]
    for typed in cases:
        # as bash splits them: at spaces and at '=' (a word of its own); a trailing space
        # leaves an empty last word
        words = " ".join(f"'{w}'" for w in re.split(r"(=)| ", typed) if w is not None)
        lines.append(f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); "
                     f"COMPREPLY=(); _cnnbench; echo \"${{COMPREPLY[*]}}\"")
    run = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert dict(zip(cases, run.stdout.splitlines())) == cases
