"""Training in several processes (torchrun, DistributedDataParallel, gloo on the CPU).

In-process: the sharded loader's global batches are the one-process batches, augmentation
included; evaluation blocks cover a split once; the options a distributed run refuses; how a
failure is reported. With real ``torchrun`` subprocesses of 2 processes on the tiny image
folders: a study run with ``--nproc 2`` ends with the weights of one process on the same
global batches (within :data:`WEIGHT_ATOL`) and evaluates exactly as one process does; a run
killed mid-epoch and resumed ends bit-identical to one left alone, and its processes validated
the very model rank 0 saved (BatchNorm statistics averaged); a failing process ends the job
with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.data import TensorLoader, shard_bounds
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training import distributed, evaluate_checkpoint, train_run
from cnnbench.training.setup import check_distributed
from cnnbench.training.distributed import ProcessFailed, defer_report, torchrun_command
from cnnbench.training.inputs import Inputs, make_loader
from engine_fixtures import (_tiny_folder_files, cli_env, quick_options, read_jsonl,  # noqa: F401
                             tiny_folder)

# Largest difference allowed between the weights of a 2-process run and a 1-process run on the
# same global batches (SGD, 16 steps): the gradients agree up to the order of float32 sums
# (measured here: at most 3e-8); 1e-6 leaves a factor of 30 for other CPUs. An adaptive
# optimizer magnifies these differences where a gradient is near zero (AdamW: 9e-6 here).
WEIGHT_ATOL = 1e-6


# -- in-process ------------------------------------------------------------------------------

def _images(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
            torch.arange(n) % 10)


@pytest.mark.parametrize("n, batch, world", [(43, 8, 2), (43, 9, 3), (40, 8, 2)])
def test_sharded_batches_are_the_one_process_batches(n, batch, world):
    x, y = _images(n)
    kw = dict(batch_size=batch, seed=5, mean=(0.5,) * 3, std=(0.25,) * 3,
              augment="crop+flip+translate+cutout")
    single = TensorLoader(x, y, **kw)
    shards = [TensorLoader(x, y, rank=r, world_size=world, **kw) for r in range(world)]
    for epoch in (0, 1):
        for loader in (single, *shards):
            loader.set_epoch(epoch)
        expected = list(single)
        parts = list(zip(*(list(s) for s in shards)))  # step k: every process's block
        assert len(parts) == len(expected) == len(shards[0])
        assert shards[0].global_batch_sizes() == [len(b[1]) for b in expected]
        for (xb, yb), blocks in zip(expected, parts):
            sizes = [len(b[1]) for b in blocks]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
            assert torch.equal(torch.cat([b[1] for b in blocks]), yb)
            assert torch.equal(torch.cat([b[0] for b in blocks]), xb)  # same augmentation


def test_a_last_batch_smaller_than_the_processes_is_dropped():
    x, y = _images(41)  # 5 batches of 8, then 1 image for 2 processes
    shard = TensorLoader(x, y, batch_size=8, rank=1, world_size=2)
    assert len(TensorLoader(x, y, batch_size=8)) == 6
    assert len(shard) == 5 and shard.global_batch_sizes() == [8] * 5
    assert sum(len(b) for _, b in shard) == 20


def test_evaluation_blocks_cover_the_split_once():
    x, y = _images(11)
    inputs = Inputs(spec=None, train=(x, y), val=None, test=(x, y), mean=(0.5,) * 3,
                       std=(0.25,) * 3, input_size=(8, 8))
    config = TrainConfig(eval_batch_size=4)
    full = torch.cat([b for _, b in make_loader(config, inputs, "test", torch.device("cpu"))])
    blocks = [torch.cat([b for _, b in make_loader(config, inputs, "test", torch.device("cpu"),
                                                   dist=SimpleNamespace(rank=r, world_size=3))])
              for r in range(3)]
    assert [len(b) for b in blocks] == [4, 4, 3]
    assert torch.equal(torch.cat(blocks), full)
    assert [shard_bounds(11, r, 3) for r in range(3)] == [(0, 4), (4, 8), (8, 11)]


def test_options_a_distributed_run_refuses():
    three_cpus = SimpleNamespace(world_size=3, device=torch.device("cpu"))
    with pytest.raises(UserError, match=r"batch size 128 is the global batch of all 3 processes "
                                        r"and must be divisible by 3; use e.g. --batch-size 129"):
        check_distributed(TrainConfig(batch_size=128), three_cpus)
    with pytest.raises(UserError, match="batch size 10 .* --batch-size 9"):
        check_distributed(TrainConfig(batch_schedule="12:1,10:1"), three_cpus)
    with pytest.raises(UserError, match="--sync-bn needs GPUs"):
        check_distributed(TrainConfig(batch_size=12, sync_bn=True), three_cpus)
    check_distributed(TrainConfig(batch_size=12), three_cpus)
    three_gpus = SimpleNamespace(world_size=3, device=torch.device("cuda", 0))
    check_distributed(TrainConfig(batch_size=12, sync_bn=True), three_gpus)  # GPUs: allowed


def test_failures_are_reported_once(monkeypatch):
    slept = []
    monkeypatch.setattr(distributed.time, "sleep", slept.append)
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    error = UserError("no such file")
    defer_report(error, env)  # not rank 0: waits for rank 0 to say it, then names itself
    assert slept == [distributed.GRACE_S] and str(error) == "process 1 of 2: no such file"
    defer_report(UserError("x"), {**env, "RANK": "0"})  # rank 0 says it at once
    defer_report(ProcessFailed("process 0 of 2 stopped", lost_peer=True), {**env, "RANK": "0"})
    assert slept == [distributed.GRACE_S, 2 * distributed.GRACE_S]  # the failed one speaks first
    defer_report(UserError("y"), {})  # not under torchrun: nothing to wait for
    assert len(slept) == 2
    assert distributed.torchrun_launch({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process


@pytest.fixture
def group_of_one(tmp_path, monkeypatch):
    """``distributed.setup`` joining a real gloo process group of one process (this one), as a
    torchrun job would: a run takes every process-group path (DistributedDataParallel, sharded
    loaders and evaluation, collectives, rank 0 writing) in the test's own process. Returns the
    list of the groups it made."""
    from torch import distributed as torch_dist

    made = []

    def setup(device="auto", backend="auto"):
        torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}-{len(made)}",
                                      rank=0, world_size=1)
        made.append(distributed.Distributed(rank=0, world_size=1, local_rank=0, backend="gloo",
                                            device=torch.device("cpu")))
        return made[-1]

    monkeypatch.setattr(distributed, "setup", setup)
    yield made
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def _group_config(tiny) -> TrainConfig:
    from cnnbench.config.resolve import resolve_config

    return resolve_config(quick_options(tiny, epochs=2, limit_train=48, model="simple_cnn",
                                        augment="flip", ema=0.9, whiten_init=True, resize=16,
                                        dropout=0.3))


def test_a_run_in_a_process_group_of_one_is_the_one_process_run(tiny_folder, group_of_one,
                                                                 monkeypatch, capsys):
    """Through the process-group paths with one process, a run is bit for bit the run without
    them: the same weights, metrics and test results, written once, and says it ran in a group."""
    from cnnbench.training import setup

    config = _group_config(tiny_folder).replace(num_threads=0)  # threads: the machine's choice
    matched = []
    monkeypatch.setattr(setup, "match_threads_to_load", lambda: matched.append(1))
    grouped = train_run(config, out_dir=tiny_folder.out / "group", progress=True)
    assert len(group_of_one) == 1 and not torch.distributed.is_initialized()  # closed at the end
    assert matched == []  # torchrun gives each process its threads: none matched to the load
    assert grouped["processes"] == 1 and grouped["dist_backend"] == "gloo"
    assert "cnnbench: simple_cnn" in capsys.readouterr().err  # rank 0 speaks
    monkeypatch.setattr(distributed, "setup", lambda *args: None)  # no group, as outside torchrun
    alone = train_run(config, out_dir=tiny_folder.out / "alone", progress=False)
    assert alone["dist_backend"] is None and matched == [1]
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix",
                "steps", "images_seen", "temperature"):
        assert grouped[key] == alone[key], key
    a = ckpt.load_checkpoint(tiny_folder.out / "group" / "last.ckpt")
    b = ckpt.load_checkpoint(tiny_folder.out / "alone" / "last.ckpt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    (own,) = a["training"]["rng_ranks"]  # each process's generators: here the one's
    assert torch.equal(own["torch"], a["training"]["rng"]["torch"]) and "rng_ranks" not in b["training"]
    volatile = {"epoch_time_s", "train_images_per_s"}
    metrics = [[{k: v for k, v in m.items() if k not in volatile}
                for m in read_jsonl(tiny_folder.out / name / "metrics.jsonl")]
               for name in ("group", "alone")]
    assert metrics[0] == metrics[1]


def test_a_process_group_run_reports_an_unexpected_error_as_its_process_in_one_line(
        tiny_folder, group_of_one, monkeypatch):
    """In a process group an unexpected error becomes ProcessFailed naming the process and the
    traceback file; a UserError stays itself; a pruned search refuses a group."""
    from cnnbench.training import loop

    config = _group_config(tiny_folder)
    with pytest.raises(UserError, match="a pruned search trains each trial in one process"):
        train_run(config, out_dir=tiny_folder.out / "pruned", progress=False,
                  on_epoch=lambda logged: False)

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(loop, "train_one_epoch", broken)
    out = tiny_folder.out / "broken"
    with pytest.raises(ProcessFailed) as failed:
        train_run(config, out_dir=out, progress=False)
    assert str(failed.value) == f"process 0 of 1 failed: RuntimeError: boom; traceback in {out / 'error.txt'}"
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert "second line" in (out / "error.txt").read_text()

    def mistaken(*args, **kwargs):
        raise UserError("a user's mistake")

    monkeypatch.setattr(loop, "train_one_epoch", mistaken)
    with pytest.raises(UserError) as said:
        train_run(config, out_dir=tiny_folder.out / "mistaken", progress=False)
    assert type(said.value) is UserError and str(said.value) == "a user's mistake"
    assert not torch.distributed.is_initialized()


# -- real torchrun jobs of 2 processes -------------------------------------------------------

def _torchrun(tiny, *args: str, script: str | None = None, **kw) -> subprocess.CompletedProcess:
    command = torchrun_command(2, args)
    if script is not None:  # a script in place of `-m cnnbench`
        command[command.index("-m", 3):command.index("-m", 3) + 2] = [script]
    return subprocess.run(command, env=cli_env(tiny), capture_output=True, text=True,
                          timeout=300, **kw)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cnnbench: error:")]


def test_a_process_of_a_job_ends_without_finalization(monkeypatch, capsys):
    """A torchrun process ends with os._exit after its output is flushed: Python's finalization
    can abort it while gloo's threads free the last collective's tensors (-6 after a finished
    run). A process that joined no job ends normally."""
    exits = []
    monkeypatch.setattr(distributed.os, "_exit", exits.append)
    distributed.end_process(0)
    assert exits == []  # no job: SystemExit as usual, atexit handlers run
    monkeypatch.setattr(distributed, "_joined", True)
    print("last line", end="")
    distributed.end_process(3)
    assert exits == [3] and capsys.readouterr().out == "last line"


def test_the_entry_point_ends_a_job_process_through_end_process(monkeypatch):
    import runpy

    ended = []
    monkeypatch.setattr(distributed, "end_process", ended.append)
    monkeypatch.setattr(sys, "argv", ["cnnbench", "models", "--pattern", "lenet5"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("cnnbench", run_name="__main__")
    assert ended == [0] and stop.value.code == 0


@pytest.mark.slow(seconds=7)  # started first, so that two workers end together
def test_study_in_two_processes_equals_one_process(tiny_folder, tmp_path, monkeypatch):
    options = dict(dataset=tiny_folder.dataset, model="lenet5", epochs=2, batch_size=16,
                   limit_train=119, limit_eval=39, val_split=0.25, augment="flip+translate",
                   optimizer="sgd", lr=0.05, scheduler="cosine", device="cpu",
                   deterministic=True, seed=3, log_every=2)
    study = tmp_path / "ddp.yaml"
    study.write_text(yaml.safe_dump({"name": "ddp", "description": "two processes",
                                     "report": "none", "defaults": options,
                                     "runs": [{"name": "lenet", "step": "baseline"}]}))
    out = tmp_path / "study"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the torchrun job's processes: one thread each
    # the study's driver runs in this process; it starts the torchrun job
    assert main(["study", "run", str(study), "--out", str(out), "--profile", "full",
                 "--nproc", "2", "--no-report", "--quiet"]) == 0
    run_dir = out / "lenet"
    # rank 0 alone wrote: one summary, one pair of checkpoints, one TensorBoard file
    files = sorted(p.name for p in run_dir.iterdir())
    assert len([f for f in files if f.startswith("events.")]) == 1
    assert [f for f in files if not f.startswith("events.")] == [
        "best.ckpt", "config.yaml", "last.ckpt", "metrics.jsonl", "misclassified.pt",
        "study.json", "summary.json", "test_predictions.json", "train.log", "train_steps.jsonl"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["processes"] == 2
    assert summary["dist_backend"] == "gloo" and summary["split"] == {"train": 119, "val": 39,
                                                                      "test": 39}

    # the same run in one process: the same global batches, so the same weights
    config = TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    alone = train_run(config.replace(out=None), out_dir=tmp_path / "alone", progress=False)
    a, b = ckpt.load_checkpoint(run_dir / "last.ckpt"), ckpt.load_checkpoint(tmp_path / "alone" / "last.ckpt")
    assert a["step"] == b["step"] == 2 * 8  # 119 images in 7 batches of 16 and one of 7
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=WEIGHT_ATOL)
    metrics_a, metrics_b = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(tmp_path / "alone" / "metrics.jsonl")
    for ma, mb in zip(metrics_a, metrics_b, strict=True):
        assert ma["images_seen"] == mb["images_seen"] and ma["val_acc"] == mb["val_acc"]
        assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-5)
    assert summary["test_acc"] == alone["test_acc"]

    # evaluation in 2 processes (39 test images: blocks of 20 and 19) is one process's
    again = evaluate_checkpoint(run_dir / "best.ckpt")
    assert again["n"] == 39 and summary["test_acc"] == again["acc"]
    assert summary["confusion_matrix"] == again["confusion_matrix"]
    assert summary["test_loss"] == pytest.approx(again["loss"], rel=1e-6)
    # calibration: the bins' sums all-reduced, the validation logits (for the temperature)
    # gathered from both processes
    assert summary["reliability"]["test"]["count"] == again["reliability"]["count"]
    assert sum(again["reliability"]["count"]) == 39
    assert summary["test_ece"] == pytest.approx(again["ece"], rel=1e-6, abs=1e-9)
    assert summary["test_brier"] == pytest.approx(again["brier"], rel=1e-6)
    assert summary["temperature"] == pytest.approx(alone["temperature"], rel=1e-4)
    assert summary["temperature"] == pytest.approx(again["scaled"]["temperature"], rel=1e-6)
    # every test image once, in test order: the targets are the one-process run's
    gathered = json.loads((run_dir / "test_predictions.json").read_text())
    one = json.loads((tmp_path / "alone" / "test_predictions.json").read_text())
    assert gathered["targets"] == one["targets"] and len(one["targets"]) == 39
    matrix = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(gathered["targets"], gathered["predictions"]):
        matrix[t, p] += 1
    assert matrix.tolist() == summary["confusion_matrix"]


def _resume_args(tiny, out) -> list[str]:
    # BatchNorm (averaged per epoch), dropout (one stream per process), augmentation, weight
    # average, whitening with a frozen filter (DDP's unused parameters) and an uneven split
    return ["train", "--dataset", tiny.long_dataset, "--model", "fastnet", "--model-kwargs",
            "{widths: [8, 16, 16]}", "--epochs", "3", "--batch-size", "8", "--val-split", "0.25",
            "--device", "cpu", "--deterministic", "--log-every", "1", "--dropout", "0.3",
            "--augment", "flip+translate", "--ema", "0.9", "--whiten-init",
            "--whiten-bias-epochs", "2", "--optimizer", "sgd", "--lr", "0.05", "--scheduler",
            "cosine", "--seed", "7", "--recipe", "none", "--quiet", "--out", str(out)]


STEPS_PER_EPOCH = 38  # 300 training images in global batches of 8


def _kill_job(pid: int) -> None:
    """SIGKILL torchrun's worker processes, then torchrun itself (a machine that dies)."""
    children = f"/proc/{pid}/task/{pid}/children"
    workers = open(children).read().split() if os.path.exists(children) else []
    for worker in [*map(int, workers), pid]:
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow(seconds=20)  # started first, so that two workers end together
def test_killed_mid_epoch_and_resumed_equals_left_alone(tiny_folder):
    alone, killed = tiny_folder.out / "alone", tiny_folder.out / "killed"
    # the whole job, torchrun and both processes (each in a session of its own), is killed
    # inside epoch 2
    job = subprocess.Popen(torchrun_command(2, _resume_args(tiny_folder, killed)),
                           env=cli_env(tiny_folder), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    steps, deadline = killed / "train_steps.jsonl", time.monotonic() + 300
    try:
        while time.monotonic() < deadline and job.poll() is None:
            if steps.exists() and len(steps.read_text().splitlines()) >= STEPS_PER_EPOCH + 10:
                break
            time.sleep(0.005)
    finally:
        _kill_job(job.pid)
        _, err = job.communicate()
    assert job.returncode == -signal.SIGKILL, err.decode()
    assert ckpt.load_checkpoint(killed / "last.ckpt")["epoch"] == 1, "the kill must land in epoch 2"
    assert not (killed / "summary.json").exists()

    done = _torchrun(tiny_folder, *_resume_args(tiny_folder, alone))
    assert done.returncode == 0, done.stderr
    resumed = _torchrun(tiny_folder, "train", "--resume", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr

    a, b = ckpt.load_checkpoint(alone / "last.ckpt"), ckpt.load_checkpoint(killed / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 3 * STEPS_PER_EPOCH
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["training"]["model"]:  # the live weights (those above: the weight average)
        assert torch.equal(a["training"]["model"][key], b["training"]["model"][key]), key
    assert len(a["training"]["rng_ranks"]) == 2
    volatile = {"epoch_time_s", "train_images_per_s"}
    assert ([{k: v for k, v in m.items() if k not in volatile} for m in read_jsonl(alone / "metrics.jsonl")]
            == [{k: v for k, v in m.items() if k not in volatile} for m in read_jsonl(killed / "metrics.jsonl")])
    assert read_jsonl(alone / "train_steps.jsonl") == read_jsonl(killed / "train_steps.jsonl")
    summary_a = json.loads((alone / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "confusion_matrix", "status"):
        assert summary_a[key] == summary_b[key], key

    # both processes validated the model rank 0 saved: their BatchNorm statistics (and those of
    # the weight average) were averaged before the evaluation, so one process reproduces it
    last_epoch = read_jsonl(alone / "metrics.jsonl")[-1]
    again = evaluate_checkpoint(alone / "last.ckpt", split="val")
    assert again["n"] == 100 and again["acc"] == last_epoch["val_acc"]
    assert again["loss"] == pytest.approx(last_epoch["val_loss"], rel=1e-6)


FAILING = """\
import os, sys
from cnnbench.training import distributed, loop as engine
distributed.GRACE_S = 1.5  # the test need not wait 3 s (rank 0, seeing rank 1 end, waits twice as long)
real, calls = engine.compute_loss, []
def failing(*args, **kwargs):  # process 1 fails in its third step
    calls.append(1)
    if len(calls) == 3 and os.environ["RANK"] == "1":
        raise RuntimeError("simulated failure")
    return real(*args, **kwargs)
engine.compute_loss = failing
from cnnbench.cli import main
sys.exit(main())
"""


@pytest.mark.slow(seconds=13)  # started first, so that two workers end together
def test_a_failing_process_ends_the_job_with_one_line(tiny_folder, tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(FAILING)
    out = tiny_folder.out / "failed"
    t0 = time.monotonic()
    done = _torchrun(tiny_folder, "train", "--dataset", tiny_folder.dataset, "--epochs", "1",
                     "--batch-size", "8", "--device", "cpu", "--quiet", "--out", str(out),
                     script=str(script))
    assert done.returncode != 0
    assert time.monotonic() - t0 < 120  # nobody waited for the failed process
    assert _errors(done.stderr) == [
        f"cnnbench: error: process 1 of 2 failed: RuntimeError: simulated failure; traceback "
        f"in {out / 'error-rank1.txt'}"], done.stderr
    assert "simulated failure" in (out / "error-rank1.txt").read_text()
    assert not (out / "last.ckpt").exists()

    # a mistake every process makes is said once, by rank 0
    done = _torchrun(tiny_folder, "train", "--dataset", tiny_folder.dataset, "--batch-size", "15",
                     "--device", "cpu", "--quiet", "--out", str(tiny_folder.out / "odd"))
    assert done.returncode != 0
    assert _errors(done.stderr) == [
        "cnnbench: error: batch size 15 is the global batch of all 2 processes and must be "
        "divisible by 2; use e.g. --batch-size 16"], done.stderr
