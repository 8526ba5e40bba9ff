"""Studies: one YAML file -> the runs of one lab report's experiment, run in order.

A study names a set of ``train`` runs, each with its own recipe, and the numbers the lab
report published for it. ``cnnbench study run NAME --out DIR`` trains every run into
``DIR/<run>/`` (a normal run directory, see docs/architecture.md) and writes the report.

Modules: :mod:`~cnnbench.studies.spec` reads a study file and resolves its runs,
:mod:`~cnnbench.studies.estimate` estimates their time on 2 CPU cores,
:mod:`~cnnbench.studies.runner` trains them. The shipped study files are the ``*.yaml`` files
of this folder (:data:`STUDY_DIR`).

Study file (the shipped ones are ``cnnbench/studies/*.yaml``)::

    name: cifar10-tricks
    description: one line for `cnnbench study list`
    report: which lab report this reproduces and how it ran its experiment
    notes: [what the recipe takes from the report, what was chosen here]
    seeds: 1                    # seeds per run (`--seeds N` overrides): seed, seed+1, ...
    grid_table: {rows: model, cols: optimizer}   # optional model x variant table
    model_aliases: {ResNet: resnet34_classics}   # the report's own model names, in this study
    defaults: {optimizer: sgd, momentum: 0.9}    # `train` options shared by all runs
    profiles:                   # what each profile changes in every run
      quick: {epochs: 1, limit_train: 256, limit_eval: 256}
      cpu: {cap: {epochs: 3, limit_train: 10000}}   # `cap:` lowers a value, never raises it
      full: {}
    runs:
      - name: simple-cnn
        model: simple_cnn       # any `train` option, per run
        step: baseline          # a cumulative ablation step: the row label, in file order
        reference:              # every number the lab report published for this run
          - {metric: test_acc, value: 97.02, wording: "Test loss 1.960664 acc 97.0200%",
             source: "000:668"}                       # line 797 of ../shared/seeds/000_*.txt
          - {metric: val_acc, value: 96.45, source: "000:666"}   # the final epoch's
          - {metric: test_loss, value: 1.960664, note: "the report's loss is summed over batches"}
          - {metric: epoch_time_s, value: 0.0222, unit: min, note: "4 GB laptop GPU"}
          - {metric: params, value: 61706}
          - {metric: test_acc, value: [64, 68]}       # a published range
        profiles: {cpu: {}}     # this run's own entry replaces the study's (here: no caps)
      - name: vgg16-finetuned
        differs: "no ImageNet-pretrained weights offline: continues from the from-scratch run"
      - name: simple-cnn-l2
        init: simple-cnn        # start from that run's best checkpoint
        lr: 0.001
      - name: pretrain
        once: true              # one seed whatever `--seeds` says; every seed of the
                                # runs that start from it starts from this one run
      - name: "{model}-{optimizer}"    # grid: one run per combination of the axes
        grid:
          model: [lenet5, alexnet]     # scalar: the option of the axis' name
          optimizer:                   # mapping: a `label`, any options, optional `profiles`
            - {label: sgd, optimizer: sgd, lr: 0.01, momentum: 0.9}
            - {label: adagrad, optimizer: adagrad, lr: 0.01}

A run's options, later entries winning: study ``defaults`` < the run's options < its grid
values < the profile entry (the run's own entry for the profile if it has one, else the
study's; its values, then its caps) < ``--set`` overrides. With a ``batch_schedule`` the
schedule fixes the number of epochs. ``model_aliases`` map a report's own spelling of a model
(``model: ResNet`` in a run or ``--set model=ResNet``) to the network that report trained,
inside this study only (outside it, ``ResNet`` is cnnbench's ``resnet18``).

``reference:`` lists the numbers the lab report published for the run (one mapping alone is a
list of one; ``null`` or absent: none known), each with these keys:

* ``metric`` (default ``test_acc``), and the value cnnbench sets beside it: ``test_acc``,
  ``best_val_acc``, ``test_loss``, ``train_time_s``, ``params`` (``summary.json``);
  ``val_acc``, ``train_acc``, ``val_loss``, ``train_loss`` (the last epoch of
  ``metrics.jsonl``: the reports print the final epoch); ``epoch_time_s`` (the mean over the
  epochs); ``max_epoch_test_acc`` (the report's "best test accuracy over the epochs": the test
  set picks the epoch, so it is optimistic; cnnbench has it only from a run that evaluated the
  test set every epoch, ``monitor_test``, and shows its honest ``test_acc`` beside it);
  ``epoch1_test_acc`` (the test accuracy after the first epoch, from the same test monitor).
* ``value``: the number as the report printed it; accuracies in percent, or ``[low, high]``
  for a range (accuracies only).
* ``unit``: times only, ``s`` (default), ``min`` or ``h``.
* ``source``: where the number is, ``"<file-number>:<line>"`` in the lab reports
  (``../shared/seeds``), quoted.
* ``wording``: the report's own words; ``note``: what a reader should know about the number.
* ``comparable``: whether cnnbench's number can be set against it; default true for
  accuracies and ``params``, false for losses and times (their definitions and the hardware
  differ).

``differs:`` says, in a sentence, how the run departs from the report's recipe (weights that
do not exist offline, a model swapped for another): the report then shows both numbers and
no difference. So does it for a run of the ``quick`` or ``cpu`` profile, on fewer images, or
whose options (``--set`` and ``--dataset`` included) are not the study's full-profile recipe: the
runner records both in ``study.json`` and the report names each mismatch
(:mod:`cnnbench.report.departures`). A difference is computed only for a ``full``-profile run
on all the images, on the recipe, without ``differs``, and a comparable metric.

``choices:`` (study level) lists what changes results that the report did not choose, each
``{what, cnnbench, report, source, runs}`` (``runs``: run names or patterns; none: every run):
the report shows it beside the numbers of those runs. Every error in these keys is a one-line
:class:`UserError`.

``curves:`` lists the per-epoch series the lab report printed for the run (one mapping alone
is a list of one), each ``{metric, unit, source, points, note}``: ``metric`` one of
``train_acc``, ``val_acc``, ``train_loss``, ``val_loss``, ``epoch_time_s``; ``unit`` ``%``
for accuracies (the default), none for losses (as printed), ``s``/``min``/``h`` for times
(required); ``source`` the quoted lines, ``"000:657-666"``; ``points`` ``[[epoch, value],
...]``, epochs increasing, each value exactly as printed on its epoch's line; ``note``
what a reader should know (a loss summed over batches, the report's hardware). They reach
``study.json`` as ``curves``; the report draws the accuracies beside cnnbench's validation
curves and the times in a figure of their own.

Runs are ordered when the study is loaded (:func:`order_runs`: every ``init`` run comes
first); the runner (:func:`run_study`) skips
runs whose ``summary.json`` says ``finished`` (re-running a study resumes it; a failed run
is tried again), records a failing run (``error.txt`` and a ``failed`` summary) and goes
on; a run whose ``init`` run did not finish is marked ``skipped``. Each run directory also
gets ``study.json`` (study name, profile, step, references, differs, ...), so the report
needs nothing but the run directories.
"""


from __future__ import annotations

from cnnbench.lazy import lazy_names

# The names below are loaded on first use, so `cnnbench study list` (the spec module only)
# imports no torch.
_WHERE = {
    "CPU_GFLOPS": "estimate", "CPU_OVERHEAD_S": "estimate", "CostEstimate": "estimate",
    "duration_text": "estimate", "estimate_seconds": "estimate",
    "RunOutcome": "runner", "check_datasets": "runner", "run_study": "runner",
    **{name: "spec" for name in ("CIFAR10_VARIANTS", "PROFILES", "STUDY_DIR", "Reference",
                                 "Study", "StudyRun", "build_config", "find_study",
                                 "list_studies", "load_study", "order_runs", "select_runs")},
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE)


def model_inputs() -> dict[str, tuple[str, tuple[int, int, int], int, str]]:
    """For each model a shipped study trains: ``(study, (C, H, W), classes, stem)`` of its
    first run in the ``full`` profile, the input the lab report trained that network on."""
    from cnnbench.data import get_spec
    from cnnbench.studies.spec import build_config, list_studies, load_study

    inputs: dict[str, tuple[str, tuple[int, int, int], int, str]] = {}
    for study_name, _ in list_studies():
        for run in load_study(study_name).runs:
            config = build_config(run.options)
            spec = get_spec(config.dataset)
            size = config.resize or spec.image_size[0]
            inputs.setdefault(config.model, (study_name, (spec.channels, size, size),
                                             spec.num_classes, config.stem))
    return inputs


def report_model_rows(names: list[str]) -> list[dict]:
    """:func:`cnnbench.models.profile.model_rows` of each lab-report network among ``names`` at
    its study's input (``input`` and ``num_classes`` added)."""
    from cnnbench.models.profile import model_rows

    inputs = model_inputs()
    rows = []
    for name in names:
        if name in inputs:
            _, shape, classes, stem = inputs[name]
            row = model_rows([name], shape, classes, stem)[0]
            rows.append({**row, "input": "x".join(map(str, shape)), "num_classes": classes})
    return rows


__all__ = [
    "CIFAR10_VARIANTS", "CPU_GFLOPS", "CPU_OVERHEAD_S", "PROFILES", "STUDY_DIR", "CostEstimate",
    "Reference", "RunOutcome", "Study", "StudyRun", "build_config", "check_datasets",
    "duration_text", "estimate_seconds", "find_study", "list_studies", "load_study",
    "model_inputs", "order_runs", "report_model_rows", "run_study", "select_runs",
]
