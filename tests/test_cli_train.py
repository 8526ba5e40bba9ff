"""`cnnbench train` / `eval` / `recipes` from the command line: every bad input is one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from cnnbench.cli import main
from engine_fixtures import (_tiny_folder_files, cli_command, cli_env, read_jsonl,  # noqa: F401
                             tiny_folder)


def quick_flags(tiny, out) -> list[str]:
    return ["--dataset", tiny.dataset, "--epochs", "1", "--batch-size", "16", "--val-split",
            "0.25", "--device", "cpu", "--num-threads", "1", "--quiet", "--out", str(out)]


def one_line_error(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_train_then_eval_reproduces_the_summary(tiny_folder, capsys):
    out = tiny_folder.out / "cli"
    assert main(["train", *quick_flags(tiny_folder, out), "--batch_size", "8", "--epoch", "2",
                 "--reg", "0.001", "--model", "LeNet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "lenet5" and summary["epochs"] == 2
    assert [m["batch_size"] for m in read_jsonl(out / "metrics.jsonl")] == [8, 8]
    assert main(["eval", "--checkpoint", str(out / "best.ckpt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc"] == summary["test_acc"] and result["loss"] == summary["test_loss"]
    assert main(["eval", "--checkpoint", str(out), "--split", "val"]) == 0  # a run dir works too
    assert f"{100 * summary['best_val_acc']:.2f}%" in capsys.readouterr().out


def test_config_file_and_flags(tiny_folder, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"dataset: {tiny_folder.dataset}\nepochs: 1\nbatch_size: 16\nlr: 2e-3\n"
                      f"device: cpu\nval_split: 0.25\n")
    out = tiny_folder.out / "from-file"
    assert main(["train", "--config", str(config), "--lr", "0.001", "--quiet", "--out",
                 str(out)]) == 0
    saved = (out / "config.yaml").read_text()
    assert "lr: 0.001" in saved and "batch_size: 16" in saved


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-0.1"], "learning rate must be > 0"),
    (["--batch-size", "0"], "batch size must be >= 1"),
    (["--model", "resnet9000"], "resnet9000"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--optimizer", "lbfgs"], "invalid choice"),
    (["--scheduler", "exponential"], "invalid choice"),
    (["--config", "/nonexistent/run.yaml"], "cannot read config file"),
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--epochs", "two"], "epochs"),
    (["--model-kwargs", "{depth: 3}"], "has no option depth"),
    (["--resume", "/nonexistent/run"], "/nonexistent/run does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_folder, capsys, flags, message):
    out = tiny_folder.out / "bad"
    argv = ["train", "--dataset", tiny_folder.dataset, "--device", "cpu", "--epochs", "1",
            "--quiet", *flags]
    if "--resume" not in flags:
        argv += ["--out", str(out)]
    assert message in one_line_error(capsys, argv)
    assert not out.exists()  # a bad input leaves no run directory behind


def test_bad_config_file_keys(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert "unknown option 'learning_rate'" in one_line_error(capsys, ["train", "--config", str(config)])
    config.write_text("lr: [0.1\n")
    assert "not valid YAML" in one_line_error(capsys, ["train", "--config", str(config)])


def test_resume_refuses_changed_options(tiny_folder, capsys):
    out = tiny_folder.out / "r"
    assert main(["train", *quick_flags(tiny_folder, out)]) == 0
    capsys.readouterr()
    line = one_line_error(capsys, ["train", "--resume", str(out), "--lr", "0.5"])
    assert "options differ: lr" in line
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # finished: nothing to do
    assert "already finished (test accuracy" in capsys.readouterr().out
    (out / "empty").mkdir()
    assert "holds no run to resume" in one_line_error(capsys, ["train", "--resume", str(out / "empty")])


def test_progress_shows_percent_and_one_final_line(tiny_folder, capsys):
    out = tiny_folder.out / "loud"
    flags = [f for f in quick_flags(tiny_folder, out) if f != "--quiet"]
    assert main(["train", *flags, "--log-every", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the run's own last line (stderr) is the only final line
    assert captured.err.count("test accuracy") == 1
    assert re.search(r"epoch 1/1: train loss [\d.]+ acc [\d.]+%", captured.err)


def test_eval_of_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "best.ckpt"
    bad.write_bytes(b"\x00garbage")
    assert "corrupt" in one_line_error(capsys, ["eval", "--checkpoint", str(bad)])
    assert "does not exist" in one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "x")])


def test_recipes_command(capsys):
    assert main(["recipes"]) == 0
    assert "default" in capsys.readouterr().out
    assert main(["recipes", "default"]) == 0
    shown = capsys.readouterr().out
    assert "lenet5" in shown and "onecycle" in shown
    assert "unknown recipe" in one_line_error(capsys, ["recipes", "nope"])


@pytest.mark.slow(seconds=2)  # started first, so that two workers end together
def test_real_entry_point_prints_no_traceback(tiny_folder):
    done = subprocess.run(cli_command("train", "--lr", "-1"), env=cli_env(tiny_folder),
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cnnbench: error: learning rate must be > 0, got -1.0"]


def test_output_piped_into_head_ends_quietly():
    import subprocess
    import sys

    done = subprocess.run(f"{sys.executable} -m cnnbench recipes default | head -1", shell=True,
                          capture_output=True, text=True)
    assert done.stdout.strip() and "Traceback" not in done.stderr and "Error" not in done.stderr


def _readme_commands() -> list[list[str]]:
    """Every `cnnbench ...` (and `./run.sh ...`, the same) line of the README's shell blocks,
    and the `cnnbench` part of every `torchrun ... -m cnnbench ...` line (continuations joined,
    comments and the `...` placeholder left out), as argument lists."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("torchrun ") and " -m cnnbench " in line:
                line = "cnnbench " + line.split(" -m cnnbench ", 1)[1]
            if line.startswith(("cnnbench ", "./run.sh ")) and "..." not in line:
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_readmes_commands_are_valid():
    """The README's examples still parse (a renamed or removed flag fails here), and `train`
    examples resolve to a config (their options and names exist)."""
    from cnnbench.cli import build_parser
    from cnnbench.config.resolve import config_from_args

    commands = _readme_commands()
    assert len(commands) >= 12
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        if argv[0] == "train" and not args.resume and not getattr(args, "config", None):
            config_from_args(args)


def _stop_in_epoch(monkeypatch, epoch, how="ctrl-c"):
    """Ctrl-C (or SIGTERM sent to this process) as epoch ``epoch`` starts its steps."""
    import os
    import signal

    from cnnbench.training import loop

    real = loop.train_epoch

    def train_epoch(t, e, **kw):
        if e + 1 == epoch:  # train_epoch counts from 0
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here
            raise KeyboardInterrupt
        return real(t, e, **kw)

    monkeypatch.setattr(loop, "train_epoch", train_epoch)


def test_ctrl_c_says_where_the_run_stands_and_the_command_that_continues_it(tiny_folder, capsys, monkeypatch):
    out = tiny_folder.out / "stopped"
    _stop_in_epoch(monkeypatch, 2)
    assert main(["train", *quick_flags(tiny_folder, out), "--epochs", "3"]) == 130
    said = (f"interrupted in epoch 2; `cnnbench train --resume {out}` continues from the end of "
            f"epoch 1 (last.ckpt), starting epoch 2 again")
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"cnnbench: {said}"
    assert (out / "error.txt").read_text() == said + "\n"
    log = (out / "train.log").read_text().splitlines()
    assert "cnnbench: " in log[0] and f"3 epochs -> {out}" in log[0]
    assert log[-1].endswith(said) and any("epoch 1/3" in line for line in log)
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    log = (out / "train.log").read_text()
    assert "resuming after epoch 1 of 3" in log and "test accuracy" in log.splitlines()[-1]


def test_ctrl_c_in_the_first_epoch_and_sigterm_say_so(tiny_folder, capsys, monkeypatch):
    out = tiny_folder.out / "early"
    _stop_in_epoch(monkeypatch, 1)
    assert main(["train", *quick_flags(tiny_folder, out), "--epochs", "3"]) == 130
    assert capsys.readouterr().err.strip().endswith(
        f"interrupted in epoch 1, before its end (no checkpoint yet); `cnnbench train --resume "
        f"{out}` starts the run again from epoch 1")
    monkeypatch.undo()
    _stop_in_epoch(monkeypatch, 2, how="sigterm")
    assert main(["train", "--resume", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"{out}: no epoch had finished (no last.ckpt), so the run starts again from epoch 1" in err
    assert err.strip().splitlines()[-1].startswith("cnnbench: terminated (SIGTERM) in epoch 2; ")
    import signal
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back after the run


def test_ctrl_c_after_the_last_epoch_says_resume_tests_the_weights(tiny_folder, capsys, monkeypatch):
    from cnnbench.training.record import Recorder

    out = tiny_folder.out / "tested-later"

    def load(self, name):
        raise KeyboardInterrupt  # as the test set's evaluation starts

    monkeypatch.setattr(Recorder, "load", load)
    assert main(["train", *quick_flags(tiny_folder, out), "--epochs", "2"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"cnnbench: interrupted after the last epoch; `cnnbench train --resume {out}` tests the "
        f"trained weights")
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2
    assert summary["test_acc"] is not None


def test_train_and_recipes_print_json_on_stdout_alone(tiny_folder, capsys):
    out = tiny_folder.out / "json"
    assert main(["train", *quick_flags(tiny_folder, out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # nothing but the JSON
    assert printed == json.loads((out / "summary.json").read_text())
    assert printed["status"] == "finished" and printed["epochs_completed"] == 1
    assert main(["train", "--resume", str(out), "--json"]) == 0  # finished: the summary again
    assert json.loads(capsys.readouterr().out) == printed

    assert main(["recipes", "--json"]) == 0
    recipes = {r["name"]: r for r in json.loads(capsys.readouterr().out)["recipes"]}
    assert {"default", "fast"} <= set(recipes) and recipes["default"]["defaults"]["model"] == "lenet5"
    assert main(["recipes", "fast", "--json"]) == 0
    [fast] = json.loads(capsys.readouterr().out)["recipes"]
    assert fast == recipes["fast"] and "cifar10" in fast["per_dataset"]
