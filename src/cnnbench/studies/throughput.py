"""Measured training and inference speed of every model on this project's 2-core CPU, in fp32
and bf16: the table study time estimates read (:mod:`cnnbench.studies.estimate`).

``throughput.json`` (beside this file) is generated from the committed results of
``benchmarks/model_throughput.py`` (``model_throughput-cpu.json``: fp32,
``model_throughput-bf16-cpu.json``: ``--amp auto``, bf16 on that CPU), so that an installed
cnnbench estimates without the benchmark files; a test keeps it equal to them. Regenerate it
after measuring again::

    python -m cnnbench.studies.throughput
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("throughput.json")
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
SOURCES = ("model_throughput-cpu.json", "model_throughput-bf16-cpu.json")


def precision(amp: str | None) -> str:
    """The precision a run with ``amp`` trains in on the measured CPU (it computes bf16
    natively, so ``auto`` is bf16 there): ``bf16`` or ``fp32``."""
    return "bf16" if amp in ("auto", "bf16") else "fp32"


def build_table(results: Path = RESULTS) -> dict:
    """The table from the benchmark result files in ``results``."""
    rows, sources = {}, []
    for name in SOURCES:
        path = results / name
        if not path.exists():
            continue
        record = json.loads(path.read_text())
        env = record["environment"]
        kind = precision(record.get("amp"))
        sources.append({"file": f"benchmarks/results/{name}", "precision": kind,
                        "device_name": env["device_name"], "threads": record["num_threads"],
                        "batch_size": record["batch_size"], "git_commit": env["git_commit"],
                        "date": env["date"]})
        for row in record["rows"]:
            rows[f"{row['model']}|{row['input']}|{kind}"] = {
                "macs": row["macs"], "train_images_per_s": round(row["train_images_per_s"], 2),
                "infer_images_per_s": round(row["infer_images_per_s"], 2)}
    return {"sources": sources, "rows": dict(sorted(rows.items()))}


@lru_cache(maxsize=1)
def table() -> dict:
    """The committed table (``throughput.json``)."""
    return json.loads(TABLE.read_text())


def measured_cpus() -> list[str]:
    """The CPUs the table was measured on (its sources' ``device_name`` without the "CPU: "
    prefix and the cores in brackets), e.g. ``["AMD EPYC"]``, each once."""
    names = [s["device_name"].removeprefix("CPU: ").split(" (")[0] for s in table()["sources"]]
    return list(dict.fromkeys(names))


def lookup(model: str, channels: int, size: tuple[int, int], amp: str | None) -> tuple[str, dict] | None:
    """The measured row for ``model`` at ``channels`` x ``size`` in the precision ``amp`` trains
    in, else the same model at another size with ``channels`` channels (its time is then scaled
    by the multiply-adds); None where the model was not measured in that precision."""
    rows, kind = table()["rows"], precision(amp)
    exact = f"{model}|{channels}x{size[0]}x{size[1]}|{kind}"
    if exact in rows:
        return exact, rows[exact]
    for key, row in rows.items():
        name, shape, row_kind = key.split("|")
        if name == model and row_kind == kind and shape.startswith(f"{channels}x"):
            return key, row
    return None


def main() -> None:
    TABLE.write_text(json.dumps(build_table(), indent=1) + "\n")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
