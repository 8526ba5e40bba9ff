"""The bookkeeping of a run in progress: its directory, summary, logs, TensorBoard and
checkpoints (:class:`Recorder`). The loop (:mod:`cnnbench.training.loop`) calls it at named
points and never writes a file itself.

Under torchrun every process holds a recorder; rank 0 (``main``) alone writes, and reads the
checkpoints the others need (``best.ckpt`` for the test, ``last.ckpt`` to resume) and
broadcasts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import traceback
from pathlib import Path
from typing import Any

import torch

from cnnbench.config import TrainConfig
from cnnbench.devices import cpu_bf16_speedup, cpu_name, device_name, native_bf16
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training import distributed
from cnnbench.training.calibration import calibration_fields, calibration_line
from cnnbench.training.console import Console
from cnnbench.training.inputs import check_same_data
from cnnbench.training.machine import git_commit, package_version
from cnnbench.training.rundir import (BEST, ERROR, LAST, METRICS, PREDICTIONS, STEPS, SUMMARY,
                                     TRAIN_LOG, append_jsonl, now, open_after_earlier_event_files,
                                     open_run_dir, read_summary, save_misclassified,
                                     truncate_jsonl, write_json)
from cnnbench.training.setup import Training
from cnnbench.version import __version__

class NonFiniteLoss(UserError):
    """The training loss became NaN or Inf; the run stops (its last good checkpoint stays)."""


def fresh_meta() -> dict[str, Any]:
    """What ``last.ckpt`` carries besides the training state: selection and time counters."""
    return {"best_val_acc": None, "best_epoch": None, "epochs_since_best": 0,
            "train_time_s": 0.0, "eval_time_s": 0.0, "images_seen": 0, "stopped_early": False,
            "max_epoch_test_acc": None, "max_epoch_test_epoch": None}


def interrupt_cause(exc: KeyboardInterrupt) -> str:
    """``"terminated (SIGTERM)"`` for the KeyboardInterrupt that
    :func:`cnnbench.commands.stop_on_sigterm` raises, else ``"interrupted"`` (Ctrl-C)."""
    return "terminated (SIGTERM)" if "SIGTERM" in str(exc) else "interrupted"


@dataclasses.dataclass
class Recorder:
    """Everything a run writes (rank 0) and the console lines it shows."""

    config: TrainConfig
    run_dir: Path
    console: Console
    argv: list[str]
    resume: bool
    dist: distributed.Distributed | None = None
    writer: Any = None
    summary: dict = dataclasses.field(default_factory=dict)
    input: dict = dataclasses.field(default_factory=dict)  # Inputs.preprocessing()
    amp: str = "off"  # the precision the run trains in (`auto` resolved), kept in its checkpoints
    last_good_epoch: int = 0                                # the epoch of the last checkpoint
    tracker: Any = None                                     # MLflowTracker with --track mlflow

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    def line(self, text: str | None) -> None:
        if text:
            self.console.line(text)

    # -- start ----------------------------------------------------------------------------
    def open(self, t: Training, started: str) -> None:
        """Create the run directory (``config.yaml``), start ``train.log``, say in one line what
        is about to happen, and make the summary so far."""
        self.input = t.data.preprocessing()
        self.amp = t.config.amp  # resolved: what `--amp auto` became for this run
        if self.main:
            open_run_dir(self.run_dir, self.config, fresh=not self.resume)
            self.console.keep_log(self.run_dir / TRAIN_LOG)
            self.console.line(self.header(t))
            self.summary = self._base_summary(t, started)
            if self.config.track is not None:  # TrainConfig reads "none" as None
                from cnnbench.training.tracking import MLflowTracker

                self.tracker = MLflowTracker(self.config.track, self.run_dir,
                                             self.summary["name"], self.resume)
                self.tracker.params(self.recipe_options())

    def header(self, t: Training) -> str:
        """What the run is about to do, before its first step: model, dataset and where its
        files are, the split, device, precision, threads, epochs and the run directory."""
        c, split = self.config, t.data.split
        amp = t.config.amp  # resolved: off, bf16 or fp16
        precision = "fp32" if amp == "off" else f"{amp} autocast"
        if c.amp == "auto" and t.device.type == "cpu" and native_bf16(t.device):
            precision += (f" (--amp auto: bf16 trains {cpu_bf16_speedup():.2f}x as fast as fp32 "
                          f"on this CPU, measured)")
        start = f"{c.epochs} epoch{'s' * (c.epochs != 1)}"
        if self.resume:  # the checkpoint is restored next; its summary says how far it got
            done = (read_summary(self.run_dir) or {}).get("epochs_completed")
            start = (f"resuming after epoch {done} of {c.epochs}" if done
                     else f"resuming from {LAST}, {c.epochs} epochs in all")
        threads = torch.get_num_threads()
        return (f"cnnbench: {c.model} ({t.params:,} parameters) on {c.dataset} from "
                f"{t.data.location or '?'} ({split['train']:,} train, {split['val']:,} val, "
                f"{split['test']:,} test images); {t.device}, {precision}, "
                f"{threads} thread{'s' * (threads != 1)}; {start} -> {self.run_dir}")

    def open_tensorboard(self, step: int) -> None:
        """TensorBoard's writer; on resume, the events the killed process logged after its last
        checkpoint (later steps) are dropped (the checkpointed step's own epoch scalars stay)."""
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            def open_writer():
                return SummaryWriter(log_dir=str(self.run_dir),
                                     purge_step=step + 1 if self.resume else None)

            self.writer = (open_after_earlier_event_files(self.run_dir, open_writer)
                           if self.resume else open_writer())

    def _base_summary(self, t: Training, started: str) -> dict[str, Any]:
        c, spec = self.config, t.spec
        summary = {
            "name": c.name or self.run_dir.name, "run_dir": str(self.run_dir), "model": c.model,
            "dataset": c.dataset, "stem": getattr(t.model, "stem", None),
            "params": t.params, "macs": t.macs,
            "flops": 2 * t.macs if t.macs is not None else None,
            "input_size": [spec.channels, *t.data.input_size],
            "seed": c.seed, "device": str(t.device), "device_name": device_name(t.device),
            "epochs": c.epochs, "epochs_completed": 0, "train_time_s": None, "eval_time_s": None,
            "train_images_per_s": None, "best_val_acc": None, "best_epoch": None,
            "test_acc": None, "test_loss": None, "per_class_test_acc": None,
            "confusion_matrix": None, "classes": list(spec.classes), "split": t.data.split,
            "data": t.data.fingerprint(),
            "limited": bool(c.limit_train or c.limit_eval), "limit_train": c.limit_train,
            "limit_eval": c.limit_eval, "recipe": c.recipe, "profile": c.profile, "tta": c.tta,
            "init": c.init, "pretrained": c.pretrained, "init_report": None,
            "freeze": c.freeze, "unfreeze_at": c.unfreeze_at, "head_lr": c.head_lr,
            "backbone_lr": c.backbone_lr, "amp": t.config.amp, "channels_last": c.channels_last,
            "compile": c.compile, "deterministic": c.deterministic,
            "processes": t.dist.world_size if t.dist else 1,
            "dist_backend": t.dist.backend if t.dist else None,
            "sync_bn": bool(t.dist and c.sync_bn),
            "torch_version": torch.__version__, "torchvision_version": package_version("torchvision"),
            "cnnbench_version": __version__, "git_commit": git_commit(),
            "command": " ".join(self.argv), "status": "running", "started_at": started,
            "finished_at": None, "hostname": socket.gethostname(), "cpu": cpu_name(),
            "num_threads": torch.get_num_threads(), "threads_note": t.threads_note,
        }
        if t.threads_note:
            self.console.line(f"cnnbench: {t.threads_note}")
        if t.init_report is not None:
            summary.update(init=t.init_report.source, init_report=t.init_report.to_dict())
            self.console.line(t.init_report.text())
        elif self.resume:  # keep the report of the run's start
            summary["init_report"] = (read_summary(self.run_dir) or {}).get("init_report")
        return summary

    # -- logs -----------------------------------------------------------------------------
    def log_step(self, step: int, images_seen: int, loss: float, lr: float) -> None:
        """Every ``log_every`` steps: ``train_steps.jsonl`` and TensorBoard (rank 0)."""
        append_jsonl(self.run_dir / STEPS, {"step": step, "images_seen": images_seen,
                                            "train_loss": loss, "lr": lr})
        self.writer.add_scalar("train/loss_steps", loss, step)
        self.writer.add_scalar("train/lr_steps", lr, step)

    def log_epoch(self, record: dict[str, Any], step: int) -> None:
        """One line of ``metrics.jsonl``, TensorBoard's epoch scalars and the console line."""
        if not self.main:
            return
        append_jsonl(self.run_dir / METRICS, record)
        if self.tracker is not None:
            self.tracker.epoch(record, step)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            if record[key] is not None:
                split, name = key.split("_")
                self.writer.add_scalar(f"{split}/{name}", record[key], step)
        for key in ("epoch_test_loss", "epoch_test_acc"):  # monitor_test
            if key in record:
                self.writer.add_scalar(f"test_monitor/{key.rsplit('_', 1)[1]}", record[key], step)
        self.writer.add_scalar("train/lr", record["lr"], step)
        self.writer.add_scalar("train/images_per_s", record["train_images_per_s"], step)
        self.writer.add_scalar("train/epoch", record["epoch"], step)
        val = (f" | val loss {record['val_loss']:.4f} acc {100 * record['val_acc']:.2f}%"
               if record["val_acc"] is not None else "")
        if "epoch_test_acc" in record:
            val += f" | test (monitor) acc {100 * record['epoch_test_acc']:.2f}%"
        self.console.line(f"epoch {record['epoch']}/{self.config.epochs}: train loss "
                          f"{record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%{val} | "
                          f"lr peak {record['lr']:.3g} mean {record['lr_mean']:.3g} | "
                          f"{record['epoch_time_s']:.1f} s, "
                          f"{record['train_images_per_s']:.0f} img/s")

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, t: Training, weights, epoch: int, meta: dict, improved: bool) -> None:
        """After ``epoch``: ``last.ckpt`` (everything needed to continue), then ``best.ckpt``
        if the validation accuracy improved. The loaders' draws are a function of (seed,
        epoch): the state saved is the next epoch's."""
        state = {**t.training_state(), "loader": {"seed": self.config.seed, "epoch": epoch}}
        self.save(LAST, weights, epoch, t.step, meta, training=state)
        if improved:
            self.save(BEST, weights, epoch, t.step, meta)
        self.last_good_epoch = epoch

    def save(self, name: str, weights, epoch: int, step: int, meta: dict, **extra) -> None:
        if not self.main:
            return
        ckpt.save_checkpoint(self.run_dir / name, {
            "kind": name.split(".")[0], "config": self.config.to_dict(), "epoch": epoch,
            "step": step, "model": weights, "meta": dict(meta), "data": self.summary["data"],
            "input": self.input, "amp": self.amp, **extra})

    def load(self, name: str) -> dict[str, Any]:
        """A checkpoint of this run, read by rank 0 and broadcast to the other processes."""
        state = ckpt.load_checkpoint(self.run_dir / name) if self.main else None
        return self.dist.broadcast_object(state) if self.dist is not None else state

    def restore(self, t: Training) -> tuple[int, dict[str, Any]]:
        """Resume: ``t`` back in the state of ``last.ckpt`` (weights, optimizer, schedule,
        scaler, weight average, RNG, loaders), the logs of later epochs and steps dropped.
        Returns the epoch to start from and the checkpoint's counters."""
        path = self.run_dir / LAST
        state = self.load(LAST)
        data = self.summary["data"] if self.main else t.data.fingerprint()
        check_same_data(state.get("data"), data, str(path))  # no silent swap
        saved = state.get("training")
        if state.get("kind") != "last" or not saved:
            raise UserError(f"{path} holds no training state; it cannot be resumed")
        try:
            t.load_training_state(state["model"], saved)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"{path} does not fit this run's model/optimizer "
                            f"({ckpt.first_line(exc)}); it cannot be resumed") from None
        epoch, step, meta = int(state["epoch"]), int(state["step"]), dict(state["meta"])
        t.step, t.images_seen = step, meta["images_seen"]
        if self.main:
            truncate_jsonl(self.run_dir / METRICS, "epoch", epoch)
            truncate_jsonl(self.run_dir / STEPS, "step", step)
        if meta.get("best_epoch") == epoch and self.main:  # killed between last and best.ckpt
            best = self.run_dir / BEST
            if not (best.exists() and ckpt.load_checkpoint(best)["epoch"] == epoch):
                self.save(BEST, state["model"], epoch, step, meta)
        ckpt.restore_rng_state(t.rng_state(saved))
        for loader in t.train_loaders.values():
            loader.load_state_dict(saved["loader"])
        self.console.line(f"resuming {self.run_dir} after epoch {epoch} (step {step})")
        self.last_good_epoch = epoch
        return epoch, meta

    # -- the end --------------------------------------------------------------------------
    def finish(self, t: Training, test: dict[str, Any], meta: dict[str, Any], tested: str,
               test_time: float, explain=None) -> dict[str, Any]:
        """The test's files (predictions, misclassified gallery, TensorBoard) and the final
        summary; every process returns rank 0's summary. ``explain(rows, classes)``: the
        gallery's Grad-CAM heat maps (see :func:`save_misclassified`); a failure there costs
        only the heat maps, said in one line."""
        if not self.main:
            return self.dist.broadcast_object(None)
        write_json(self.run_dir / PREDICTIONS, {"predictions": test["predictions"].tolist(),
                                                "targets": test["targets"].tolist(),
                                                "tested_weights": tested})
        def heat(rows, classes):
            try:
                return explain(rows, classes)
            except Exception as exc:  # noqa: BLE001 - the run is done; only its heat maps are lost
                self.console.line(f"no Grad-CAM heat maps for the misclassified gallery "
                                  f"({type(exc).__name__}: {exc})")
                return None

        save_misclassified(self.run_dir, t.data.test[0], test["predictions"], test["targets"],
                           explain=heat if explain is not None else None)
        self.writer.add_scalar("test/acc", test["acc"], t.step)
        self.writer.add_scalar("test/loss", test["loss"], t.step)
        self.writer.add_scalar("test/ece", test["ece"], t.step)
        train_time = meta["train_time_s"]
        self.summary.update(
            epochs_completed=self.last_good_epoch, train_time_s=train_time,
            eval_time_s=meta["eval_time_s"], test_time_s=test_time,
            train_images_per_s=meta["images_seen"] / train_time if train_time > 0 else None,
            images_seen=meta["images_seen"], steps=t.step,
            best_val_acc=meta["best_val_acc"], best_epoch=meta["best_epoch"],
            max_epoch_test_acc=meta.get("max_epoch_test_acc"),
            max_epoch_test_epoch=meta.get("max_epoch_test_epoch"), tested_weights=tested,
            stopped_early=meta["stopped_early"],
            test_acc=test["acc"], test_loss=test["loss"], per_class_test_acc=test["per_class_acc"],
            confusion_matrix=test["confusion_matrix"], **calibration_fields(test),
            status="finished", finished_at=now())
        write_json(self.run_dir / SUMMARY, self.summary)
        self.hparams(t.step)
        epoch = (self.last_good_epoch if tested == "last" else meta["best_epoch"])
        self.console.line(calibration_line(test))  # before the last line: the result and where
        self.console.line(f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, "
                          f"{tested} weights{f', epoch {epoch}' if epoch else ''}); "
                          f"training {train_time:.1f} s; run directory {self.run_dir}")
        if self.tracker is not None:
            self.tracker.end(self.summary)
        if self.dist is not None:
            self.dist.broadcast_object(self.summary)
        return self.summary

    def recipe_options(self) -> dict[str, Any]:
        """The run's options that make its recipe (not the machine's or the bookkeeping
        ones), with its seed: what TensorBoard and MLflow show as its hyper-parameters."""
        from cnnbench.config import NOT_RECIPE

        return {k: v for k, v in self.config.to_dict().items() if k not in NOT_RECIPE or k == "seed"}

    def hparams(self, step: int) -> None:
        """TensorBoard's HParams record of the run (:func:`cnnbench.training.tracking.write_hparams`)."""
        from cnnbench.training.tracking import write_hparams

        write_hparams(self.writer, self.recipe_options(), self.summary, step)

    def finish_untested(self, t: Training, meta: dict[str, Any], status: str) -> dict[str, Any]:
        """The summary of a run ended before its test (``trained``: every epoch done; or
        ``pruned``): what training measured, no test figure. ``last.ckpt`` stays, so resuming
        the run tests it (a trained one) or trains on (a pruned one). One process only."""
        train_time = meta["train_time_s"]
        self.summary.update(
            epochs_completed=self.last_good_epoch, train_time_s=train_time,
            eval_time_s=meta["eval_time_s"],
            train_images_per_s=meta["images_seen"] / train_time if train_time > 0 else None,
            images_seen=meta["images_seen"], steps=t.step, best_val_acc=meta["best_val_acc"],
            best_epoch=meta["best_epoch"], stopped_early=meta["stopped_early"], status=status,
            finished_at=now())
        write_json(self.run_dir / SUMMARY, self.summary)
        self.hparams(t.step)
        best = meta["best_val_acc"]
        self.console.line(f"{status} after epoch {self.last_good_epoch}, not tested"
                          + (f" (best validation accuracy {100 * best:.2f}%, epoch "
                             f"{meta['best_epoch']})" if best is not None else "")
                          + f"; run directory {self.run_dir}")
        if self.tracker is not None:
            self.tracker.end(self.summary)
        return self.summary

    def fail(self, exc: BaseException) -> str | None:
        """Record a failed run: ``error.txt`` and a summary with status ``failed`` (rank 0);
        another process records only a traceback, in ``error-rank<R>.txt``. Returns the file
        holding the traceback, if one was written."""
        self.console.end_epoch()
        if isinstance(exc, NonFiniteLoss):
            where = (f"the last good checkpoint is {self.run_dir / LAST} (epoch "
                     f"{self.last_good_epoch})" if self.last_good_epoch else "no epoch completed")
            exc.args = (f"{exc.args[0]}; run stopped, {where}",)
        peer_ended = self.dist is not None and distributed.lost_peer(exc)
        if isinstance(exc, KeyboardInterrupt):
            text = self.interrupted(exc) + "\n"
            exc.args = (text.strip(),)  # the command line prints it
        elif isinstance(exc, UserError):
            text = f"{exc}\n"
        elif peer_ended:
            text = "stopped: another process of the job ended; continue with --resume\n"
        else:
            text = "".join(traceback.format_exception(exc))
        if not self.run_dir.is_dir():  # failed before the run started: nothing to record
            return None
        if self.main and self.console.log_file is not None:
            self.console.line(text.strip().splitlines()[-1], echo=False)
        traceback_file = (None if isinstance(exc, (UserError, KeyboardInterrupt)) or peer_ended
                          else ERROR)
        if not self.main:  # its own error's traceback, where rank 0 does not write
            if traceback_file is None:
                return None
            traceback_file = f"error-rank{self.dist.rank}.txt"
        try:
            (self.run_dir / (traceback_file or ERROR)).write_text(text)
            if self.summary:
                self.summary.update(status="failed", error=text.strip().splitlines()[-1],
                                    epochs_completed=self.last_good_epoch, finished_at=now())
                write_json(self.run_dir / SUMMARY, self.summary)
        except OSError:
            return None
        finally:
            if self.tracker is not None:  # never hides the run's own error
                with contextlib.suppress(Exception):
                    self.tracker.end(self.summary, "KILLED" if isinstance(exc, KeyboardInterrupt)
                                     else "FAILED")
        return str(self.run_dir / traceback_file) if traceback_file else None

    def interrupted(self, exc: KeyboardInterrupt) -> str:
        """Where an interrupted run stands and the command that continues it, exactly: resume
        starts again at the epoch after the last checkpoint (``last.ckpt``, written at the end
        of every epoch)."""
        why = interrupt_cause(exc)
        command = f"`cnnbench train --resume {self.run_dir}`"
        done = self.last_good_epoch
        if not (self.run_dir / LAST).exists():
            return (f"{why} in epoch 1, before its end (no checkpoint yet); {command} starts "
                    f"the run again from epoch 1")
        if done >= self.config.epochs:
            return f"{why} after the last epoch; {command} tests the trained weights"
        return (f"{why} in epoch {done + 1}; {command} continues from the end of epoch {done} "
                f"({LAST}), starting epoch {done + 1} again")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
