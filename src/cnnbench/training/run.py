"""One training run: a config in, a run directory and its summary out.

::

    summary = train_run(config, out_dir=None, resume=False, argv=None, progress=True)

What the run directory holds is :mod:`cnnbench.training.rundir`; what the run trains with is
built by :func:`cnnbench.training.build.build_training`. Order of work at the end of epoch
``e``: validation, one line in ``metrics.jsonl``, ``last.ckpt`` (everything needed to
continue), then ``best.ckpt`` if the validation accuracy improved. A run killed at any moment
resumes (``resume=True``) from its last completed epoch: the lines of later epochs and steps
are dropped from the logs, the RNG, optimizer, schedule, scaler and weight-average states are
restored, and the loaders are a function of (seed, epoch), so on CPU with ``deterministic``
the resumed run ends bit-identical to one never stopped. The test set is evaluated once, at
the end, with the best weights (``val_split`` 0: the final weights; the summary's
``tested_weights`` says which). With ``monitor_test`` the test set is also evaluated after
every epoch, for the curves and a lab report's "best test accuracy over epochs"
(``max_epoch_test_acc``); it never selects weights.

Started by torchrun (:mod:`cnnbench.training.distributed`), every process runs this loop on
its share of the data and takes part in the same evaluations; rank 0 names the run directory
and alone writes it (logs, TensorBoard, checkpoints, predictions, summary), and reads the
checkpoints the others need (``best.ckpt`` for the test, ``last.ckpt`` to resume) and
broadcasts them.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torchvision

from cnnbench.config import TrainConfig
from cnnbench.version import __version__
from cnnbench.errors import UserError
from cnnbench.training import checkpoint as ckpt
from cnnbench.training import distributed
from cnnbench.training.build import Training, build_training
from cnnbench.training.console import Console
from cnnbench.training.engine import NonFiniteLoss
from cnnbench.training.machine import cpu_name, device_name, git_commit
from cnnbench.training.rundata import check_same_data
from cnnbench.training.rundir import (BEST, ERROR, LAST, METRICS, PREDICTIONS, STEPS, SUMMARY,
                                     append_jsonl, now, open_run_dir, prepare_run_dir,
                                     read_summary, save_misclassified, truncate_jsonl, write_json)


def train_run(config: TrainConfig | None, out_dir: str | Path | None = None, resume: bool = False,
              argv: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one run into its directory and return its summary (also in ``summary.json``).

    Args:
        config: the resolved config (:func:`cnnbench.config.resolve.resolve_config`). With
            ``resume`` it may be ``None`` (use the saved one) or must equal the saved one
            except for :data:`cnnbench.config.RESUMABLE_CHANGES`.
        out_dir: the run directory (else ``config.out``, else ``runs/<model>-<dataset>-<time>``).
        resume: continue the run in ``out_dir`` from its ``last.ckpt`` (a finished run returns
            its summary; a run that never completed an epoch starts over).
        argv: the command line, recorded in the summary.
        progress: show progress (tqdm on a terminal, plain lines otherwise); False = silent.

    Raises:
        UserError: bad input, or the loss became NaN/Inf (``error.txt`` and a summary with
            status ``failed`` are written; ``last.ckpt`` keeps the last good epoch). Under
            torchrun any other error of a process becomes a one-line
            :class:`cnnbench.training.distributed.ProcessFailed`.
    """
    config, run_dir = prepare_run_dir(config, out_dir, resume)
    previous = read_summary(run_dir) if resume else None
    if previous and previous.get("status") == "finished":
        return previous
    resume = resume and (run_dir / LAST).exists()
    dist = distributed.setup(config.device, config.dist_backend)  # None: one process
    if dist is not None:  # rank 0 names the run directory (a default name holds the time)
        run_dir, resume = dist.broadcast_object((run_dir, resume))
    run = _Run(config=config, run_dir=run_dir,
               console=Console(progress and (dist is None or dist.is_main)),
               argv=list(argv) if argv is not None else list(sys.argv), resume=resume, dist=dist)
    try:
        summary = run.execute()
    except BaseException as exc:
        traceback_file = run.fail(exc)
        if dist is not None and not isinstance(exc, (UserError, KeyboardInterrupt)):
            raise dist.failure(exc, traceback_file) from exc
        raise
    finally:
        run.close()
        if dist is not None:  # also on failure: a peer waiting in a collective learns of it
            dist.close()
    return summary


def _check_same_precision(run_dir: Path, asked: str, resolved: str) -> None:
    """``--amp auto`` resolves per machine: a run started in bf16 must not go on in fp32 (or the
    reverse) because it was resumed on another machine."""
    before = (read_summary(run_dir) or {}).get("amp")
    if asked == "auto" and before not in (None, "auto") and before != resolved:
        raise UserError(f"{run_dir} trained in {before} so far (--amp auto on the machine it "
                        f"started on), but this machine resolves --amp auto to {resolved}; resume "
                        f"it on a machine like the first, or start a new run with another --out")


def _fresh_meta() -> dict[str, Any]:
    """What ``last.ckpt`` carries besides the training state: selection and time counters."""
    return {"best_val_acc": None, "best_epoch": None, "epochs_since_best": 0,
            "train_time_s": 0.0, "eval_time_s": 0.0, "images_seen": 0, "stopped_early": False,
            "max_epoch_test_acc": None, "max_epoch_test_epoch": None}


@dataclasses.dataclass
class _Run:
    config: TrainConfig
    run_dir: Path
    console: Console
    argv: list[str]
    resume: bool
    dist: distributed.Distributed | None = None
    writer: Any = None
    summary: dict = dataclasses.field(default_factory=dict)
    input: dict = dataclasses.field(default_factory=dict)  # RunData.preprocessing()
    last_good_epoch: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    def execute(self) -> dict[str, Any]:
        c, started = self.config, now()
        # Data, model and --init weights first: a bad input leaves no run directory behind.
        training = build_training(c, load_init_weights=not self.resume, dist=self.dist)
        if self.resume:
            _check_same_precision(self.run_dir, c.amp, training.config.amp)
        self.input = training.data.preprocessing()
        if self.main:
            open_run_dir(self.run_dir, c, fresh=not self.resume)
            self.summary = self._base_summary(training, started)
        meta, start_epoch = _fresh_meta(), 0
        if self.resume:
            start_epoch, meta = self._restore(training)
        else:
            meta["train_time_s"] += training.whiten()
        self.last_good_epoch = start_epoch
        if self.main:
            from torch.utils.tensorboard import SummaryWriter
            # On resume, drop what the killed process logged after its last checkpoint: events
            # of later steps (the checkpointed step's own epoch scalars are kept).
            self.writer = SummaryWriter(log_dir=str(self.run_dir),
                                        purge_step=training.step + 1 if self.resume else None)

        for epoch in range(start_epoch, c.epochs):
            if meta["stopped_early"]:
                break
            change = training.start_epoch(epoch)
            if change:
                self.console.line(change)
            self.console.start_epoch(epoch + 1, c.epochs, training.loader(epoch).num_samples)
            stats = training.train_epoch(epoch, on_log=self._log_step if self.main else None,
                                         progress=self.console)
            self.console.end_epoch()
            meta["train_time_s"] += stats["time_s"]
            meta["images_seen"] = training.images_seen
            val = None
            if training.val_loader is not None:
                t0 = time.perf_counter()
                val = training.evaluate("val")
                meta["eval_time_s"] += time.perf_counter() - t0
            training.end_epoch(val["loss"] if val else stats["loss"])
            monitor = self._monitor_test(training, meta, epoch + 1) if c.monitor_test else {}
            self._log_epoch({
                "epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
                "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
                "lr": stats["lr_max"], "lr_mean": stats["lr_mean"],
                "batch_size": c.batch_size_at(epoch), "epoch_time_s": stats["time_s"],
                "train_images_per_s": stats["images_per_s"], "images_seen": meta["images_seen"],
                **monitor}, training.step)
            improved = val is not None and (meta["best_val_acc"] is None or val["acc"] > meta["best_val_acc"])
            if improved:
                meta.update(best_val_acc=val["acc"], best_epoch=epoch + 1, epochs_since_best=0)
            elif val is not None:
                meta["epochs_since_best"] += 1
            if c.early_stop and val is not None and meta["epochs_since_best"] >= c.early_stop:
                meta["stopped_early"] = True
            weights = training.eval_weights() if self.main else None  # rank 0 saves them
            self._save_last(training, weights, epoch + 1, meta)
            if improved:
                self._save(BEST, weights, epoch + 1, training.step, meta)
            self.last_good_epoch = epoch + 1
        return self._test_and_finish(training, meta)

    def _monitor_test(self, training: Training, meta: dict[str, Any], epoch: int) -> dict[str, float]:
        """``monitor_test``: the test accuracy of this epoch's weights, for curves and a report's
        "best test accuracy over epochs" only; selection stays on validation."""
        t0 = time.perf_counter()
        test = training.evaluate("test")
        meta["eval_time_s"] += time.perf_counter() - t0
        if meta.get("max_epoch_test_acc") is None or test["acc"] > meta["max_epoch_test_acc"]:
            meta.update(max_epoch_test_acc=test["acc"], max_epoch_test_epoch=epoch)
        return {"epoch_test_loss": test["loss"], "epoch_test_acc": test["acc"]}

    # -- the end: test once ---------------------------------------------------------------
    def _test_and_finish(self, training: Training, meta: dict[str, Any]) -> dict[str, Any]:
        selected = training.val_loader is not None
        if not selected:  # no selection possible: the final weights are tested
            self._save(BEST, training.eval_weights(), self.last_good_epoch, training.step, meta)
        best = self._load(self.run_dir / BEST)
        last = selected and self.config.test_weights == "last"
        t0 = time.perf_counter()
        best_test = None
        if last:  # as the report did: the last epoch's weights; the honest number beside it
            best_test = training.evaluate_weights("test", best["model"])
            weights = self._load(self.run_dir / LAST)["model"]
        else:
            weights = best["model"]
        test = training.evaluate_weights("test", weights, return_predictions=True)
        test_time = time.perf_counter() - t0
        meta["eval_time_s"] += test_time
        tested = "last" if last else "best" if selected else "final"
        if best_test is not None:
            self.summary["best_val_test_acc"] = best_test["acc"]
        if not self.main:  # rank 0 writes; every process returns its summary
            return self.dist.broadcast_object(None)
        write_json(self.run_dir / PREDICTIONS, {"predictions": test["predictions"].tolist(),
                                                "targets": test["targets"].tolist(),
                                                "tested_weights": tested})
        save_misclassified(self.run_dir, training.data.test[0], test["predictions"], test["targets"])
        self.writer.add_scalar("test/acc", test["acc"], training.step)
        self.writer.add_scalar("test/loss", test["loss"], training.step)
        train_time = meta["train_time_s"]
        self.summary.update(
            epochs_completed=self.last_good_epoch, train_time_s=train_time,
            eval_time_s=meta["eval_time_s"], test_time_s=test_time,
            train_images_per_s=meta["images_seen"] / train_time if train_time > 0 else None,
            images_seen=meta["images_seen"], steps=training.step,
            best_val_acc=meta["best_val_acc"], best_epoch=meta["best_epoch"],
            max_epoch_test_acc=meta.get("max_epoch_test_acc"),
            max_epoch_test_epoch=meta.get("max_epoch_test_epoch"), tested_weights=tested,
            stopped_early=meta["stopped_early"],
            test_acc=test["acc"], test_loss=test["loss"], per_class_test_acc=test["per_class_acc"],
            confusion_matrix=test["confusion_matrix"], status="finished", finished_at=now())
        write_json(self.run_dir / SUMMARY, self.summary)
        self.console.line(f"test accuracy {100 * test['acc']:.2f}% (loss {test['loss']:.4f}, "
                          f"{tested} weights"
                          f"{', epoch ' + str(self.last_good_epoch) if tested == 'last' else ', epoch ' + str(meta['best_epoch']) if meta['best_epoch'] else ''}); "
                          f"training {train_time:.1f} s; run directory {self.run_dir}")
        if self.dist is not None:
            self.dist.broadcast_object(self.summary)
        return self.summary

    # -- logs -----------------------------------------------------------------------------
    def _base_summary(self, training: Training, started: str) -> dict[str, Any]:
        c, spec = self.config, training.spec
        summary = {
            "name": c.name or self.run_dir.name, "run_dir": str(self.run_dir), "model": c.model,
            "dataset": c.dataset, "stem": getattr(training.model, "stem", None),
            "params": training.params, "macs": training.macs,
            "flops": 2 * training.macs if training.macs is not None else None,
            "input_size": [spec.channels, *training.data.input_size],
            "seed": c.seed, "device": str(training.device),
            "device_name": device_name(training.device),
            "epochs": c.epochs, "epochs_completed": 0, "train_time_s": None, "eval_time_s": None,
            "train_images_per_s": None, "best_val_acc": None, "best_epoch": None,
            "test_acc": None, "test_loss": None, "per_class_test_acc": None,
            "confusion_matrix": None, "classes": list(spec.classes), "split": training.data.split,
            "data": training.data.fingerprint(),
            "limited": bool(c.limit_train or c.limit_eval), "limit_train": c.limit_train,
            "limit_eval": c.limit_eval, "recipe": c.recipe, "profile": c.profile, "tta": c.tta,
            "init": c.init, "pretrained": c.pretrained, "init_report": None,
            "freeze": c.freeze, "unfreeze_at": c.unfreeze_at, "head_lr": c.head_lr,
            "backbone_lr": c.backbone_lr, "amp": training.config.amp, "channels_last": c.channels_last,
            "compile": c.compile, "deterministic": c.deterministic,
            "processes": training.dist.world_size if training.dist else 1,
            "dist_backend": training.dist.backend if training.dist else None,
            "sync_bn": bool(training.dist and c.sync_bn),
            "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "cnnbench_version": __version__, "git_commit": git_commit(),
            "command": " ".join(self.argv), "status": "running", "started_at": started,
            "finished_at": None, "hostname": socket.gethostname(), "cpu": cpu_name(),
            "num_threads": torch.get_num_threads(),
        }
        if training.init_report is not None:
            summary.update(init=training.init_report.source,
                           init_report=training.init_report.to_dict())
            self.console.line(training.init_report.text())
        elif self.resume:  # keep the report of the run's start
            summary["init_report"] = (read_summary(self.run_dir) or {}).get("init_report")
        return summary

    def _log_step(self, step: int, images_seen: int, loss: float, lr: float) -> None:
        append_jsonl(self.run_dir / STEPS, {"step": step, "images_seen": images_seen,
                                            "train_loss": loss, "lr": lr})
        self.writer.add_scalar("train/loss_steps", loss, step)
        self.writer.add_scalar("train/lr_steps", lr, step)

    def _log_epoch(self, record: dict[str, Any], step: int) -> None:
        if not self.main:
            return
        append_jsonl(self.run_dir / METRICS, record)
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
    def _save(self, name: str, weights, epoch: int, step: int, meta: dict, **extra) -> None:
        if not self.main:
            return
        ckpt.save_checkpoint(self.run_dir / name, {
            "kind": name.split(".")[0], "config": self.config.to_dict(), "epoch": epoch,
            "step": step, "model": weights, "meta": dict(meta), "data": self.summary["data"],
            "input": self.input, **extra})

    def _save_last(self, training: Training, weights, epoch: int, meta: dict) -> None:
        # the loaders' draws are a function of (seed, epoch): this is the next epoch's
        state = {**training.training_state(), "loader": {"seed": self.config.seed, "epoch": epoch}}
        self._save(LAST, weights, epoch, training.step, meta, training=state)

    def _load(self, path: Path) -> dict[str, Any]:
        """A checkpoint of this run, read by rank 0 and broadcast to the other processes."""
        state = ckpt.load_checkpoint(path) if self.main else None
        return self.dist.broadcast_object(state) if self.dist is not None else state

    def _restore(self, training: Training) -> tuple[int, dict[str, Any]]:
        path = self.run_dir / LAST
        state = self._load(path)
        data = self.summary["data"] if self.main else training.data.fingerprint()
        check_same_data(state.get("data"), data, str(path))  # no silent swap
        saved = state.get("training")
        if state.get("kind") != "last" or not saved:
            raise UserError(f"{path} holds no training state; it cannot be resumed")
        try:
            training.load_training_state(state["model"], saved)
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path} does not fit this run's model/optimizer ({first}); it "
                            f"cannot be resumed") from None
        epoch, step, meta = int(state["epoch"]), int(state["step"]), dict(state["meta"])
        training.step, training.images_seen = step, meta["images_seen"]
        if self.main:
            truncate_jsonl(self.run_dir / METRICS, "epoch", epoch)
            truncate_jsonl(self.run_dir / STEPS, "step", step)
        if meta.get("best_epoch") == epoch and self.main:  # killed between last and best.ckpt
            best = self.run_dir / BEST
            if not (best.exists() and ckpt.load_checkpoint(best)["epoch"] == epoch):
                self._save(BEST, state["model"], epoch, step, meta)
        ckpt.restore_rng_state(training.rng_state(saved))
        for loader in training.train_loaders.values():
            loader.load_state_dict(saved["loader"])
        self.console.line(f"resuming {self.run_dir} after epoch {epoch} (step {step})")
        return epoch, meta

    # -- failure --------------------------------------------------------------------------
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
            text = "interrupted (KeyboardInterrupt); continue with --resume\n"
        elif isinstance(exc, UserError):
            text = f"{exc}\n"
        elif peer_ended:
            text = "stopped: another process of the job ended; continue with --resume\n"
        else:
            text = "".join(traceback.format_exception(exc))
        if not self.run_dir.is_dir():  # failed before the run started: nothing to record
            return None
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
        return str(self.run_dir / traceback_file) if traceback_file else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
