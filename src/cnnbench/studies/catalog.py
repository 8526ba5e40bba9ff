"""Write the model catalog (``src/cnnbench/models/catalog.json``, read by
:mod:`cnnbench.models.catalog` without torch) from the model registry and the studies.

    python -m cnnbench.studies.catalog

It lives here, above both: the ``reports`` table holds each lab report's network at its
study's input (:func:`cnnbench.studies.report_model_rows`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnbench.models import catalog


def build() -> dict:
    """Compute the catalog from the registry (imports torch; a few seconds)."""
    from cnnbench.data.specs import list_datasets, registered_spec
    from cnnbench.models import list_models, model_info
    from cnnbench.models.profile import model_rows
    from cnnbench.studies import report_model_rows

    names = list_models()
    tables: dict[str, list[dict]] = {}
    for dataset in list_datasets():
        spec = registered_spec(dataset)
        shape, classes = (spec.channels, *spec.image_size), spec.num_classes
        key = catalog.table_key(shape, classes, "auto")
        if key not in tables:
            tables[key] = model_rows(names, shape, classes, "auto")
    tables["reports"] = report_model_rows([n for n in names if model_info(n).study])
    return {"source_hash": catalog.source_hash(),
            "models": [{"name": n, "family": model_info(n).family, "study": model_info(n).study}
                       for n in names],
            "tables": tables}


def write() -> Path:
    """Compute the catalog and write it to :data:`cnnbench.models.catalog.CATALOG_FILE`."""
    catalog.CATALOG_FILE.write_text(json.dumps(build(), indent=1) + "\n")
    catalog.load.cache_clear()
    return catalog.CATALOG_FILE


if __name__ == "__main__":
    print(f"wrote {write()}", file=sys.stderr)
