"""The model catalog (cnnbench.models.catalog): the torch-free copy of the registry's names and
cost tables that `cnnbench models` and completion read."""

from __future__ import annotations

from cnnbench.models import catalog, list_models


def test_the_committed_catalog_is_up_to_date_with_the_models():
    """Fails after a change to a model, the dataset registry or a study file until
    `python -m cnnbench.studies.catalog` is run (the listing would else fall back to torch)."""
    catalog.load.cache_clear()
    assert catalog.load() is not None, "regenerate it: python -m cnnbench.studies.catalog"
    assert catalog.model_names() == list_models()


def test_a_stale_catalog_is_never_read(monkeypatch):
    catalog.load.cache_clear()
    monkeypatch.setattr(catalog, "source_hash", lambda: "a model changed since")
    try:
        assert catalog.load() is None
        assert catalog.model_names() is None
        assert catalog.rows(catalog.table_key((3, 32, 32), 10, "auto")) is None
    finally:
        catalog.load.cache_clear()


def test_rows_filter_by_pattern_and_reports_as_the_registry_does():
    key = catalog.table_key((1, 28, 28), 10, "auto")
    assert [r["name"] for r in catalog.rows(key, "ResNet*")] == list_models("resnet*")
    assert all(r["study"] for r in catalog.rows(key, reports=True))
    assert catalog.rows("9x9x9/3/auto") is None  # no such table: computed instead
