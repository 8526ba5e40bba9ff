"""Studies: one YAML file -> the runs of one lab report's experiment, run in order.

A study names a set of ``train`` runs, each with its own recipe, and the number the lab
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
        reference: {value: 64.0, metric: test_acc, wording: "...", note: "..."}
        profiles: {cpu: {}}     # this run's own entry replaces the study's (here: no caps)
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
schedule fixes the number of epochs. ``reference.value`` is in percent as the report printed
it, or ``[low, high]`` for a range; ``model_aliases`` map a report's own spelling of a model
(``model: ResNet`` in a run or ``--set model=ResNet``) to the network that report trained,
inside this study only (outside it, ``ResNet`` is cnnbench's ``resnet18``); ``metric`` says what the report measured it on
(``test_acc`` or ``val_acc``); ``reference: null`` where the number is not known.

Runs are ordered when the study is loaded (:func:`order_runs`: every ``init`` run comes
first); the runner (:func:`run_study`) skips
runs whose ``summary.json`` says ``finished`` (re-running a study resumes it; a failed run
is tried again), records a failing run (``error.txt`` and a ``failed`` summary) and goes
on; a run whose ``init`` run did not finish is marked ``skipped``. Each run directory also
gets ``study.json`` (study name, profile, step, reference, ...), so the report needs
nothing but the run directories.
"""


from cnnbench.studies.estimate import (CPU_GFLOPS, CPU_OVERHEAD_S, CostEstimate, duration_text,
                                       estimate_seconds)
from cnnbench.studies.runner import RunOutcome, check_datasets, run_study
from cnnbench.studies.spec import (CIFAR10_VARIANTS, PROFILES, STUDY_DIR, Reference, Study,
                                   StudyRun, build_config, find_study, list_studies, load_study,
                                   order_runs, select_runs)

__all__ = [
    "CIFAR10_VARIANTS", "CPU_GFLOPS", "CPU_OVERHEAD_S", "PROFILES", "STUDY_DIR", "CostEstimate",
    "Reference", "RunOutcome", "Study", "StudyRun", "build_config", "check_datasets",
    "duration_text", "estimate_seconds", "find_study", "list_studies", "load_study",
    "order_runs", "run_study", "select_runs",
]
