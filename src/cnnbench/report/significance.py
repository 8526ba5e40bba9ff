"""The report's "Are the differences real?" section: McNemar's exact test between the runs
of a study, on their saved test predictions, Holm-corrected over the pairs.

Two runs are paired only when they are of the same comparability class
(:attr:`cnnbench.report.records.RunGroup.capped`: "" for full-profile runs on all the images,
"quick", "cpu, capped" or "limited" otherwise; a capped run is never set against an uncapped
one) and were tested on the same images (identical ``targets`` in ``test_predictions.json``).
Each class is its own family: its p-values are Holm-corrected over its pairs, and a capped
class gets its own table, marked as not the report's recipe. A run with several seeds is
represented by its first seed (``seed_index`` 0, else the lowest seed) that finished with
saved predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from cnnbench.report.document import Document
from cnnbench.report.records import RunGroup, RunRecord
from cnnbench.report.stats import McNemar, holm, mcnemar_exact

ALPHA = 0.05  # familywise error rate of each table (Holm)


@dataclass(frozen=True)
class Contender:
    """The predictions a run is tested with: one finished seed's ``test_predictions.json``."""

    group: RunGroup
    record: RunRecord

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def predictions(self) -> list:
        return self.record.predictions["predictions"]

    @property
    def targets(self) -> list:
        return self.record.predictions["targets"]

    @property
    def acc(self) -> float:
        """Test accuracy in percent, counted from the saved predictions."""
        right = sum(int(p == t) for p, t in zip(self.predictions, self.targets))
        return 100.0 * right / len(self.targets)


@dataclass(frozen=True)
class PairTest:
    """McNemar's exact test of runs ``a`` and ``b`` (``test.b``: images ``a`` gets right and
    ``b`` wrong, ``test.c`` the reverse), with its Holm-adjusted p over ``pairs`` pairs."""

    a: Contender
    b: Contender
    test: McNemar
    holm_p: float
    pairs: int

    @property
    def winner(self) -> Contender | None:
        """The better run when the Holm-adjusted p is below :data:`ALPHA`, else ``None``."""
        if self.holm_p >= ALPHA or self.test.b == self.test.c:
            return None
        return self.a if self.test.b > self.test.c else self.b

    @property
    def verdict(self) -> str:
        return f"{self.winner.label} better" if self.winner else "not distinguishable"

    @property
    def sentence(self) -> str:
        """The result in words: who beats whom, or that the test set cannot tell them apart."""
        family = f"Holm over {self.pairs} pair{'s' if self.pairs != 1 else ''}"
        if self.winner is None:
            return (f"{self.a.label} and {self.b.label} are not distinguishable on this test set "
                    f"({self.a.acc:.2f} vs {self.b.acc:.2f} %, Holm p {p_text(self.holm_p)})")
        loser = self.b if self.winner is self.a else self.a
        return (f"{self.winner.label} beats {loser.label}: {self.winner.acc:.2f} vs "
                f"{loser.acc:.2f} %, p {p_text(self.holm_p)} (McNemar exact, {family})")


def p_text(p: float) -> str:
    """``< 0.001``, else ``= 0.039`` / ``= 0.21`` / ``= 1.00`` (two significant digits)."""
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.2f}" if p >= 0.1 else f"= {p:.2g}"


def first_seed(group: RunGroup) -> RunRecord | None:
    """The seed a run is tested with: the first (``seed_index`` 0, else the lowest seed) of its
    finished seeds with saved predictions; ``None`` when none has them."""
    def order(record: RunRecord) -> tuple:
        index, seed = record.study.get("seed_index"), record.get("seed")
        return (index if isinstance(index, int) else float("inf"),
                seed if isinstance(seed, (int, float)) else float("inf"))

    # in seed order, so that only the predictions up to the tested seed's are read
    return next((r for r in sorted(group.finished, key=order) if r.predictions is not None), None)


def _same_images(a: RunRecord, b: RunRecord) -> bool:
    """Identical labels are not enough (cifar10 and cifar10_jpeg share them): the test
    images' fingerprints must agree where both runs recorded one."""
    ha, hb = ((r.summary.get("data") or {}).get("test_sha256") for r in (a, b))
    return ha is None or hb is None or ha == hb


def pair_tests(groups: list[RunGroup]) -> dict[str, list[PairTest]]:
    """The tests of every pair of runs of the same class (:attr:`RunGroup.capped`) tested on
    identical targets, by class ("" first, then the capped classes in order of appearance);
    the Holm correction is over the pairs of each class. Classes without a pair are left out."""
    classes: dict[str, list[Contender]] = {"": []}
    for g in groups:
        record = first_seed(g)
        if record is not None:
            classes.setdefault(g.capped, []).append(Contender(g, record))
    out: dict[str, list[PairTest]] = {}
    for cls, runs in classes.items():
        pairs = [(a, b) for a, b in combinations(runs, 2)
                 if a.targets == b.targets and _same_images(a.record, b.record)]
        if not pairs:
            continue
        results = [mcnemar_exact(a.predictions, b.predictions, a.targets) for a, b in pairs]
        adjusted = holm([r.p for r in results])
        out[cls] = [PairTest(a, b, r, p, len(pairs))
                    for (a, b), r, p in zip(pairs, results, adjusted)]
    return out


def pair_table(tests: list[PairTest]) -> tuple[list[str], list[list[str]]]:
    header = ["run A", "run B", "acc A (%)", "acc B (%)", "b (A right, B wrong)",
              "c (A wrong, B right)", "p", "Holm p", "verdict"]
    rows = [[t.a.label, t.b.label, f"{t.a.acc:.2f}", f"{t.b.acc:.2f}", str(t.test.b),
             str(t.test.c), p_text(t.test.p).removeprefix("= "),
             p_text(t.holm_p).removeprefix("= "), t.verdict] for t in tests]
    return header, rows


def significance_section(doc: Document, groups: list[RunGroup]) -> None:
    """The section "Are the differences real?" of one study."""
    doc.heading(3, "Are the differences real?")
    by_class = pair_tests(groups)
    doc.paragraph(
        "Each pair of finished runs tested on the same images (identical test targets) gets "
        "McNemar's exact test on the saved predictions (`test_predictions.json`): b = images "
        "run A classifies right and run B wrong, c = the reverse; if the two were equally "
        "accurate, b would follow Binomial(b + c, 1/2). The p-values are Holm-corrected over "
        f"the pairs of each table; a run is called better when its Holm p < {ALPHA:g}. Runs "
        "are paired only with runs of the same kind: full-profile runs on all the images "
        "with each other, capped runs (quick, cpu or limited) only with runs capped the same "
        "way. The test measures the test set's sampling noise only, not how much another "
        "training seed would change a run.")
    if any(len(g.finished) > 1 for g in groups):
        doc.paragraph("With several seeds, each run is tested with its first seed's predictions "
                      "(seed_index 0, else the lowest seed that finished), so the accuracies in "
                      "this section are that seed's, not the mean over seeds.")
    untested = [g.label for g in groups if g.finished and first_seed(g) is None]
    if not by_class:
        doc.paragraph("Nothing to test: no pairs share a test set (a pair needs two finished "
                      "runs of the same kind with saved predictions on identical test images).")
    for cls, tests in by_class.items():
        if cls:
            doc.heading(4, f"Capped runs ({cls}) — not the report's recipe, compared only "
                           "with each other")
        doc.table(*pair_table(tests))
        doc.bullets([t.sentence + "." for t in tests])
    if untested:
        doc.paragraph("Not tested (finished without `test_predictions.json`): "
                      + ", ".join(untested) + ".")
